"""`mta -bm`/`-t` (sendmail) from start to exit: who the caller is, spooling, and delivery after.

`submit_from_command_line` is the command-line mode.  If this process can
write the spool (root, mta_user, the owner of a per-user spool) it spools
the message itself through `submit_as_caller`; an ordinary user's
`sendmail` instead hands the message to the daemon, or leaves it in the
drop directory (mta.daemon.submission), since the spool is not theirs to
write.  The daemon's receiving processes call `submit_as_caller` too, with
the caller the kernel vouched for.

Exit status 0 comes only once the message is fsynced, in the spool or in
the drop directory.  Delivery after submission (-odi in this process, -odb
in a detached child) never changes that status: the message is safe, and
failing the submission now would make the caller send it again.
"""

from __future__ import annotations

import os
import signal
import sys

from mta import record
from mta.config.caller import Caller, current_caller
from mta.errors import MtaError, SubmissionError
from mta.receive.local import receive_local, submission_envelope

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from mta.cli_args import Invocation
    from mta.config.loader import Config
    from mta.runtime import Runtime
    from mta.transports.base import Submitted


@record.dataclass(slots=True)
class SubmissionOutcome:
    status: int  # the exit status for the caller
    message_id: str | None = None
    note: str = ""  # a line for the caller's stderr (-oee: the error that was mailed)
    lock: Any = None  # the held -D lock, when the caller delivers at once
    deliver: bool = False  # the message should be delivered now (not -odq / queue_only)
    background: bool = True  # -odb rather than -odi


def _timeout_handler(signum: int, frame: object) -> None:
    raise SubmissionError("timed out while reading the message from standard input")


def submit_as_caller(
    runtime: Runtime, inv: Invocation, stream: BinaryIO, caller: Caller, *, keep_lock: bool = False,
    use_alarm: bool = False,
) -> SubmissionOutcome:
    """Receive one message from `stream` as `caller` and spool it.

    Raises SubmissionError (or another MtaError) for a refusal the caller
    must see; an error that was reported by mail under -oee comes back as
    status 0 with a note."""
    from mta.values import parse_time

    config = runtime.config
    m = config.main
    trusted, recipients, sender = submission_envelope(inv, caller, config)
    timeout = m.receive_timeout
    if inv.receive_timeout:
        try:
            timeout = parse_time(inv.receive_timeout)
        except ValueError as exc:
            raise SubmissionError(f"-or: {exc}") from None
    if timeout and use_alarm:
        signal.signal(signal.SIGALRM, _timeout_handler)
        signal.alarm(timeout)
    mode = inv.delivery_mode or ("q" if m.queue_only else "b")
    deliver = mode not in ("q", "qs")
    try:
        received = receive_local(
            runtime,
            stream,
            caller=caller,
            trusted=trusted,
            recipients=recipients,
            extract=inv.extract_recipients,
            dot_ends=inv.dot_ends,
            sender=sender,
            sender_name=inv.sender_name,
            protocol=inv.receive_protocol if (trusted and inv.receive_protocol) else "local",
            keep_lock=keep_lock and deliver,
        )
    except SubmissionError as exc:
        if inv.error_mode in ("m", "w", "e") and sender.sender_address:
            from mta.receive.moan import send_submission_error

            copy = getattr(exc, "copy", b"")
            report_id = send_submission_error(runtime, sender.sender_address, exc.message, copy)
            runtime.logger.main(f"Error message sent to <{sender.sender_address}>: {exc.message}", report_id)
            if inv.error_mode == "e":
                # -oee: the error has been reported by mail, which counts as success.
                note = f"{exc.message} (an error report was mailed to {sender.sender_address})"
                return SubmissionOutcome(0, report_id, note, None, deliver, mode == "b")
            exc.report_id = report_id  # type: ignore[attr-defined]
        raise
    finally:
        if timeout and use_alarm:
            signal.alarm(0)
    return SubmissionOutcome(0, received.message_id, "", received.lock, deliver, mode == "b")


def submit_from_command_line(config: Config, inv: Invocation, stream: BinaryIO) -> int:
    """The -bm / -t mode: receive, then deliver (or hand to the daemon); returns the exit status."""
    from mta.daemon.submission import can_write_spool, submit_through_daemon
    from mta.runtime import build_runtime

    runtime = build_runtime(config, verbose=inv.verbose)
    caller = current_caller()
    if os.geteuid() != 0 and not can_write_spool(config):
        status, note = submit_through_daemon(config, inv.argv, stream)
        if note:
            sys.stderr.write(f"mta: {note}\n")
        return status
    try:
        outcome = submit_as_caller(runtime, inv, stream, caller, keep_lock=True, use_alarm=True)
    except SubmissionError as exc:
        report_id = getattr(exc, "report_id", None)
        mode = inv.delivery_mode or ("q" if config.main.queue_only else "b")
        if report_id is not None and mode not in ("q", "qs"):
            start_delivery(runtime, report_id, runtime.spool.lock(report_id), background=mode == "b")
        raise
    if outcome.note:
        sys.stderr.write(f"mta: {outcome.note}\n")
        if outcome.message_id and outcome.deliver:
            start_delivery(runtime, outcome.message_id, runtime.spool.lock(outcome.message_id),
                           background=outcome.background)
        return outcome.status
    if outcome.lock is not None:
        start_delivery(runtime, outcome.message_id or "", outcome.lock, background=outcome.background,
                       dont_deliver=inv.dont_deliver)
    return outcome.status


def generated_message_submitter(runtime: Runtime) -> Callable[[list[str], BinaryIO], Submitted]:
    """`DeliveryEnv.submit` for a transport that makes a new message (autoreply).

    It runs in the local delivery child, as the recipient.  A child still
    running as this process's own user (an unprivileged run, or a test that
    delivers in-process) spools the message itself, as that caller; one that
    dropped to another user cannot write the spool and submits as that user's
    `sendmail` does: through the daemon's socket, or into its drop directory.
    Either way the message is fsynced before a status of 0 comes back.  What
    that route needs is imported here, in the parent: after the drop the
    Python installation may not be readable."""
    from mta.cli_args import parse_command_line
    from mta.daemon.submission import submit_through_daemon
    from mta.transports.base import Submitted

    parent_uid = os.geteuid()

    def submit(argv: list[str], stream: BinaryIO) -> Submitted:
        if os.geteuid() != parent_uid:
            status, note = submit_through_daemon(runtime.config, argv, stream)
            return Submitted(status, note)
        try:
            outcome = submit_as_caller(runtime, parse_command_line(argv), stream, current_caller())
        except MtaError as exc:
            return Submitted(1, str(exc))
        # Delivered at once by the delivery that made it, unless queue_only says otherwise.
        return Submitted(outcome.status, outcome.note, outcome.message_id if outcome.deliver else None)

    return submit


def start_delivery(runtime: Runtime, message_id: str, lock: Any, background: bool, dont_deliver: bool = False) -> None:
    """Deliver a just-received message now, in this process or in a detached child (-odb)."""
    from mta.deliver.delivery import Delivery

    if not background:
        try:
            Delivery(runtime, message_id, lock=lock, dont_deliver=dont_deliver).run()
        except MtaError as exc:
            # The message is safely on the spool: the submission succeeded, and
            # failing it now would make the caller send it again. Say so, and
            # leave the message for a later delivery attempt.
            runtime.logger.panic(f"delivery after reception failed: {exc}; message left on the spool", message_id)
            sys.stderr.write(f"mta: message {message_id} accepted, but delivering it failed: {exc}\n")
        return
    pid = os.fork()
    if pid:
        # The child's copy of the descriptor keeps the lock (open file description locks).
        lock.release()
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        from mta import debug

        for fd in (0, 1) if debug.active else (0, 1, 2):  # -v / -d: the delivery still reports on stderr
            os.dup2(devnull, fd)
        Delivery(runtime, message_id, lock=lock, dont_deliver=dont_deliver).run()
        code = 0
    except BaseException as exc:
        import traceback

        runtime.logger.panic(f"background delivery failed: {exc!r}\n{traceback.format_exc()}", message_id)
        code = 1
    os._exit(code)
