"""The daemon's delivery workers: long-lived processes that deliver what the receivers spooled.

Each worker reads message ids from the dispatch socket (a Unix datagram
socket all workers share, so the kernel hands each id to one idle worker)
and delivers that message, holding its -D lock, exactly as ``mta -M``
would.  A worker keeps its SMTP connections open from one message to the
next (one asyncio.Runner for its whole life) and closes them when it has
been idle for a while.  At the start and the end of each message it writes
the time into its slot of the pool's board (mta.daemon.pool), from which the
master starts another worker while this one is stalled.

Security: a worker starts as root when the daemon does, because a local
delivery's child must become the recipient.  The remote part of every
delivery (the SMTP client, its DNS lookups, its -J writes) runs with the
effective uid and gid of mta_user (mta.privilege.EffectiveUser); files it
creates in the spool belong to mta_user in any case.

Durability: a worker that dies (killed, crashed) loses nothing.  Its
message stays on the spool with its -J journal, unlocked when the process
ends; the master starts a new worker and the next queue run delivers it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import traceback

from mta.errors import MtaError
from mta.readiness import readable

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.daemon.flow import InflowTokens
    from mta.daemon.pool import WorkerBoard
    from mta.runtime import Runtime

IDLE_CLOSE = 5.0  # seconds without work before cached SMTP connections are closed
_stopping = False
_waiting = False  # true only while the worker waits for an id, holding nothing


class _StopWaiting(Exception):
    """Raised by SIGTERM into the wait for the next id, which Python would otherwise resume."""


def _stop(signum: int, frame: object) -> None:
    global _stopping
    _stopping = True
    if _waiting:
        # poll() is retried after a signal (PEP 475): without this, stopping would wait out its timeout.
        raise _StopWaiting


def worker_main(runtime: Runtime, dispatch: socket.socket, remote_identity: tuple[int, int] | None,
                board: WorkerBoard | None = None, slot: int | None = None,
                inflow: InflowTokens | None = None) -> int:
    """The body of a worker process (after fork); returns its exit status.  `board` and `slot`:
    where it says what it is doing, for the master's pool (mta.daemon.pool).  `inflow`: the
    receivers' tokens, one given back for each message taken (mta.daemon.flow)."""
    from mta import process_info

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    runtime.remote_identity = remote_identity
    if runtime.config.main.spool_spare_files:
        from mta.spool.spare import available

        # Loads ctypes now: a finished message's -H is kept as a spare while the remote part
        # runs as mta_user, as whom a Python under /root could not import it.
        available()
    dispatch.setblocking(False)
    process_info.set_activity("delivery worker: waiting for messages")
    try:
        return _serve(runtime, dispatch, board, slot, inflow)
    except _StopWaiting:
        return 0  # a SIGTERM that came as the wait ended: stopping was asked for all the same


def _serve(runtime: Runtime, dispatch: socket.socket, board: WorkerBoard | None, slot: int | None,
           inflow: InflowTokens | None) -> int:
    from mta import process_info
    from mta.deliver.delivery import Delivery, close_connections
    from mta.queue.runner import parse_dispatch_datagram
    from mta.queue.wait import deliver_with_followers

    idle_since: float | None = time.monotonic()
    idle = "delivery worker: waiting for messages"
    global _waiting
    with asyncio.Runner() as runner:
        try:
            while not _stopping:
                try:
                    _waiting = True
                    ready = not _stopping and readable(dispatch, 0)
                    if not ready and not _stopping:
                        if inflow is not None:
                            inflow.settle()
                        ready = readable(dispatch, 1.0)
                except _StopWaiting:
                    break
                finally:
                    _waiting = False  # (a second SIGTERM, from the master and `kill`, must not raise later)
                if not ready:
                    if inflow is not None:
                        inflow.top_up()  # idle: the receivers need not wait for anyone
                    if idle_since is not None and time.monotonic() - idle_since > IDLE_CLOSE:
                        runner.run(close_connections(runtime))
                        idle_since = None
                    continue
                try:
                    data = dispatch.recv(4096)  # an id, and at most MSGLOG_LINE_MAX more
                except (BlockingIOError, InterruptedError):
                    continue  # another worker took it
                if inflow is not None:
                    inflow.replace()
                message_id, options = parse_dispatch_datagram(data)
                if not message_id:
                    continue

                def deliver(i: str, first: str = message_id, options: dict[str, Any] = options) -> Any:
                    if board is not None and slot is not None:
                        board.busy(slot)  # one message at a time: each follower starts the clock again
                    # The followers are older messages: the datagram's message log line is not theirs.
                    kwargs = options if i == first else {k: v for k, v in options.items() if k != "msglog_first"}
                    return Delivery(runtime, i, loop_runner=runner, **kwargs).run()

                try:
                    # Then the messages waiting for the hosts it reached, down the same connections.
                    deliver_with_followers(runtime, message_id, deliver)
                except MtaError as exc:
                    runtime.logger.panic(f"delivery worker: {exc}; message left on the spool", message_id)
                except Exception as exc:
                    # A bug: the message stays on the spool (it was never marked delivered); this worker
                    # ends so that a fresh one, started by the master, carries on.
                    runtime.logger.panic(
                        f"delivery worker failed: {exc!r}\n{traceback.format_exc()}; message left on the spool",
                        message_id,
                    )
                    return 1
                finally:
                    if board is not None and slot is not None:
                        board.idle(slot)
                idle_since = time.monotonic()
                process_info.set_activity(idle)
        finally:
            try:
                runner.run(close_connections(runtime))
            except (OSError, MtaError):
                pass
    return 0


def worker_pid_note() -> str:
    return f"delivery worker pid={os.getpid()}"
