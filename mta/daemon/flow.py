"""Inflow control: receivers slow down when they get ahead of the delivery workers.

Postfix's `in_flow_delay`, in the daemon's terms.  A pipe shared by the
daemon's children holds tokens, one byte each, at most `in_flow_backlog`:

- a receiver takes one before it opens a message's files (at DATA, or at the
  first BDAT).  When there is none it waits for one, up to `in_flow_delay`,
  and then goes on without: the receivers are slowed down, never stopped.
  A message the workers are not handed (rejected, queued, lost with its
  connection) gives its token back;
- a delivery worker puts one back each time it takes a message id from the
  dispatch socket, and tops the pipe up to `in_flow_backlog` whenever it
  has been idle for a second, which also makes good any token a killed
  receiver took with it.

So the messages received and not yet taken by a worker stay about
`in_flow_backlog`, however much faster the receivers are.  That keeps
immediate delivery immediate and the spool's live files few, which is what
lets the finished messages' files be reused (spool_spare_files) instead of
new ones being made.  Nothing waits on a token with a message acknowledged:
the wait comes before the 354.
"""

from __future__ import annotations

import collections
import fcntl
import os
import termios

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio

BATCH = 16
_CHUNK = 4096
_ZEROS = bytes(_CHUNK)


class InflowTokens:
    """The token pipe: made by the master, used by every child through the same two descriptors."""

    def __init__(self, backlog: int, fds: tuple[int, int] | None = None) -> None:
        self.backlog = backlog
        self.batch = max(1, min(BATCH, backlog // 4))
        self.owed = 0  # a worker's tokens not yet put back: see replace()
        if fds is None:
            fds = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.read_fd, self.write_fd = fds
            self._fit_capacity()
            self.put(backlog)
        else:
            self.read_fd, self.write_fd = fds  # inherited over a SIGHUP re-exec: its tokens with it

    def _fit_capacity(self) -> None:
        # A pipe holds 64 KB unless the user's pipe pages are short; a larger backlog needs a larger pipe.
        try:
            if fcntl.fcntl(self.write_fd, fcntl.F_GETPIPE_SZ) < self.backlog:
                fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, self.backlog)
        except OSError:
            pass  # a smaller pipe: fewer tokens fit, and the receivers slow down sooner

    def count(self) -> int:
        """Tokens in the pipe now."""
        return int.from_bytes(fcntl.ioctl(self.read_fd, termios.FIONREAD, b"\0\0\0\0"), "little", signed=True)

    def take(self) -> bool:
        """One token, if there is one; never waits."""
        try:
            return bool(os.read(self.read_fd, 1))
        except BlockingIOError:
            return False

    def put(self, n: int = 1) -> None:
        """Put `n` tokens in; a full pipe keeps what fits."""
        while n > 0:
            try:
                n -= os.write(self.write_fd, _ZEROS[: min(n, _CHUNK)])
            except BlockingIOError:
                return

    def replace(self) -> None:
        """A worker took a message id: one token for a receiver.  They are put back `batch` at a
        time, so that waiting sessions go on together and share their spool syncs and loop turns
        (put back one at a time, the receivers needed two thirds more CPU per message); settle()
        puts back the rest."""
        self.owed += 1
        if self.owed >= self.batch:
            self.settle()

    def settle(self) -> None:
        """A worker about to wait for work: what it owes back, up to the backlog."""
        owed, self.owed = self.owed, 0
        if owed:
            room = self.backlog - self.count()
            if room > 0:
                self.put(min(owed, room))

    def top_up(self) -> None:
        """A worker with nothing to do: the pipe back to `backlog` tokens, whatever was lost or added."""
        have = self.count()
        if have < self.backlog:
            self.put(self.backlog - have)
        elif have > self.backlog:
            try:
                os.read(self.read_fd, have - self.backlog)  # another process may have taken some meanwhile
            except BlockingIOError:
                pass

    def fds(self) -> tuple[int, int]:
        return self.read_fd, self.write_fd


class InflowGate:
    """A receiver's side: sessions wait here, on its event loop, for a token before a message."""

    def __init__(self, tokens: InflowTokens, delay: float, loop: asyncio.AbstractEventLoop) -> None:
        self.tokens = tokens
        self.delay = delay
        self.loop = loop
        self._waiters: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._reading = False

    async def take(self) -> bool:
        """True with a token; False when none came within the delay (the message goes ahead anyway)."""
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()  # timed out: with the workers stalled, no token comes to clear them
        if not waiters and self.tokens.take():
            return True
        waiter: asyncio.Future[bool] = self.loop.create_future()
        waiters.append(waiter)
        if not self._reading:
            self._reading = True
            self.loop.add_reader(self.tokens.read_fd, self._readable)
        timer = self.loop.call_later(self.delay, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def give_back(self) -> None:
        """A token taken for a message the workers were not handed."""
        self.tokens.put(1)

    def _readable(self) -> None:
        waiters = self._waiters
        while waiters:
            if waiters[0].done():  # timed out or its session ended
                waiters.popleft()
                continue
            if not self.tokens.take():
                return  # another receiver was quicker: wait for the next one
            waiters.popleft().set_result(True)
        self._reading = False
        self.loop.remove_reader(self.tokens.read_fd)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
