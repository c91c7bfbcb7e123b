"""Stress for a running daemon (tests.support.daemon.DaemonWorld), shared by the test and scripts/limits-test.

Each function does one thing to the daemon, checks that a fresh client is
still served while it happens (`served()`: a new connection gets its 220 and
a message through), and returns its figures (memory from /proc, times) for
the caller to assert on or print:

    idle_connections(world, 1000)        hold that many silent connections
    slowloris(world, ...)                clients that dribble a byte now and then, in a command and in DATA
    auth_guessers(world, 10)             parallel wrong passwords from one address, then one more (454)
    big_message(world, size, "data")     a message of `size` bytes, generated as it is sent, never held
    header_block(world, size)            a header section of `size` bytes
    many_recipients(world, n)            one message with n recipients

Everything is generated on the fly: a 1 GB message costs the sender a few
kilobytes.
"""

from __future__ import annotations

import base64
import dataclasses
import resource
import select
import socket
import threading
import time

from tests.support.daemon import DaemonWorld, RawClient
from tests.support.procmem import Memory, PeakMemory, tree_memory


@dataclasses.dataclass
class Figures:
    """What a stress cost the daemon: memory before and at its peak, and how long things took."""

    before: Memory
    peak: Memory
    seconds: float
    served_in: float  # seconds a fresh client took to get a message through during the stress
    extra: dict[str, object] = dataclasses.field(default_factory=dict)
    sockets: list[socket.socket] = dataclasses.field(default_factory=list)  # connections left open

    @property
    def growth_pss(self) -> int:
        return self.peak.pss - self.before.pss

    @property
    def growth_hwm(self) -> int:
        """How far the stress pushed the processes' high-water RSS: a bound on its peak that no sampling misses."""
        return self.peak.hwm - self.before.hwm

    def __str__(self) -> str:
        parts = [f"before: {self.before}", f"peak: RSS {self.peak.rss / 2**20:.1f} MiB, PSS {self.peak.pss / 2**20:.1f}"
                 f" MiB (+{self.growth_pss / 2**20:.1f} MiB), high-water RSS +{self.growth_hwm / 2**20:.1f} MiB",
                 f"{self.seconds:.2f} s",
                 f"fresh client served in {self.served_in:.2f} s"]
        parts += [f"{k}: {v}" for k, v in self.extra.items()]
        return "; ".join(parts)


def raise_nofile(wanted: int) -> None:
    """Let this process (and the daemon it starts) have `wanted` open files, if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def served(world: DaemonWorld, local_part: str = "fresh", timeout: float = 10) -> float:
    """Seconds for a new connection to get its 220 and a message accepted (AssertionError if it does not)."""
    started = time.monotonic()
    with RawClient(world.port, timeout=timeout) as client:
        code, text = client.reply()
        assert code == 220, (code, text)
        assert client.command("EHLO fresh.example")[0] == 250
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        assert client.command(f"RCPT TO:<{local_part}@example.com>")[0] == 250
        assert client.command("DATA")[0] == 354
        code, text = client.command("Subject: during the stress\r\n\r\nstill served\r\n.")
        assert code == 250, (code, text)
        client.command("QUIT")
    return time.monotonic() - started


def _pid(world: DaemonWorld) -> int:
    assert world.process is not None
    return world.process.pid


def _open(port: int, count: int, timeout: float = 30) -> list[socket.socket]:
    """`count` connections that have each had their 220, as fast as the daemon gives them."""
    sockets: list[socket.socket] = []
    pending: dict[int, tuple[socket.socket, bytes]] = {}
    poller = select.poll()
    deadline = time.monotonic() + timeout
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setblocking(False)
        sockets.append(sock)
        pending[sock.fileno()] = (sock, b"")
        poller.register(sock, select.POLLIN)
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} of {count} connections never got their banner"
        for fd, _event in poller.poll(1000):
            sock, got = pending[fd]
            try:
                got += sock.recv(4096)
            except BlockingIOError:
                continue
            assert got[:3] != b"421", got
            if b"\r\n" in got:
                assert got.startswith(b"220 "), got
                poller.unregister(fd)
                del pending[fd]
            else:
                pending[fd] = (sock, got)
    return sockets


def _closed_count(sockets: list[socket.socket]) -> int:
    closed = 0
    for sock in sockets:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def idle_connections(world: DaemonWorld, count: int, hold: float = 0.0) -> Figures:
    """Hold `count` silent connections (after their 220); a fresh client is served meanwhile.

    The connections are left open for the caller (`sockets`), who
    closes them or waits for smtp_receive_timeout to close them
    (timed_out())."""
    raise_nofile(count + 1000)
    before = tree_memory(_pid(world))
    started = time.monotonic()
    with PeakMemory(_pid(world)) as peak:
        sockets = _open(world.port, count)
        opened = time.monotonic() - started
        served_in = served(world, "fresh-idle")
        time.sleep(hold)
        peak.sample()
    return Figures(before, peak.peak, time.monotonic() - started, served_in,
                   {"connections": count, "opened in": f"{opened:.2f} s",
                    "per connection": f"{(peak.pss - before.pss) / count / 1024:.1f} KiB PSS"}, sockets)


def timed_out(sockets: list[socket.socket], timeout: float) -> int:
    """How many of `sockets` the daemon has closed within `timeout` seconds (then closes them all here)."""
    deadline = time.monotonic() + timeout
    closed = 0
    remaining = list(sockets)
    while remaining and time.monotonic() < deadline:
        still = []
        for sock in remaining:
            if _closed_count([sock]):
                sock.close()
                closed += 1
            else:
                still.append(sock)
        remaining = still
        if remaining:
            time.sleep(0.1)
    for sock in remaining:
        sock.close()
    return closed


class _Dribbler(threading.Thread):
    """A client that gets as far as `commands` and then sends one byte every `interval` seconds,
    never ending the line; records when (and with what reply) the server closed it."""

    def __init__(self, port: int, commands: list[str], interval: float) -> None:
        super().__init__(daemon=True)
        self.client = RawClient(port, timeout=60)
        assert self.client.reply()[0] == 220
        for command in commands:
            code, text = self.client.command(command)
            assert code in (250, 354), (command, code, text)
        self.interval = interval
        self.started = time.monotonic()
        self.closed_after: float | None = None
        self.bytes_sent = 0
        self.last_reply = b""

    def run(self) -> None:
        sock = self.client.sock
        try:
            while self.closed_after is None:
                sock.sendall(b"x")
                self.bytes_sent += 1
                # poll(), not select(): after the idle-connection stress this socket's number
                # can be past select()'s limit of 1024.
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                if poller.poll(self.interval * 1000):
                    data = sock.recv(4096)
                    self.last_reply += data
                    if not data:
                        self.closed_after = time.monotonic() - self.started
                elif time.monotonic() - self.started > 60:
                    return
        except OSError:
            self.closed_after = time.monotonic() - self.started
        finally:
            self.client.close()


def slowloris(world: DaemonWorld, in_data: int, in_command: int, interval: float, limit: float) -> Figures:
    """Clients that send a byte every `interval` seconds without ending a line, `in_data` of them inside
    DATA and `in_command` in a command; each must be closed within `limit` seconds (a fresh client is
    served meanwhile).  extra["closed after"] lists when each was closed (None: never)."""
    before = tree_memory(_pid(world))
    started = time.monotonic()
    data_commands = ["EHLO slow.example", "MAIL FROM:<a@example.org>", "RCPT TO:<slow@example.com>", "DATA"]
    with PeakMemory(_pid(world)) as peak:
        dribblers = [_Dribbler(world.port, data_commands, interval) for _ in range(in_data)]
        dribblers += [_Dribbler(world.port, ["EHLO slow.example"], interval) for _ in range(in_command)]
        for d in dribblers:
            d.start()
        served_in = served(world, "fresh-slowloris")
        for d in dribblers:
            d.join(limit + 5)
    closed = [None if d.closed_after is None else round(d.closed_after, 2) for d in dribblers]
    replies = sorted({d.last_reply.split(b"\r\n")[0].decode("ascii", "replace") for d in dribblers})
    return Figures(before, peak.peak, time.monotonic() - started, served_in,
                   {"closed after": closed, "replies": replies,
                    "bytes each": [d.bytes_sent for d in dribblers]})


def auth_guessers(world: DaemonWorld, parallel: int) -> Figures:
    """`parallel` connections from one address each send a wrong password at once; then one more
    connection tries.  extra: the codes of the wrong guesses, and the reply to the last try."""
    before = tree_memory(_pid(world))
    started = time.monotonic()
    token = base64.b64encode(b"\0alice\0wrong").decode()
    codes: list[int] = []

    def guess() -> None:
        with RawClient(world.port, timeout=60) as client:
            client.reply()
            client.command("EHLO guesser.example")
            codes.append(client.command(f"AUTH PLAIN {token}")[0])

    with PeakMemory(_pid(world)) as peak:
        threads = [threading.Thread(target=guess) for _ in range(parallel)]
        for t in threads:
            t.start()
        served_in = served(world, "fresh-auth")
        for t in threads:
            t.join(60)
        with RawClient(world.port) as client:
            client.reply()
            client.command("EHLO guesser.example")
            right = base64.b64encode(b"\0alice\0sesame").decode()
            last = client.command(f"AUTH PLAIN {right}")
    return Figures(before, peak.peak, time.monotonic() - started, served_in,
                   {"codes": sorted(codes), "then": last})


def _stream(sock: socket.socket, size: int, line: bytes) -> None:
    """Exactly `size` bytes of `line` again and again (the last one cut short if need be)."""
    block = line * max(1, (1 << 16) // len(line))
    sent = 0
    while sent < size:
        piece = block if size - sent >= len(block) else block[: size - sent]
        sock.sendall(piece)
        sent += len(piece)


def big_message(world: DaemonWorld, size: int, how: str = "data", announce: bool = False) -> Figures:
    """A message of about `size` bytes, made as it is sent, with DATA or one BDAT; extra["reply"]."""
    before = tree_memory(_pid(world))
    started = time.monotonic()
    with PeakMemory(_pid(world)) as peak, RawClient(world.port, timeout=600) as client:
        client.reply()
        client.command("EHLO big.example")
        params = f" SIZE={size}" if announce else ""
        mail = client.command(f"MAIL FROM:<a@example.org>{params}")
        if mail[0] != 250:
            reply = mail
            served_in = served(world, "fresh-big")
        else:
            assert client.command("RCPT TO:<big@example.com>")[0] == 250
            head = b"Subject: big\r\n\r\n"
            if how == "bdat":
                client.send(b"BDAT %d LAST\r\n" % (len(head) + size) + head)
            else:
                assert client.command("DATA")[0] == 354
                client.send(head)
            result: dict[str, float] = {}
            fresh = threading.Thread(target=lambda: result.setdefault("served", served(world, "fresh-big")))
            fresh.start()
            _stream(client.sock, size, b"0123456789" * 7 + b"\r\n")
            if how != "bdat":
                client.send(b"\r\n.\r\n")  # (the stream may have stopped inside a line)
            reply = client.reply()
            fresh.join(60)
            served_in = result.get("served", -1.0)
            client.command("QUIT")
    seconds = time.monotonic() - started
    return Figures(before, peak.peak, seconds, served_in,
                   {"size": size, "how": how, "reply": reply, "MB/s": round(size / 2**20 / seconds, 1)})


def header_block(world: DaemonWorld, size: int, one_line: bool = False) -> Figures:
    """A header section of `size` bytes (many header lines, or one very long one); extra["reply"]."""
    before = tree_memory(_pid(world))
    started = time.monotonic()
    with PeakMemory(_pid(world)) as peak, RawClient(world.port, timeout=600) as client:
        client.reply()
        client.command("EHLO headers.example")
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        assert client.command("RCPT TO:<headers@example.com>")[0] == 250
        assert client.command("DATA")[0] == 354
        if one_line:
            client.send(b"X-Long: ")
            _stream(client.sock, size, b"x" * 100)
            client.send(b"\r\n")
        else:
            _stream(client.sock, size, b"X-Header: " + b"h" * 88 + b"\r\n")
            client.send(b"\r\n")  # (the stream may have stopped inside a line)
        client.send(b"\r\nbody\r\n.\r\n")
        reply = client.reply()
        served_in = served(world, "fresh-headers")
        client.command("QUIT")
    return Figures(before, peak.peak, time.monotonic() - started, served_in,
                   {"size": size, "one line": one_line, "reply": reply})


def many_recipients(world: DaemonWorld, count: int, extra: int = 0) -> Figures:
    """One message to `count` + `extra` recipients, pipelined; extra["codes"]: reply code -> how many."""
    before = tree_memory(_pid(world))
    started = time.monotonic()
    total = count + extra
    with PeakMemory(_pid(world)) as peak, RawClient(world.port, timeout=600) as client:
        client.reply()
        client.command("EHLO many.example")
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        codes: dict[int, int] = {}
        batch = 1000
        for first in range(0, total, batch):
            n = min(batch, total - first)
            client.send("".join(f"RCPT TO:<r{first + i}@example.com>\r\n" for i in range(n)))
            for _ in range(n):
                code = client.reply()[0]
                codes[code] = codes.get(code, 0) + 1
        assert client.command("DATA")[0] == 354
        reply = client.command("Subject: many\r\n\r\nbody\r\n.")
        served_in = served(world, "fresh-many")
        client.command("QUIT")
    return Figures(before, peak.peak, time.monotonic() - started, served_in,
                   {"recipients": total, "codes": codes, "reply": reply})
