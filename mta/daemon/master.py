"""`mta -bd`: the daemon's master process (Exim's daemon.c).

Start-up, in this order, each failure a clear error and exit status 1
before anything listens: the configuration (file:line), the drivers, the
pid file (`pid_file_path`, locked: a second daemon is refused with the
first one's pid), the spool directories (made mta_user's when root), the
TLS keys, and every listener (address, port and reason if one cannot be
bound).  Then it forks the receiving processes (which drop to mta_user)
and the delivery workers, writes ``daemon started`` to the main log and,
unless -bdf, detaches: the command returns 0 only once the daemon is
listening.

The master itself accepts every connection, applies the connection limits
(`smtp_accept_max`, `smtp_accept_max_per_host`, `smtp_accept_reserve` with
`smtp_reserve_hosts`, `smtp_load_reserve`: 421 for a connection over a
limit) and passes the socket to the receiver with the fewest sessions.  It
restarts a child that dies, starts a queue run every -q interval (through
the same worker pool), and takes the drop directory's offline submissions
in.

Signals: SIGHUP re-reads the configuration by re-executing itself with the
listening sockets kept open (no connection is refused meanwhile); a
configuration that does not load is logged and the old one kept.  SIGTERM
(and SIGINT) stop accepting, let the receivers finish their sessions
(bounded) and the workers their deliveries, and exit.  Nothing that was
acknowledged is lost either way: every 250 follows its fsync.

Under systemd (`Type=notify`, $NOTIFY_SOCKET) the master says READY=1 once
it listens, RELOADING=1 on SIGHUP and READY=1 when the reload is done (in
the new image, or at once if the new configuration failed), and STOPPING=1
on SIGTERM: mta.daemon.notify.

Security: the master runs as root when started as root (it must, to bind
port 25 and to fork workers that can become recipients); it never reads a
byte of SMTP.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import sys
import time

from mta import __version__, process_info
from mta.daemon.listeners import ListenAddress, bind_listeners, listen_addresses
from mta.daemon.notify import Notifier
from mta.daemon.pool import PoolLimits, WorkerBoard, should_start, stalled, to_retire
from mta.errors import ConfigError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.cli_args import Invocation
    from mta.daemon.flow import InflowTokens
    from mta.runtime import Runtime

INHERIT_ENV = "MTA_DAEMON_FDS"  # listener and pid-file descriptors handed across a SIGHUP re-exec
STOP_WAIT = 30.0


class Child:
    def __init__(self, kind: str, pid: int, control: socket.socket | None = None) -> None:
        self.kind = kind  # "receiver" or "worker"
        self.pid = pid
        self.control = control
        self.outbox: Any = None  # mta.daemon.control.Outbox for `control`, once the loop runs
        self.sessions = 0
        self.started = time.monotonic()
        self.slot: int | None = None  # a worker's slot on the pool's board (mta.daemon.pool)
        self.retiring = False  # a worker asked to end because the pool shrinks: not restarted


class Master:
    def __init__(self, runtime: Runtime, inv: Invocation, listening: bool = True) -> None:
        self.listening = listening  # False: -q30m alone, a daemon that only runs the queue
        self.runtime = runtime
        self.config = runtime.config
        self.inv = inv
        self.logger = runtime.logger
        self.listeners: list[tuple[ListenAddress, socket.socket]] = []
        self.submission: socket.socket | None = None
        self.children: dict[int, Child] = {}
        self.connections: dict[int, tuple[str, Child]] = {}  # connection id -> (client ip, receiver)
        self.per_host: dict[str, int] = {}
        self.next_id = 1
        self.stopping = False
        self.reloading = False
        self.pid_fd: int | None = None
        self.dispatch_send, self.dispatch_recv = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._grow_dispatch_buffers()
        self.inflow = self._inflow_tokens(None)
        self.identity = _service_identity(runtime)
        self.queue_interval = inv.queue_interval
        self.queue_flags = inv.queue_flags  # -bd -qf30m: every periodic run is a -qf run
        self.loop: asyncio.AbstractEventLoop | None = None
        self.backoff: dict[str, float] = {}
        self.queue_runs: set[int] = set()
        self.notifier = Notifier.from_environment()  # systemd's NOTIFY_SOCKET, kept from the children
        self.pool = self._pool_limits()
        self.board = WorkerBoard(self.pool.maximum)
        self.pool_changed = time.monotonic()

    def _inflow_tokens(self, inherited: list[int] | None) -> InflowTokens | None:
        """The receivers' tokens (mta.daemon.flow), or None when in_flow_delay is 0; after a SIGHUP
        re-exec, the old image's pipe, which its receivers and workers still use."""
        main = self.config.main
        if not main.in_flow_delay:
            for fd in inherited or ():
                os.close(fd)
            return None
        from mta.daemon.flow import InflowTokens

        if inherited is None:
            return InflowTokens(main.in_flow_backlog)
        for fd in inherited:
            os.set_inheritable(fd, False)
        return InflowTokens(main.in_flow_backlog, (inherited[0], inherited[1]))

    def _grow_dispatch_buffers(self) -> None:
        for sock in (self.dispatch_send, self.dispatch_recv):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            except OSError:
                pass

    # -- start-up ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that can fail before the daemon exists; ConfigError with the reason."""
        # The children's code, loaded once here: a broken installation fails now, not in a restart
        # loop, and the forked children share these pages with the master.
        import mta.daemon.receiver
        import mta.daemon.workers
        import mta.deliver.delivery
        import mta.queue.runner  # noqa: F401

        inherited = os.environ.pop(INHERIT_ENV, None)
        handed_on = json.loads(inherited) if inherited else None
        if handed_on is not None:
            self.pid_fd = handed_on["pid_fd"]  # still locked: locks survive exec
        self._take_pid_file()
        self._prepare_spool()
        self._check_tls()
        if handed_on is not None:
            self._adopt(handed_on)
        elif self.listening:
            self.listeners = bind_listeners(listen_addresses(self.config.main, self.inv.listen))
            self.submission = self._bind_submission()

    def _pid_path(self) -> str:
        m = self.config.main
        default = "mta-daemon.pid" if self.listening else "mta-queue.pid"
        return self.inv.pid_file or (m.pid_file_path if self.listening else "") or \
            os.path.join(m.spool_directory, default)

    def _take_pid_file(self) -> None:
        if self.pid_fd is not None:
            return
        path = self._pid_path()
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the pid file {path}: {exc.strerror}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"another mta daemon is running (pid {other}, pid file {path})") from None
        self.pid_fd = fd
        self._write_pid()

    def _write_pid(self) -> None:
        assert self.pid_fd is not None
        os.ftruncate(self.pid_fd, 0)
        os.pwrite(self.pid_fd, f"{os.getpid()}\n".encode(), 0)

    def _prepare_spool(self) -> None:
        from mta.daemon.submission import OFFLINE
        from mta.errors import SpoolError

        spool = self.runtime.spool
        try:
            spool.ensure_directories()
        except SpoolError as exc:
            raise ConfigError(str(exc)) from None
        top = self.config.main.spool_directory
        offline = os.path.join(top, OFFLINE)
        if os.geteuid() == 0 and self.identity is not None:
            uid, gid, _login = self.identity
            for name in ("", "input", "msglog", "db", "log"):
                path = os.path.join(top, name)
                st = os.stat(path)
                if st.st_uid == 0:
                    os.chown(path, uid, gid)
            os.chmod(top, 0o751)  # others may reach the socket and the drop directory, not list
            if not os.path.isdir(offline):
                os.mkdir(offline)
            os.chown(offline, uid, gid)
            os.chmod(offline, 0o3733)  # anyone may drop a file in; nobody but mta_user may look
            for name in os.listdir(os.path.join(top, "log")):
                path = os.path.join(top, "log", name)
                if os.stat(path).st_uid == 0:
                    os.chown(path, uid, gid)
            self._check_reachable(top, uid, gid)
        elif not os.path.isdir(offline):
            os.mkdir(offline, 0o700)

    def _check_reachable(self, top: str, uid: int, gid: int) -> None:
        """The receivers and the workers' SMTP side run as mta_user: the spool must be theirs to use,
        all the way down (a parent directory closed to them would fail every message)."""
        from mta.privilege import AsUserError, run_as_user

        def probe() -> dict[str, object]:
            return {"ok": os.access(os.path.join(top, "input"), os.W_OK | os.X_OK)}

        try:
            usable = run_as_user(uid, gid, None, probe, timeout=30).get("ok")
        except AsUserError as exc:
            raise ConfigError(f"cannot check the spool as mta_user: {exc}") from None
        if not usable:
            raise ConfigError(
                f"mta_user (uid {uid}) cannot write {top}/input: a directory on the way to the spool "
                "is closed to it"
            )

    def _check_tls(self) -> None:
        try:
            from mta.receive.tls import server_context
        except ImportError:
            return
        server_context(self.runtime)  # a bad certificate stops start-up here, not in a receiver

    def _bind_submission(self) -> socket.socket | None:
        from mta.daemon.submission import socket_path

        path = socket_path(self.config)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot remove the old submission socket {path}: {exc.strerror}") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o666)  # any local user may submit; who they are comes from the kernel
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on the submission socket {path}: {exc.strerror}") from None
        return sock

    def _adopt(self, inherited: dict[str, Any]) -> None:
        """After a SIGHUP re-exec: take the old listeners back instead of binding again."""
        for item in inherited["listeners"]:
            sock = socket.socket(fileno=item["fd"])
            sock.setblocking(False)
            self.listeners.append((ListenAddress(item["address"], item["port"], item["tls"]), sock))
        if inherited.get("submission") is not None:
            self.submission = socket.socket(fileno=inherited["submission"])
        if inherited.get("dispatch") is not None:
            # The receivers of the old image still send ids on this pair: the new workers must hear them.
            self.dispatch_send.close()
            self.dispatch_recv.close()
            send_fd, recv_fd = inherited["dispatch"]
            self.dispatch_send = socket.socket(fileno=send_fd)
            self.dispatch_recv = socket.socket(fileno=recv_fd)
            for sock in (self.dispatch_send, self.dispatch_recv):
                os.set_inheritable(sock.fileno(), False)
        if "inflow" in inherited:
            if self.inflow is not None:  # made in __init__, before the old one was known
                for fd in self.inflow.fds():
                    os.close(fd)
            self.inflow = self._inflow_tokens(inherited["inflow"])
        os.set_inheritable(inherited["pid_fd"], False)

    # -- children --------------------------------------------------------------------------------
    def _fork(self, kind: str) -> Child:
        control_parent = control_child = None
        slot = None
        if kind == "receiver":
            control_parent, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        else:
            slot = self.board.claim()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's body; tested through its effects
            code = 1
            try:
                if control_parent is not None:
                    control_parent.close()
                for _entry, sock in self.listeners:
                    sock.close()
                self._reset_signals()
                if kind == "receiver":
                    from mta.daemon.receiver import receiver_main

                    process_info.set_activity("receiving SMTP: no connections")
                    self.dispatch_recv.close()
                    code = receiver_main(self.runtime, control_child, self.dispatch_send,  # type: ignore[arg-type]
                                         self.submission, self.identity, self.inflow)
                else:
                    from mta.daemon.workers import worker_main

                    self.dispatch_send.close()
                    if self.submission is not None:
                        self.submission.close()
                    remote = (self.identity[0], self.identity[1]) if self.identity and os.geteuid() == 0 else None
                    code = worker_main(self.runtime, self.dispatch_recv, remote, self.board, slot, self.inflow)
            except BaseException as exc:
                import traceback

                self.logger.panic(f"{kind} process failed: {exc!r}\n{traceback.format_exc()}")
            finally:
                os._exit(code)
        child = Child(kind, pid, control_parent)
        child.slot = slot
        if control_child is not None:
            control_child.close()
        self.children[pid] = child
        if control_parent is not None and self.loop is not None:
            from mta.daemon.control import Outbox

            control_parent.setblocking(False)
            child.outbox = Outbox(control_parent, self.loop)
            self.loop.add_reader(control_parent, self._on_child_message, child)
        return child

    @staticmethod
    def _reset_signals() -> None:
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        # The master's event loop wakes on a socket that fork shares: a child's signals must not
        # reach it (the master would act on a SIGTERM or a SIGUSR1 sent to its child).
        signal.set_wakeup_fd(-1)
        process_info.install()

    def _counts(self) -> tuple[int, int]:
        m = self.config.main
        receivers = m.smtp_receivers or os.cpu_count() or 1
        workers = m.delivery_workers or os.cpu_count() or 1
        return receivers, workers

    def _pool_limits(self) -> PoolLimits:
        m = self.config.main
        workers = self._counts()[1]
        return PoolLimits(workers, m.delivery_workers_max or 4 * workers, m.delivery_worker_stall,
                          m.delivery_worker_max_idle)

    def _start_children(self) -> None:
        receivers, workers = self._counts()
        for _ in range(workers):
            self._fork("worker")
        for _ in range(receivers if self.listening else 0):
            self._fork("receiver")

    def _workers(self) -> dict[int, float]:
        """The state on the board (mta.daemon.pool) of every worker that is not ending, by pid."""
        return {c.pid: self.board.state(c.slot) for c in self.children.values()
                if c.kind == "worker" and c.slot is not None and not c.retiring}

    def _balance_workers(self) -> None:
        """Once a second: one more worker while messages wait behind stalled ones; one fewer once idle."""
        from mta.readiness import readable

        assert self.loop is not None
        if self.stopping or self.reloading:
            return
        self.loop.call_later(1.0, self._balance_workers)
        workers = self._workers()
        now = time.monotonic()
        states = list(workers.values())
        # (A worker asked to end keeps its slot until it has: the board's size is the real maximum.)
        if should_start(states, now, self.pool, readable(self.dispatch_recv, 0)) and self.board.has_free_slot():
            held = stalled(states, now, self.pool.stall)
            self._fork("worker")
            self.pool_changed = now
            self.logger.main(f"delivery workers: {held} of {len(states)} busy on one message for "
                             f"{self.pool.stall}s or more, messages waiting: started another "
                             f"({len(states) + 1} in all)")
            return
        # The pool shrinks by one a second at most, and not while it has just grown.
        pid = to_retire(workers, now, self.pool) if now - self.pool_changed >= 1.0 else None
        if pid is not None:
            self.children[pid].retiring = True
            self.pool_changed = now
            try:
                os.kill(pid, signal.SIGTERM)  # one that took a message meanwhile finishes it first
            except ProcessLookupError:
                pass
            self.logger.main(f"delivery workers: pid {pid} idle for {self.pool.max_idle}s or more, "
                             f"asked to end ({len(states) - 1} left)")

    def _on_child_message(self, child: Child) -> None:
        assert child.control is not None
        try:
            data = child.control.recv(256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if self.loop is not None:
                self.loop.remove_reader(child.control)
            return
        words = data.decode(errors="replace").split()
        if words[:1] == ["closed"] and len(words) == 2 and words[1].isdigit():
            self._connection_closed(int(words[1]))
        elif words[:1] == ["etrn"] and len(words) in (2, 3):
            from mta.queue.runner import Selection

            # ETRN: a queue run for the messages with a recipient in that domain (Exim's -R);
            # the third word is the argument whose serialisation record its end releases.
            release = f"etrn-{words[2]}" if len(words) == 3 else None
            self._start_queue_run(Selection(recipient="@" + words[1]), release)

    def _connection_closed(self, connection_id: int) -> None:
        entry = self.connections.pop(connection_id, None)
        if entry is None:
            return
        address, child = entry
        child.sessions = max(0, child.sessions - 1)
        left = self.per_host.get(address, 1) - 1
        if left > 0:
            self.per_host[address] = left
        else:
            self.per_host.pop(address, None)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                self.queue_runs.discard(pid)
                continue  # a queue run, or a child of the process we were before a re-exec
            if child.slot is not None:
                self.board.release(child.slot)
            if child.control is not None:
                if child.outbox is not None:
                    child.outbox.discard()  # connections still waiting to be passed: closed, uncounted
                if self.loop is not None:
                    try:
                        self.loop.remove_reader(child.control)
                    except (ValueError, OSError):
                        pass
                child.control.close()
                for connection_id in [c for c, (_a, r) in self.connections.items() if r is child]:
                    self._connection_closed(connection_id)
            if child.retiring:  # the pool shrank (_balance_workers): not restarted
                if os.waitstatus_to_exitcode(status) != 0:
                    self.logger.panic(f"worker process {pid} ended with status "
                                      f"{os.waitstatus_to_exitcode(status)} as it was asked to end")
                continue
            if not self.stopping and not self.reloading:
                code = os.waitstatus_to_exitcode(status)
                # A child that dies soon after it started is restarted later and later (up to a
                # minute), so that a persistent fault does not turn into a fork loop.
                lived = time.monotonic() - child.started
                self.backoff[child.kind] = 1.0 if lived > 60 else min(self.backoff.get(child.kind, 0.5) * 2, 60.0)
                delay = self.backoff[child.kind] if lived < 60 else 0.0
                self.logger.panic(f"{child.kind} process {pid} ended unexpectedly (status {code}); "
                                  f"restarting it in {delay:g}s")
                assert self.loop is not None
                self.loop.call_later(delay, self._restart, child.kind)

    def _restart(self, kind: str) -> None:
        if not self.stopping and not self.reloading:
            self._fork(kind)

    # -- connections ---------------------------------------------------------------------------------
    def _on_accept(self, entry: ListenAddress, listener: socket.socket) -> None:
        for _ in range(32):  # take what is waiting, a bounded number at a time
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.logger.main(f"accept failed on {entry}: {exc.strerror}")
                return
            self._dispatch_connection(entry, conn, peer)

    def _dispatch_connection(self, entry: ListenAddress, conn: socket.socket, peer: Any) -> None:
        address = str(peer[0])
        if address.startswith("::ffff:") and "." in address:
            address = address[7:]
        refusal = self._over_limit(address)
        receivers = [c for c in self.children.values() if c.kind == "receiver" and c.outbox is not None]
        if refusal is None and not receivers:
            refusal = "Service not available - no receiving process"
        if refusal is not None:
            try:
                conn.setblocking(False)
                conn.send(f"421 {self.config.primary_hostname} {refusal}\r\n".encode())
            except OSError:
                pass
            conn.close()
            if self.runtime.logger.selected("connection_reject"):
                self.logger.main(f"Connection from [{address}] refused: {refusal}")
            return
        child = min(receivers, key=lambda c: c.sessions)
        connection_id = self.next_id
        self.next_id += 1
        meta = json.dumps({"id": connection_id, "tls": entry.tls_on_connect, "peer": address}).encode()
        # Counted from now: a connection waiting in the outbox (a burst filled the socket's queue)
        # holds its slot as one being served does.
        child.sessions += 1
        self.connections[connection_id] = (address, child)
        self.per_host[address] = self.per_host.get(address, 0) + 1

        def passed(sent: bool) -> None:
            conn.close()  # the receiver has its own copy now, or never will
            if not sent:
                self.logger.panic(f"cannot pass a connection to receiver {child.pid}: it has gone")
                self._connection_closed(connection_id)

        child.outbox.send(meta, conn.fileno(), passed)

    def _over_limit(self, address: str) -> str | None:
        m = self.config.main
        total = len(self.connections)
        reserved = self._reserved_host(address)
        if m.smtp_accept_max and total >= m.smtp_accept_max:
            return "Too many concurrent SMTP connections; please try again later."
        if m.smtp_accept_max and m.smtp_accept_reserve and not reserved \
                and total >= m.smtp_accept_max - m.smtp_accept_reserve:
            return "Too many concurrent SMTP connections; please try again later."
        if m.smtp_accept_max_per_host and self.per_host.get(address, 0) >= m.smtp_accept_max_per_host:
            return "Too many concurrent SMTP connections from this IP address; please try again later."
        if m.smtp_load_reserve and not reserved:
            try:
                if os.getloadavg()[0] * 1000 >= m.smtp_load_reserve:
                    return "Too much load; please try again later."
            except OSError:
                pass
        return None

    def _reserved_host(self, address: str) -> bool:
        hosts = self.config.main.smtp_reserve_hosts
        if not hosts:
            return False
        from mta.config.lists import match_host
        from mta.config.variables import list_context

        try:
            return match_host(address, None, hosts, list_context(self.config)).matched
        except ValueError:
            return False

    # -- queue runs ------------------------------------------------------------------------------------
    def _queue_run(self) -> None:
        """Every -q interval: hand the queue to the workers (mta.queue.runner chooses what and in what order)."""
        assert self.loop is not None
        if self.queue_interval:
            self.loop.call_later(self.queue_interval, self._queue_run)
        self._start_queue_run(None)

    def _start_queue_run(self, selection: Any, release: str | None = None) -> None:
        """Fork a run; `release` is a misc serialisation record (ETRN's) to delete when it ends."""
        from mta.receive.smtp_etrn import serialize_end

        if self.stopping or len(self.queue_runs) >= self.config.main.queue_run_max:
            if not self.stopping:
                # Runs still going (a big queue, slow hosts): this one is skipped, as in Exim.
                self.logger.main(f"queue run skipped: {len(self.queue_runs)} still running (queue_run_max)")
            if release is not None:
                serialize_end(self.config, release, self.logger.panic)
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's body
            code = 1
            try:
                self._reset_signals()
                from mta.daemon.submission import take_offline_messages
                from mta.queue.runner import Selection, daemon_queue_run

                if selection is None:
                    take_offline_messages(self.runtime)
                    selection = Selection.from_flags(self.queue_flags)
                daemon_queue_run(self.runtime, self.dispatch_send, selection)
                code = 0
            except BaseException as exc:
                self.logger.panic(f"queue run failed: {exc!r}")
            finally:
                if release is not None:
                    serialize_end(self.config, release, self.logger.panic)
                os._exit(code)
        self.queue_runs.add(pid)

    # -- signals and the end -----------------------------------------------------------------------------
    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.notifier.stopping()
        self.logger.main(f"pid {os.getpid()}: SIGTERM received: daemon terminating")
        assert self.loop is not None
        for _entry, sock in self.listeners:
            self.loop.remove_reader(sock)
            sock.close()
        for child in self.children.values():
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.loop.create_task(self._wait_children())

    async def _wait_children(self) -> None:
        deadline = time.monotonic() + STOP_WAIT + 10
        while self.children and time.monotonic() < deadline:
            self._reap()
            await asyncio.sleep(0.05)
        for child in list(self.children.values()):
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert self.loop is not None
        self.loop.stop()

    def _reload(self) -> None:
        """SIGHUP: check the new configuration, then re-execute with the listeners kept open."""
        from mta.config.loader import load_config
        from mta.runtime import build_runtime

        self.notifier.reloading()  # READY=1 follows: below if the new configuration fails, else from the new image
        try:
            build_runtime(load_config(self.inv.config_file, self.inv.macros))
        except ConfigError as exc:
            self.logger.panic(f"SIGHUP: new configuration not loaded, the old one stays in force: {exc}")
            self.notifier.ready("new configuration not loaded; the old one stays in force")
            return
        self.logger.main(f"pid {os.getpid()}: SIGHUP received: re-exec daemon")
        self.reloading = True
        for child in self.children.values():
            try:
                os.kill(child.pid, signal.SIGTERM)  # they finish what they are doing, then end
            except ProcessLookupError:
                pass
        fds: dict[str, Any] = {"listeners": [], "pid_fd": self.pid_fd, "submission": None,
                               "dispatch": [self.dispatch_send.fileno(), self.dispatch_recv.fileno()]}
        for sock in (self.dispatch_send, self.dispatch_recv):
            os.set_inheritable(sock.fileno(), True)
        if self.inflow is not None:
            fds["inflow"] = list(self.inflow.fds())
            for fd in self.inflow.fds():
                os.set_inheritable(fd, True)
        for entry, sock in self.listeners:
            os.set_inheritable(sock.fileno(), True)
            fds["listeners"].append({"fd": sock.fileno(), "address": entry.address, "port": entry.port,
                                     "tls": entry.tls_on_connect})
        if self.submission is not None:
            os.set_inheritable(self.submission.fileno(), True)
            fds["submission"] = self.submission.fileno()
        assert self.pid_fd is not None
        os.set_inheritable(self.pid_fd, True)
        env = dict(os.environ, **{INHERIT_ENV: json.dumps(fds)}, **self.notifier.environment())
        argv = list(sys.orig_argv)
        if "-bdf" not in argv:
            argv.append("-bdf")  # already detached: the new image must not detach again
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)

    def run(self) -> int:
        loop = asyncio.new_event_loop()
        self.loop = loop
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGINT, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGUSR1, process_info.write_report)
        self._start_children()
        for entry, sock in self.listeners:
            loop.add_reader(sock, self._on_accept, entry, sock)
        interval = _interval_text(self.queue_interval) if self.queue_interval else ""
        queue_text = f"-q{self.queue_flags}{interval}" if self.queue_interval else "no queue runs"
        where = ", ".join(str(entry) for entry, _sock in self.listeners)
        listening = f"listening for SMTP on {where}" if self.listening else "not listening for SMTP"
        process_info.set_activity(f"daemon({__version__}): {queue_text}, {listening}")
        self.logger.main(f"mta {__version__} daemon started: pid={os.getpid()}, {queue_text}, {listening}")
        self.notifier.ready(f"{queue_text}, {listening}")  # the listeners are listening: connections queue
        loop.call_soon(self._queue_run)  # offline submissions and leftovers, at once (Exim does a run too)
        loop.call_later(1.0, self._balance_workers)
        try:
            loop.run_forever()
        finally:
            loop.close()
        self._remove_pid_file()
        return 0

    def _remove_pid_file(self) -> None:
        try:
            os.unlink(self._pid_path())
        except OSError:
            pass


def _interval_text(seconds: int | None) -> str:
    from mta.values import format_time

    return format_time(seconds or 0)


def _service_identity(runtime: Runtime) -> tuple[int, int, str] | None:
    """(uid, gid, login) of mta_user/mta_group, when running as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    from mta.config.caller import mta_identity

    login, uid, gid = mta_identity(runtime.config)
    if uid == 0:
        raise ConfigError("mta_user must not be root: the receiving processes would run as root")
    return uid, gid, login


def run_daemon(runtime: Runtime, inv: Invocation, listening: bool = True) -> int:
    """-bd / -bdf (and -q<time> alone, not listening): start the daemon; returns (in the foreground
    process) the exit status."""
    master = Master(runtime, inv, listening)
    if inv.foreground or os.environ.get(INHERIT_ENV):
        master.prepare()
        return master.run()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        report = b""
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            report += chunk
        os.close(read_fd)
        if report.startswith(b"ok"):
            return 0
        sys.stderr.write(report.decode(errors="replace") or "mta: the daemon failed to start\n")
        return 1
    os.close(read_fd)
    code = 1
    try:
        os.setsid()
        try:
            master.prepare()
        except ConfigError as exc:
            os.write(write_fd, f"mta: {exc}\n".encode())
            os._exit(1)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.write(write_fd, b"ok\n")
        os.close(write_fd)
        master._write_pid()  # this process, not the one that started us
        code = master.run()
    finally:
        os._exit(code)
