"""mta-monitor (also `mta -bM`): serve the web monitor.  docs/monitor.md is the user's guide.

    mta-monitor [-C FILE] [--listen ADDRESS] [--port N] [--password-file FILE] [--tls] [--poll SECONDS]
    mta-monitor [-C FILE] --print-token
    mta-monitor --hash-password < password

Start-up, in this order, while still root when started as root: read the
token (making it the first time) and the password file, make the TLS
context (the daemon's tls_certificate, or its self-signed certificate),
fork the delivery helper (starter.py), bind the listening socket; then drop
to mta_user for good (mta.privilege.become_user) and serve.  Started by
another user (a per-user instance), it runs as that user throughout.

By default it listens on 127.0.0.1 only.  An address that is not loopback
always gets TLS (passwords and the session cookie would otherwise cross the
network in clear); ``--tls`` asks for it on loopback too.

Output: one line on standard output once it listens, ``mta-monitor:
listening on URL`` (with ``--port 0`` that is how to learn the port), and
the same in the main log.  Errors are one line and exit status 1
(spool_tools.admin_command.run_tool); SIGTERM or SIGINT stop it, status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import sys

from spool_tools.admin_command import ToolError, ToolParser, UsageError, load_configuration, run_tool

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl

    from mta.config.loader import Config
    from spool_tools.monitor.server import Monitor

PROG = "mta-monitor"
DEFAULT_PORT = 8470


def parser() -> ToolParser:
    p = ToolParser(
        PROG,
        "Serve mta's web monitor: the queue, the main log and charts of mail traffic, live, with "
        "the -M actions for administrators.  See docs/monitor.md.",
        wrap=True,
    )
    p.add_argument("-C", "--config", metavar="FILE", help="mta's configuration file (as mta -C)")
    p.add_argument(
        "--listen",
        metavar="ADDRESS",
        default="127.0.0.1",
        help="IP address to listen on (default 127.0.0.1; any other than loopback gets TLS)",
    )
    p.add_argument(
        "--port",
        metavar="N",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0: any free port, printed at start)",
    )
    p.add_argument("--password-file", metavar="FILE", help="logins and password hashes (login:hash lines)")
    p.add_argument("--tls", action="store_true", help="serve HTTPS on loopback too")
    p.add_argument(
        "--poll",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="how often the spool and the log are looked at (default 1)",
    )
    p.add_argument("--print-token", action="store_true", help="print the login token (made the first time)")
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password on standard input, print its hash for the password file",
    )
    return p


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.hash_password:
        return _hash_password()
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a TCP port")
    if not 0.05 <= args.poll <= 60:
        raise UsageError("--poll: give a number of seconds from 0.05 to 60")
    try:
        address = ipaddress.ip_address(args.listen)
    except ValueError:
        raise UsageError(f"--listen {args.listen}: give an IP address (such as 127.0.0.1 or ::1)") from None
    config = load_configuration(args.config)
    from spool_tools.monitor.auth import read_or_make_token

    if args.print_token:
        print(read_or_make_token(config))
        return 0
    return serve(config, args, address)


def _hash_password() -> int:
    from spool_tools.monitor.auth import hash_password

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("an empty password")
    print(hash_password(password))
    return 0


def serve(config: Config, args: argparse.Namespace, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    from mta.log import parse_selector
    from mta.runtime import Runtime
    from spool_tools.logfiles import log_location
    from spool_tools.monitor.auth import Authority, read_or_make_token, read_password_file
    from spool_tools.monitor.server import Monitor
    from spool_tools.monitor.starter import DirectStarter, HelperStarter
    from spool_tools.monitor.watch import Watcher

    config_path = os.path.abspath(config.path)
    tls = args.tls or not address.is_loopback
    token = read_or_make_token(config)
    passwords = read_password_file(args.password_file) if args.password_file else {}
    runtime = Runtime(config, [], [], {}, [], parse_selector(config.main.log_selector))
    context: ssl.SSLContext | None = None
    if tls:
        from mta.receive.tls import server_context

        context = server_context(runtime)
    identity = _service_identity(config)
    # The helper first: it must not inherit the listening socket.
    starter = HelperStarter.fork(config_path) if identity is not None else DirectStarter(config_path)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        sock = socket.create_server((str(address), args.port), family=family)
    except OSError as exc:
        starter.close()
        raise UsageError(f"cannot listen on {address} port {args.port}: {exc.strerror}") from None
    authority = Authority(config, token, passwords)
    watcher = Watcher(runtime.spool, log_location(config_path, None), args.poll)
    monitor = Monitor(config, runtime.spool, runtime.logger, authority, watcher, starter, tls)
    watcher.prime()
    if identity is not None:
        from mta.privilege import become_user

        prepare_for_drop()
        uid, gid, login = identity
        become_user(uid, gid, login)
    port = sock.getsockname()[1]
    host = f"[{address}]" if address.version == 6 else str(address)
    url = f"{'https' if tls else 'http'}://{host}:{port}/"
    # Held from here until the server's loop handles them (run_server): a SIGTERM sent as soon as
    # the line below is read would otherwise kill the monitor instead of stopping it with status 0.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    runtime.logger.main(f"mta-monitor started: pid={os.getpid()}, listening on {url}")
    print(f"{PROG}: listening on {url}", flush=True)
    try:
        asyncio.run(run_server(monitor, sock, context))
    finally:
        starter.close()
    if monitor.failure:
        raise ToolError(monitor.failure)
    runtime.logger.main(f"mta-monitor stopped: pid={os.getpid()}")
    return 0


# What the monitor imports inside functions, or its libraries import on first use.  A Python
# installed where mta_user cannot read (pyenv under /root) imports nothing after the drop, so
# these are imported before it (tests/monitor/test_monitor_cli.py checks the list against the
# package's code).
IMPORTS_BEFORE_DROP = (
    "_strptime",  # time.strptime's, on first use
    "encodings.idna",
    "calendar",
    "concurrent.futures.thread",
    "email.errors",
    "email.header",
    "functools",
    "json",
    "asyncio.subprocess",
    "aiohttp.web",
    "mta.log",
    "mta.values",
    "mta.spool.envelope",
    "mta.spool.store",
    "spool_tools.admin_command",
    "spool_tools.logfiles",
    "spool_tools.message_actions",
    "spool_tools.message_views",
    "spool_tools.monitor.server",
    "spool_tools.queue_json",
)


def prepare_for_drop() -> None:
    """Import what will be needed once privileges are dropped, and read the page's files."""
    import importlib

    for name in IMPORTS_BEFORE_DROP:
        importlib.import_module(name)
    from spool_tools.monitor.server import STATIC, static_text

    for name in ("index.html", "login.html", *STATIC):
        static_text(name)


def _service_identity(config: Config) -> tuple[int, int, str] | None:
    """(uid, gid, login) of mta_user to drop to, when running as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    from mta.config.caller import mta_identity

    login, uid, gid = mta_identity(config)
    if uid == 0:
        raise ToolError("mta_user must not be root: the monitor would serve the web as root")
    return uid, gid, login


async def run_server(
    monitor: Monitor, sock: socket.socket, context: ssl.SSLContext | None, stop: asyncio.Event | None = None
) -> None:
    """Serve on `sock` until SIGTERM or SIGINT (or until `stop` is set, for tests)."""
    from aiohttp import web

    from spool_tools.monitor.server import KEEPALIVE_TIMEOUT, ConnectionGuard, make_app

    runner = web.AppRunner(
        make_app(monitor),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    await runner.setup()
    assert runner.server is not None
    monitor.guard = ConnectionGuard(runner.server)
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(monitor.guard, sock=sock, ssl=context)
    stop = stop or asyncio.Event()
    monitor.stop = stop
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # one held since start-up arrives now
    try:
        await stop.wait()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        listening.close()
        await runner.cleanup()


def console_main() -> int:
    return run_tool(PROG, lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    raise SystemExit(console_main())
