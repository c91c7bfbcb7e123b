"""Spooling a report that mta writes itself (bounce, delay warning, error mail).

Reports come from the null sender <> so that they can never bounce back,
carry -localerror, and are spooled under mta_user through Reception like
any other message: the same durability, the same log line.
"""

from __future__ import annotations

from collections.abc import Callable

from mta.config.caller import mta_identity
from mta.receive.body import LocalBodyWriter
from mta.receive.reception import Arrival, Reception

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from mta.message.headers import Header
    from mta.runtime import Runtime


def spool_report(
    runtime: Runtime,
    target: str,
    headers: list[Header],
    write_body: Callable[[LocalBodyWriter], None],
    *,
    now: float | None = None,
    parent_id: str | None = None,
) -> str:
    """Put a report from <> for `target` on the spool; return its message id.

    `write_body` feeds the body to the writer it is given; `parent_id` is
    the message the report is about (the arrival log's R= field).
    """
    login, uid, gid = mta_identity(runtime.config)
    reception = Reception(runtime, now)
    try:
        # No dot handling: the writer only counts lines and bytes for -H and
        # keeps the body in LF form.
        writer = LocalBodyWriter(reception.data_file, dot_ends=False)
        write_body(writer)
        stats = writer.finish()
        arrival = Arrival(
            sender_address="",
            recipients=[target],
            received_protocol="local",
            caller_login=login,
            caller_uid=uid,
            caller_gid=gid,
            ident=login,
            local=False,
            allow_unqualified=True,
            localerror=True,
            parent_id=parent_id,
        )
        received = reception.accept(arrival, headers, stats)
    finally:
        # Once the -H is in place the message is the spool's to keep; before
        # that, nothing of it may stay behind.
        if reception.finished:
            reception.close()
        else:
            reception.abort()
    return received.message_id
