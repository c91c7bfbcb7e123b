"""SMTP over standard input and output: `-bs` (inetd, MUAs), `-bS` (batched SMTP), `-bh` (testing).

Standard input may be a pipe, a terminal, a socket (inetd) or a regular
file (``mta -bS < batch``), which asyncio cannot watch; so it is read in a
worker thread and fed to the session's `SmtpChannel`, and replies are
written to standard output with plain blocking writes (this process serves
nobody else).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mta.receive.smtp_io import SmtpChannel

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from mta.receive.smtp_server import SmtpSession


class _StdoutTransport:
    """The little of asyncio.WriteTransport that SmtpChannel uses, on file descriptor 1."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._closing = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BrokenPipeError:
                self._closing = True
                return

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _start_stdin_reader(channel: SmtpChannel, fd: int) -> None:
    """Feed standard input to the channel from a daemon thread: a blocked read of a terminal or a
    pipe that never closes must not keep the process alive after QUIT."""
    import threading

    loop = asyncio.get_running_loop()

    def read() -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            try:
                if not data:
                    loop.call_soon_threadsafe(channel.eof_received)
                    return
                loop.call_soon_threadsafe(channel.data_received, data)
            except RuntimeError:
                return  # the loop has closed: the session is over

    threading.Thread(target=read, name="stdin", daemon=True).start()


async def run_stdio_session(make_session: Callable[[SmtpChannel], SmtpSession]) -> SmtpSession:
    """Run one session on fds 0 and 1; returns it (for -bS's exit status)."""
    sys.stdout.flush()
    channel = SmtpChannel()
    transport = _StdoutTransport(1)
    channel.connection_made(transport)  # type: ignore[arg-type]
    _start_stdin_reader(channel, 0)
    session = make_session(channel)
    await session.run()
    return session
