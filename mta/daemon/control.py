"""Messages on a control socket (master <-> receiver) that are never lost because its queue is full.

    outbox = Outbox(sock, loop)                          # sock: non-blocking AF_UNIX SOCK_SEQPACKET
    outbox.send(b"closed 12")                            # now, or as soon as the peer has read some
    outbox.send(meta, fd=conn.fileno(), done=callback)   # with a descriptor (SCM_RIGHTS)
    outbox.discard()                                     # the peer is gone: done(False) for each waiting

A datagram or seqpacket Unix socket holds only a few messages that the peer
has not read yet (net.unix.max_dgram_qlen, 10 by default); past that, a
non-blocking send fails with EAGAIN.  The master sends a receiver one
message per accepted connection, and a receiver tells the master of every
session that ends, so a burst of connections (or of sessions timing out)
fills the queue at once.  Dropping the message then loses the connection
(the client sees it closed without a word), or, for "closed", leaves it
counted against smtp_accept_max for ever, until the daemon refuses
everyone.  So a message that cannot go now waits here, in order, and goes
when the socket is writable again (the event loop's writer callback).

`done(sent)` is called once per message that has one: True when the peer
has it, False when it never will (the peer went away, or discard()).
"""

from __future__ import annotations

import array
import asyncio
import collections
import socket
from collections.abc import Callable

Done = Callable[[bool], None]


class Outbox:
    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.pending: collections.deque[tuple[bytes, int | None, Done | None]] = collections.deque()
        self._writing = False

    def send(self, data: bytes, fd: int | None = None, done: Done | None = None) -> None:
        self.pending.append((data, fd, done))
        if len(self.pending) == 1:
            self._flush()

    def _flush(self) -> None:
        while self.pending:
            data, fd, done = self.pending[0]
            try:
                if fd is None:
                    self.sock.send(data)
                else:
                    fds = array.array("i", [fd]).tobytes()
                    self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self._writing = True
                    self.loop.add_writer(self.sock, self._flush)
                return
            except OSError:
                self.discard()
                return
            self.pending.popleft()
            if done is not None:
                done(True)
        self._stop_writing()

    def discard(self) -> None:
        """Give up on every waiting message (the peer has gone)."""
        self._stop_writing()
        while self.pending:
            _data, _fd, done = self.pending.popleft()
            if done is not None:
                done(False)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            try:
                self.loop.remove_writer(self.sock)
            except (ValueError, OSError):
                pass
