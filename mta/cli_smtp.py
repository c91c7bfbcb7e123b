"""The command-line modes that speak SMTP or run the queue: -bd, -bs, -bS, -bh, -q, -R, -S.

Each loads the configuration, checks who may do it, and calls one entry
point of a lower floor (mta.daemon.master, mta.receive.smtp_stdio,
mta.queue.runner).  Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mta import process_info

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.cli_args import Invocation


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"mta: {text}\n")


def _config_and_runtime(inv: Invocation):  # type: ignore[no-untyped-def]
    from mta.config.loader import load_config
    from mta.runtime import build_runtime

    config = load_config(inv.config_file, inv.macros)
    process_info.set_report_path(config.main.spool_directory)
    return config, build_runtime(config, verbose=inv.verbose)


def _admin(config) -> bool:  # type: ignore[no-untyped-def]
    from mta.cli import _caller_is_admin

    return bool(_caller_is_admin(config))


def mode_daemon(inv: Invocation) -> int:
    """-bd / -bdf [-q<time>] [-oX ...] [-oP file]."""
    from mta.daemon.master import run_daemon

    config, runtime = _config_and_runtime(inv)
    if os.geteuid() != 0 and not _admin(config):
        _err("permission denied: only administrators may start the daemon")
        return 1
    if inv.debug is not None:
        inv.foreground = True  # as Exim: a debugging daemon stays attached to its terminal (-bdf)
    return run_daemon(runtime, inv)


def _selection(inv: Invocation):  # type: ignore[no-untyped-def]
    from mta.queue.runner import Selection

    selection = Selection.from_flags(inv.queue_flags if inv.mode == "q" else "")
    if inv.mode in ("R", "S"):
        text = inv.args[0] if inv.args else ""
        selection.regex = "r" in inv.mode_flags
        selection.force = selection.force or "f" in inv.mode_flags
        if inv.mode == "R":
            selection.recipient = text
        else:
            selection.sender = text
    return selection


def mode_queue(inv: Invocation) -> int:
    """-q (one run), -q<time> (a daemon that runs the queue every <time>), -R / -S (selected messages)."""
    from mta.queue.runner import run_queue

    config, runtime = _config_and_runtime(inv)
    if config.main.prod_requires_admin and not _admin(config):
        _err("permission denied: only administrators may start a queue run")
        return 1
    selection = _selection(inv)
    if inv.mode == "q" and inv.args:
        from mta.spool.ids import is_message_id

        if len(inv.args) > 2 or not all(is_message_id(a) for a in inv.args):
            _err("-q takes at most two message ids: the first and the last of the range to run")
            return 1
        selection.start_id = inv.args[0]
        selection.end_id = inv.args[1] if len(inv.args) > 1 else None
    if inv.mode == "q" and inv.queue_interval:
        # -q30m without -bd: a daemon that only runs the queue, through its own worker pool.
        from mta.daemon.master import run_daemon

        return run_daemon(runtime, inv, listening=False)
    return run_queue(runtime, selection)


def _local_caller():  # type: ignore[no-untyped-def]
    from mta.config.caller import current_caller

    return current_caller()


class _LocalCaller:
    """The caller of -bs/-bS as the session sees it: login, uid, gid, and whether trusted."""

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        from mta.config.caller import is_trusted

        caller = _local_caller()
        m = config.main
        self.login, self.uid, self.gid = caller.login, caller.uid, caller.gid
        self.trusted = is_trusted(caller, m.trusted_users, m.trusted_groups, m.mta_user)


def mode_smtp_stdio(inv: Invocation) -> int:
    """-bs (one SMTP session on stdin/stdout), -bS (batched SMTP), -bh IP (a test session)."""
    from mta.daemon.submission import can_write_spool
    from mta.receive.smtp_context import ReceiverContext
    from mta.receive.smtp_server import SmtpSession
    from mta.receive.smtp_stdio import run_stdio_session
    from mta.receive.spooler import Spooler

    config, runtime = _config_and_runtime(inv)
    testing = inv.mode == "bh"
    host_address = host_port = None
    if testing:
        if not inv.args:
            _err("-bh needs the IP address of the host to pretend to be")
            return 1
        host_address, host_port = _ip_and_port(inv.args[0])
        if host_address is None:
            _err(f"-bh: {inv.args[0]} is not an IP address")
            return 1
    elif os.geteuid() != 0 and not can_write_spool(config):
        _err(f"-{inv.mode} needs a spool it can write ({config.main.spool_directory}); "
             "ordinary users submit with sendmail (-bm or -t), which hands the message to the daemon")
        return 1
    spooler = None if testing else Spooler(runtime.spool, threads=2)
    errors: list[str] = []

    from mta import debug

    def trace(text: str) -> None:
        if "acl" in debug.active:
            debug.write(text)  # with +pid / +timestamp prefixes like the other debug lines
        else:
            sys.stderr.write(text + "\n")

    tracing = testing or "acl" in debug.active  # -bh, or -bs with -d+acl: every ACL decision
    context = ReceiverContext(runtime, spooler=spooler, trace=trace if tracing else None,
                              batch_errors=errors.append, on_accepted=_deliver_later(runtime, inv))
    local = None if testing else _LocalCaller(config)

    def make(channel):  # type: ignore[no-untyped-def]
        return SmtpSession(context, channel, host_address=host_address, host_port=host_port, local_caller=local,
                           batched=inv.mode == "bS", testing=testing)

    try:
        session = asyncio.run(run_stdio_session(make, lf_lines=inv.mode == "bS"))
    finally:
        if spooler is not None:
            spooler.close()
    for line in errors:
        _err(line)
    return 1 if session.errors_seen else 0


def _deliver_later(runtime, inv: Invocation):  # type: ignore[no-untyped-def]
    """After each message -bs/-bS accept: deliver in the background (Exim forks), unless queueing."""

    def accepted(message_id: str, pending) -> None:  # type: ignore[no-untyped-def]
        from mta.receive.local_submit import start_delivery

        mode = inv.delivery_mode or ("q" if runtime.config.main.queue_only else "b")
        lock = pending.lock
        pending.lock = None
        if mode in ("q", "qs") or lock is None:
            if lock is not None:
                lock.release()
            return
        start_delivery(runtime, message_id, lock, background=True)

    return accepted


def _ip_and_port(text: str) -> tuple[str | None, int | None]:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text)), None
    except ValueError:
        pass
    address, _dot, port = text.rpartition(".")
    try:
        return str(ipaddress.ip_address(address)), int(port)
    except ValueError:
        return None, None
