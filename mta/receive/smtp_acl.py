"""The bridge from an SMTP session to the ACL engine (mta.receive.acl).

`run_acl` fills an `AclContext` from the session's state and runs the
stage's ACL.  An option left unset means accept, except for RCPT, VRFY,
EXPN and ETRN, which Exim denies: a daemon without an RCPT ACL takes no
mail at all rather than relaying for everyone.
"""

from __future__ import annotations

from mta import record

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.receive.smtp_context import ReceiverContext
    from mta.receive.smtp_server import SmtpSession
    from mta.runtime import Runtime

_DENY_WHEN_UNSET = ("RCPT", "VRFY", "EXPN", "ETRN")


@record.dataclass(slots=True)
class Verdict:
    """What an ACL decided, in the shape the session uses."""

    verb: str
    user_message: str | None = None
    log_message: str | None = None
    add_headers: list[str] = record.field(default_factory=list)
    code: str | None = None


def acl_engine(runtime: Runtime) -> Any:
    from mta.receive.acl import AclEngine

    return AclEngine(runtime)


async def run_acl(
    context: ReceiverContext,
    session: SmtpSession,
    stage: str,
    acl_name: str | None,
    line: str,
    *,
    recipient: str | None = None,
    headers: list[Any] | None = None,
    size: int | None = None,
) -> Verdict:
    if not acl_name:
        if stage in _DENY_WHEN_UNSET:
            return Verdict("deny", "Administrative prohibition" if stage != "RCPT" else None)
        return Verdict("accept")
    from mta.receive.acl import AclContext, AclStage

    transaction = session.transaction
    lookup = None
    if headers is not None:
        from mta.deliver.message import header_lookup

        lookup = header_lookup(headers)
    acl_context = AclContext(
        stage=AclStage[stage],
        host_address=session.host_address,
        host_port=session.host_port,
        host_name=session.host_name,
        helo_name=session.helo_name,
        interface_address=session.interface_address,
        interface_port=session.interface_port,
        sender_address=transaction.sender,
        recipient=recipient,
        recipients=list(transaction.recipients),
        authenticated_id=session.authenticated_id,
        authenticator=session.authenticator,
        tls_cipher=session.tls_cipher,
        received_protocol=session.received_protocol,
        headers=lookup,
        message_size=size,
        smtp_command=line,
        connection_vars=session.connection_vars,
        message_vars=transaction.message_vars,
        trace=context._trace,
    )
    engine = context._acl_engine()
    result = await engine.run(acl_name, acl_context)
    return Verdict(result.verb, result.user_message, result.log_message, list(result.add_headers), result.code)
