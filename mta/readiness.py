"""Waiting for one file descriptor to become readable, whatever its number.

select() cannot watch a descriptor numbered 1024 or more (ValueError), and a
receiving process serving a thousand connections has such numbers for the
pipes it opens next (a .forward read as its user for `verify = recipient`);
poll() has no such limit.
"""

from __future__ import annotations

import select

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


def readable(source: int | socket.socket, timeout: float | None) -> bool:
    """True once `source` (a descriptor or a socket) has data or end of file, False after
    `timeout` seconds (None: wait for ever)."""
    poller = select.poll()
    poller.register(source, select.POLLIN | select.POLLPRI)
    wait_ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(wait_ms))
