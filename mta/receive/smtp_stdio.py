"""SMTP over standard input and output: `-bs` (inetd, MUAs), `-bS` (batched SMTP), `-bh` (testing).

Standard input may be a pipe, a terminal, a socket (inetd) or a regular
file (``mta -bS < batch``), which asyncio cannot watch; so it is read in a
worker thread and fed to the session's `SmtpChannel`, and replies are
written to standard output with plain blocking writes (this process serves
nobody else).

A batch for -bS is a local file, often written with LF line ends (Exim's
own use_bsmtp output, and so mta's, without use_crlf): there every line end
is taken as CRLF, as Exim's -bS does, so ``<LF>.<LF>`` ends a message.  The
CRLF-only rule against SMTP smuggling is for sessions with a peer (-bs).
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


class _LineEnds:
    """Bytes with LF or CRLF line ends in, CRLF line ends out (a CR at a read's end waits for the next)."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        data, self.carry = self.carry + data, b""
        if data.endswith(b"\r"):
            data, self.carry = data[:-1], b"\r"
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _start_stdin_reader(channel: SmtpChannel, fd: int, lf_lines: bool = False) -> None:
    """Feed standard input to the channel from a daemon thread: a blocked read of a terminal or a
    pipe that never closes must not keep the process alive after QUIT.  `lf_lines`: a bare LF
    ends a line too (-bS)."""
    import threading

    loop = asyncio.get_running_loop()
    line_ends = _LineEnds() if lf_lines else None

    def read() -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if line_ends is not None and data:
                data = line_ends.feed(data)
            elif line_ends is not None:
                data, line_ends.carry = line_ends.carry, b""  # a last lone CR, then the end next time
            try:
                if not data:
                    loop.call_soon_threadsafe(channel.eof_received)
                    return
                loop.call_soon_threadsafe(channel.data_received, data)
            except RuntimeError:
                return  # the loop has closed: the session is over

    threading.Thread(target=read, name="stdin", daemon=True).start()


async def run_stdio_session(
    make_session: Callable[[SmtpChannel], SmtpSession], lf_lines: bool = False
) -> SmtpSession:
    """Run one session on fds 0 and 1; returns it (for -bS's exit status)."""
    sys.stdout.flush()
    channel = SmtpChannel()
    transport = _StdoutTransport(1)
    channel.connection_made(transport)  # type: ignore[arg-type]
    _start_stdin_reader(channel, 0, lf_lines)
    session = make_session(channel)
    await session.run()
    return session
