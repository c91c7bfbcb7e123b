"""Deliver now and give up: `mta -M ID` and `mta -Mg ID` in a child process, never in the web server.

A delivery (a forced one, or the bounce that giving up sends) may take
minutes and needs root for a local delivery's child, so the monitor never
runs one itself: it starts the command an administrator would type, which
is the same code (mta.cli_messages), and waits for it without blocking the
event loop (asyncio subprocess, or a reply on a socket).

- `DirectStarter`: the monitor runs as the user the children should run as
  (it was not started as root): it starts them itself.
- `HelperStarter`: the monitor was started as root and runs as mta_user.
  Before dropping privileges it forked a helper that stays root and does
  one thing: start ``mta -C CONFIG -M ID`` or ``-Mg ID`` for a request on
  its socket, and send back the exit status and output.  The helper takes
  only a message id (checked by mta.spool.ids.is_message_id) and one of
  those two options, so the unprivileged web server can ask for nothing
  that mta_user could not already have done by putting a message on the
  spool for the daemon (whose workers deliver as root).  It exits when its
  socket closes (the monitor has gone).

Both sides run at most `CONCURRENT` children at once, and one at a time
for a message: a request beyond that is answered at once with a refusal
(`Slots`), so pressing "deliver now" a hundred times, or a web server that
floods the helper's socket, starts no more than a few processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading

from mta.spool.ids import is_message_id

OPTIONS = ("", "g")  # -M and -Mg: what the children may be asked to do
OUTPUT_MAX = 16 * 1024  # characters of a child's output kept (its end)
TIMEOUT = 3600.0  # a delivery that takes longer than this is killed (it defers, nothing is lost)
CONCURRENT = 4  # children running at once
_REQUEST_MAX = 4096
# A reply is one datagram: it must fit the socket's buffer whatever the output holds (a
# character may cost six bytes of JSON), or the web server would wait for it for ever.
_REPLY_MAX = 128 * 1024


class Slots:
    """At most CONCURRENT children, one per message.  `take` gives the refusal, or None and a
    slot that `give_back` returns; thread-safe (the helper takes them in its threads)."""

    def __init__(self) -> None:
        self.limit = CONCURRENT
        self.running: set[str] = set()
        self._lock = threading.Lock()

    def take(self, message_id: str) -> str | None:
        with self._lock:
            if message_id in self.running:
                return f"message {message_id}: a delivery or give-up asked for from the monitor is still running"
            if len(self.running) >= self.limit:
                return (
                    f"{len(self.running)} deliveries asked for from the monitor are still running "
                    f"(at most {self.limit} at once): try again when one has finished"
                )
            self.running.add(message_id)
            return None

    def give_back(self, message_id: str) -> None:
        with self._lock:
            self.running.discard(message_id)


def reply_bytes(number: object, status: int, output: str) -> bytes:
    """The helper's answer, cut (keeping the end of the output) to fit one datagram."""
    while True:
        reply = json.dumps({"n": number, "status": status, "output": output}).encode()
        if len(reply) <= _REPLY_MAX:
            return reply
        output = output[len(output) // 2 :]


def command(config_path: str, flags: str, message_id: str) -> list[str]:
    if flags not in OPTIONS or not is_message_id(message_id):
        raise ValueError(f"not a request the starter takes: -M{flags} {message_id!r}")
    return [sys.executable, "-m", "mta.cli", "-C", config_path, f"-M{flags}", message_id]


def _text(output: bytes) -> str:
    return output[-OUTPUT_MAX:].decode("utf-8", "replace")


class DirectStarter:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.slots = Slots()

    async def run(self, flags: str, message_id: str) -> tuple[int, str]:
        """(exit status, standard output and error) of `mta -M<flags> ID`."""
        argv = command(self.config_path, flags, message_id)
        busy = self.slots.take(message_id)
        if busy:
            return 1, busy
        try:
            return await self._run(argv, flags, message_id)
        finally:
            self.slots.give_back(message_id)

    async def _run(self, argv: list[str], flags: str, message_id: str) -> tuple[int, str]:
        child = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(child.communicate(), TIMEOUT)
        except TimeoutError:
            child.kill()
            await child.wait()
            return 1, f"mta -M{flags} {message_id} took more than {TIMEOUT:.0f}s and was stopped"
        return child.returncode or 0, _text(output)

    def close(self) -> None:
        """Nothing to release: each child is waited for by the request that started it (the
        helper starter, the other kind, closes its socket and ends the root helper here)."""


class HelperStarter:
    """The web server's end of the root helper's socket."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.sock.setblocking(False)
        self._next = 0
        self.slots = Slots()
        self._waiting: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    def fork(cls, config_path: str) -> HelperStarter:
        """Fork the helper (call it while still root, before binding anything or dropping)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            parent.close()
            code = 1
            try:
                _helper_main(child, config_path)
                code = 0
            finally:
                os._exit(code)
        child.close()
        return cls(parent, pid)

    async def run(self, flags: str, message_id: str) -> tuple[int, str]:
        command("", flags, message_id)  # refuse here what the helper would refuse
        busy = self.slots.take(message_id)
        if busy:
            return 1, busy
        try:
            return await self._ask(flags, message_id)
        finally:
            self.slots.give_back(message_id)

    async def _ask(self, flags: str, message_id: str) -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = loop.create_task(self._read())
        self._next += 1
        number = self._next
        future: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._waiting[number] = future
        request = json.dumps({"n": number, "flags": flags, "id": message_id}).encode()
        try:
            await loop.sock_sendall(self.sock, request)
        except OSError as exc:
            self._waiting.pop(number, None)
            return 1, f"the monitor's delivery helper has gone ({exc.strerror}): restart mta-monitor"
        return await future

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(self.sock, _REPLY_MAX)
            except OSError:
                data = b""
            if not data:
                for future in self._waiting.values():
                    if not future.done():
                        future.set_result((1, "the monitor's delivery helper has gone: restart mta-monitor"))
                self._waiting.clear()
                return
            reply = json.loads(data)
            future = self._waiting.pop(int(reply["n"]), None)
            if future is not None and not future.done():
                future.set_result((int(reply["status"]), str(reply["output"])))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _helper_main(sock: socket.socket, config_path: str) -> None:
    """The helper's loop: one thread per request, so that a long delivery holds up no other."""
    lock = threading.Lock()
    slots = Slots()  # the web server bounds its requests too; this bound holds if it does not

    def answer(number: object, flags: str, message_id: str) -> None:
        try:
            run(number, flags, message_id)
        finally:
            slots.give_back(message_id)

    def run(number: object, flags: str, message_id: str) -> None:
        try:
            argv = command(config_path, flags, message_id)
        except ValueError as exc:
            status, output = 2, str(exc)
        else:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    timeout=TIMEOUT,
                    check=False,
                )
                status, output = done.returncode, _text(done.stdout)
            except subprocess.TimeoutExpired:
                status, output = 1, f"mta -M{flags} {message_id} took more than {TIMEOUT:.0f}s and was stopped"
            except OSError as exc:
                status, output = 1, f"cannot start mta: {exc.strerror}"
        send(reply_bytes(number, status, output))

    def send(reply: bytes) -> None:
        with lock:
            try:
                sock.sendall(reply)
            except OSError:
                pass  # the monitor has gone; the delivery itself is done

    while True:
        data = sock.recv(_REQUEST_MAX)
        if not data:
            return
        try:
            request = json.loads(data)
            flags, message_id, number = str(request["flags"]), str(request["id"]), request["n"]
        except (ValueError, KeyError, TypeError):
            continue  # not from the monitor: the socket is its alone, so this is a bug; ignore it
        busy = slots.take(message_id)
        if busy:
            send(reply_bytes(number, 1, busy))
            continue
        threading.Thread(target=answer, args=(number, flags, message_id), daemon=True).start()
