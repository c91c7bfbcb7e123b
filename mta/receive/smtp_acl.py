"""The bridge from an SMTP session to the ACL engine (mta.receive.acl).

Each session keeps one `AclContext` for its connection (so $acl_c_*, the
dnslists cache and per-connection rates live as long as it does); before
each check `run_acl` brings it up to date with the session's state and the
stage, then runs the stage's ACL.  Which ACL, and what an unset option
means (RCPT, VRFY, EXPN and ETRN are denied, the rest accepted), is the
engine's knowledge.
"""

from __future__ import annotations

# (Loaded with the first session, which needs the ACL engine: run_acl runs for every command.)
from mta.receive.acl import AclContext, AclEngine, AclResult, AclStage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.receive.smtp_context import ReceiverContext
    from mta.receive.smtp_server import SmtpSession
    from mta.runtime import Runtime


def acl_engine(runtime: Runtime) -> Any:
    return AclEngine(runtime)


def session_acl_context(context: ReceiverContext, session: SmtpSession) -> AclContext:
    """The connection's context, made once per session."""
    return AclContext(
        stage=AclStage.CONNECT,
        host_address=session.host_address,
        host_port=session.host_port,
        host_name=session.host_name,
        interface_address=session.interface_address,
        interface_port=session.interface_port,
        ident=session.local_caller.login if session.local_caller is not None else None,
        connection_vars=session.connection_vars,
        trace=context._trace,
        host_checking=session.testing,
    )


async def run_acl(
    context: ReceiverContext,
    session: SmtpSession,
    stage: str,
    line: str,
    *,
    recipient: str | None = None,
    headers: list[Any] | None = None,
    size: int | None = None,
) -> AclResult:
    ctx = session.acl_ctx
    engine = context._acl_engine()
    acl_stage = AclStage[stage]
    if ctx.trace is None and engine.accepts_unset(acl_stage):
        # No ACL for this stage (MAIL, PREDATA and DATA, usually): nothing would read what
        # follows, and at DATA it would index every header.
        return AclResult(verb="accept")
    transaction = session.transaction
    ctx.stage = acl_stage
    ctx.helo_name = session.helo_name
    ctx.host_name = session.host_name
    ctx.sender_address = transaction.sender
    ctx.recipient = recipient
    ctx.recipients = list(transaction.recipients)
    ctx.rcpt_count = transaction.rcpt_count
    ctx.authenticated_id = session.authenticated_id
    ctx.authenticator = session.authenticator
    ctx.tls_cipher = session.tls_cipher
    ctx.received_protocol = session.received_protocol
    ctx.smtp_command = line or None
    ctx.message_vars = transaction.message_vars
    if size is not None:
        ctx.message_size = size
    elif transaction.mail is not None and transaction.mail.size is not None:
        ctx.message_size = transaction.mail.size
    if headers is not None:
        from mta.message.headers import header_lookup

        ctx.headers = header_lookup(headers)
        texts = [h.text for h in headers if h.flag != "*"]
        ctx.header_lines = lambda: texts
    return await engine.check(ctx)  # type: ignore[no-any-return]
