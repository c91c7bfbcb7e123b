"""mua_wrapper: `sendmail` as a non-queueing client for hosts without a daemon.

With ``mua_wrapper = true`` a submitted message is delivered at once, in
this process, in ONE SMTP transaction to the smart host(s) its addresses
route to.  Exit 0 means it was delivered; any failure of any recipient,
4xx or 5xx, fails the whole message: the reason goes to stderr (and to the
log if the log can be written), the exit status is 1, nothing stays
behind and no bounce is ever sent.  No retry data is read or written.

Security: runs as the calling user; when called as root it drops to
mta_user before it talks to the network (reading the message and routing
happen first, with the caller's rights).  It needs no spool: the body is held
in an anonymous in-memory file (memfd), so a user with no write access to
any directory can send mail.

Start-up cost matters here (cron, MUAs): this path imports no asyncio, no
aiosmtplib, no aiosmtpd and no dnspython (the smtp client is the
synchronous one, host names are resolved with getaddrinfo).
"""

from __future__ import annotations

import os
import sys
import time

from mta.config.caller import current_caller
from mta.errors import ConfigError, DeferError, FailError, MtaError, SubmissionError
from mta.log import ARRIVAL

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from mta.cli_args import Invocation
    from mta.config.loader import Config
    from mta.route.item import AddressItem
    from mta.runtime import Runtime

# Modes that need a queue or a listener, refused under mua_wrapper.
REFUSED_MODES = {
    "bd": "the SMTP daemon (-bd)",
    "bs": "SMTP on standard input (-bs)",
    "bS": "batched SMTP (-bS)",
    "q": "queue runs (-q)",
    "R": "queue runs (-R)",
    "S": "queue runs (-S)",
    "M": "queue management (-M...)",
}


class WrapperFailure(MtaError):
    """The message could not be delivered; the text is the stderr line."""


def refuse_mode(mode: str) -> str | None:
    what = REFUSED_MODES.get(mode)
    if what is None:
        return None
    return f"{what} is not available: mua_wrapper is set, so mta is a sending-only client with no queue"


def _drop_privileges(config: Config) -> None:
    """As root, become mta_user for the rest of the run (Exim's deliver_drop_privilege).

    The unprivileged user may not be able to read a Python installed under a
    private directory (/root/.pyenv, a virtualenv in a home): it is kept
    reachable (mta.privilege.keep_python_reachable), or, where that cannot be
    done, what the rest of the run may import lazily is imported first.
    """
    if os.geteuid() != 0:
        return
    import grp
    import pwd

    from mta.privilege import keep_python_reachable

    if not keep_python_reachable():
        import encodings.idna  # noqa: F401 - socket.getaddrinfo encodes a non-ASCII host name with it
        import ssl  # noqa: F401 - STARTTLS

        import mta.deliver.deliverlog
        import mta.readiness
        import mta.transports.smtp  # noqa: F401 - failure_message

    try:
        user = pwd.getpwnam(config.main.mta_user)
    except KeyError:
        raise ConfigError(f'mta_user "{config.main.mta_user}" does not exist') from None
    try:
        gid = grp.getgrnam(config.main.mta_group).gr_gid
    except KeyError:
        gid = user.pw_gid
    os.setgroups([])
    os.setgid(gid)
    os.setuid(user.pw_uid)


def _memory_file() -> BinaryIO:
    """An anonymous file for the body: no directory needed, streams like a real one."""
    fd = os.memfd_create("mta-message", os.MFD_CLOEXEC)
    return os.fdopen(fd, "w+b")


def submit(config: Config, inv: Invocation, stream: BinaryIO) -> int:
    """Read one message and deliver it synchronously; the exit status (0 or 1)."""
    try:
        _submit(config, inv, stream)
    except WrapperFailure as exc:
        sys.stderr.write(f"mta: {exc}\n")
        return 1
    except SubmissionError as exc:
        sys.stderr.write(f"mta: {exc.message}\n")
        return 1
    return 0


def _submit(config: Config, inv: Invocation, stream: BinaryIO) -> None:
    from mta.receive.local import read_local_message, submission_envelope
    from mta.runtime import build_runtime

    caller = current_caller()
    runtime = build_runtime(config, verbose=inv.verbose, quiet_log_failures=True)
    trusted, recipients, sender = submission_envelope(inv, caller, config)
    started = time.time()
    with _memory_file() as body:
        message = read_local_message(
            config,
            stream,
            body,
            caller=caller,
            trusted=trusted,
            recipients=recipients,
            extract=inv.extract_recipients,
            dot_ends=inv.dot_ends,
            sender=sender,
            sender_name=inv.sender_name,
        )
        body.flush()
        _deliver(runtime, message, body, started)


def _deliver(runtime: Runtime, message: Any, body: BinaryIO, started: float) -> None:
    from mta.message.headers import header_lookup
    from mta.receive.reception import arrival_log_text, finish_headers
    from mta.route.context import RoutingContext
    from mta.route.engine import RoutingEngine
    from mta.route.item import AddressItem
    from mta.spool.ids import new_message_id
    from mta.transports.base import OutgoingMessage

    config = runtime.config
    message_id = new_message_id()
    arrival = message.arrival
    finished = finish_headers(runtime, message_id, started, arrival, message.headers, message.body)
    logger = runtime.logger
    text = arrival_log_text(logger, arrival, finished.size, finished.headers, finished.had_message_id)
    logger.main(f"{ARRIVAL} {text}", message_id)

    def open_body() -> BinaryIO:
        copy = os.fdopen(os.dup(body.fileno()), "rb")
        copy.seek(0)
        return copy

    variables = {
        "message_id": message_id,
        "message_exim_id": message_id,
        "message_size": str(finished.size),
        "received_protocol": arrival.received_protocol,
    }
    outgoing = OutgoingMessage(
        message_id=message_id,
        sender_address=arrival.sender_address,
        headers=finished.headers,
        received_time=started,
        size=finished.size,
        open_body=open_body,
        body_linecount=message.body.linecount,
        received_protocol=arrival.received_protocol,
        variables=variables,
    )
    ctx = RoutingContext(
        config,
        arrival.sender_address,
        message_variables=variables,
        headers=header_lookup(finished.headers),
        transports=runtime.transports,
    )
    engine = RoutingEngine(runtime.directors, runtime.routers, config)
    items = [AddressItem(address, original_index=i) for i, address in enumerate(arrival.recipients)]
    outcome = engine.route(items, ctx)
    problems = [f"{item.address}: {error.message}" for item, error in (*outcome.failed, *outcome.deferred)]
    if problems:
        _fail(runtime, message_id, "routing failed for " + "; ".join(problems))
    if not outcome.accepted:
        logger.main("Completed", message_id)
        return  # every address was discarded (:blackhole:)
    transport = _single_transaction(runtime, outcome.accepted)
    env = _delivery_env(ctx, config, runtime)
    from mta.transports.smtp_sync import deliver_batch_sync

    # The conversation with the network runs unprivileged.
    _drop_privileges(config)

    outcomes = deliver_batch_sync(transport, outgoing, outcome.accepted, env, wrapper=True)
    failures = [(item, result) for item, result in outcomes.items() if isinstance(result, DeferError | FailError)]
    if failures or len(outcomes) != len(outcome.accepted):
        from mta.transports.smtp import failure_message

        reasons = "; ".join(failure_message(item.address, result) for item, result in failures)
        _fail(runtime, message_id, reasons or "delivery failed: no result from the transport")
    from mta.deliver.deliverlog import delivery_line

    for index, item in enumerate(outcome.accepted):
        logger.main(delivery_line(item, False, outcomes[item], index == 0, runtime.log_selectors), message_id)
    logger.main("Completed", message_id)


def _single_transaction(runtime: Runtime, items: list[AddressItem]) -> Any:
    """The one remote transport every address uses; refuse anything else."""
    transport = runtime.transports.get(items[0].transport_name or "")
    if transport is None or transport.is_local:
        name = items[0].transport_name
        raise WrapperFailure(f"{items[0].address} routes to the {name} transport; mua_wrapper delivers only by SMTP")
    if len(items) > 1 and not _one_batch(items):
        routes = ", ".join(f"{i.address} -> {i.transport_name} {[h.name for h in i.hosts]}" for i in items)
        raise WrapperFailure(
            "mua_wrapper needs every address to go to the same transport and hosts in one transaction; got " + routes
        )
    return transport


def _one_batch(items: list[AddressItem]) -> bool:
    """Whether the addresses can share one SMTP transaction.  Imported here: the usual message
    (one recipient) needs no grouping module."""
    from mta.deliver.grouping import batch_key

    return len({batch_key(item) for item in items}) == 1


def _delivery_env(ctx: Any, config: Config, runtime: Runtime) -> Any:
    from mta.transports.base import DeliveryEnv

    return DeliveryEnv(
        expand=ctx.expand,
        primary_hostname=config.primary_hostname,
        qualify_domain=config.qualify_domain,
        now=time.time(),
        extra={"runtime": runtime},
    )


def _fail(runtime: Runtime, message_id: str, text: str) -> None:
    from mta.log import escape

    runtime.logger.main(f"** {escape(text)}", message_id)
    raise WrapperFailure(text)
