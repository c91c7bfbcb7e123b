"""The servers scripts/bench/run measures: mta's daemon and the references (Exim, aiosmtpd, Postfix, any address).

Each server is started for one load with a configuration and spool of its own under a scratch
directory, on a free port of 127.0.0.1, and stopped (with every process it started) by `stop()`.
A server's mode says what it does with a message:

  spool   keep it on the spool, fsynced before the 250 (mta and Exim: queue_only)
  relay   deliver it to the SMTP sink on `sink_port`
  local   deliver it into a maildir under `maildirs` (one per local part)

Not a command: imported by scripts/bench/run, profile, receive-profile and worker-profile.
"""

from __future__ import annotations

import collections
import importlib.machinery
import importlib.util
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent
EXIM = "/usr/sbin/exim4"
MODES = ("spool", "relay", "local")
# The local parts of the local load: the Python generator's (see run.local_recipient) and smtp-source's.
LOCAL_PARTS = [f"user{n}" for n in range(20)] + ["sink"]


class BenchError(Exception):
    """A load that could not be measured against a server: the table says why, and the run goes on."""


def load_script(name: str) -> ModuleType:
    """One of the bench scripts (no .py) as a module."""
    loader = importlib.machinery.SourceFileLoader(f"mta_bench_{name.replace('-', '_')}", str(BENCH_DIR / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


bench = load_script("daemon")


# -- processes ------------------------------------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = bench.read_stat(int(name))
            if fields:
                children[int(fields[1])].append(int(name))
    found = [root]
    for pid in found:  # grows while it is walked
        found.extend(children.get(pid, []))
    return found


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of the processes and of their children that have exited and been waited for."""
    total = 0
    for pid in pids:
        fields = bench.read_stat(pid)
        if fields:
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / bench.CLK_TCK


def maildir_messages(maildirs: Path) -> int:
    total = 0
    for box in maildirs.iterdir():
        try:
            total += len(os.listdir(box / "Maildir" / "new"))
        except FileNotFoundError:
            pass
    return total


def make_maildirs(maildirs: Path, owner: str) -> None:
    """The maildirs' parent and one directory per local part, owned by the delivering user."""
    entry = pwd.getpwnam(owner)
    maildirs.mkdir()
    os.chown(maildirs, entry.pw_uid, entry.pw_gid)
    for local_part in LOCAL_PARTS:
        (maildirs / local_part).mkdir()
        os.chown(maildirs / local_part, entry.pw_uid, entry.pw_gid)


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], output: Path, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited at start (status {proc.returncode}): {tail(output)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"no banner from {what} within {timeout:.0f} s: {tail(output)}")
        time.sleep(0.05)


def tail(path: Path) -> str:
    return " / ".join(path.read_text(errors="replace")[-1000:].splitlines()) if path.exists() else ""


def stop_group(proc: subprocess.Popen[bytes], tree: list[int]) -> None:
    """SIGTERM to the server, then anything left of its process group and tree is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), *(lambda p=p: os.kill(p, signal.SIGKILL) for p in tree)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


# -- the servers ------------------------------------------------------------------------------------------------
class Server:
    """A server under test: where it listens, its processes, and how many messages it has spooled or delivered."""

    name = "?"
    host = "127.0.0.1"
    port = 0

    def pids(self) -> list[int]:
        """Every process of the server now (empty: not measured)."""
        return []

    def done(self) -> int | None:
        """Messages on the spool (spool) or in the maildirs (local) now; None when it cannot be seen."""
        return None

    def stop(self) -> None:
        pass


# scripts/bench/run --flat-spool: mta and Exim with one input/ (split_spool_directory off), for the
# comparison in docs/performance.md ("Split spool directories"); --no-spare-files: mta unlinking
# finished messages' files and creating new ones ("Spare spool files").
flat_spool = False
no_spare_files = False
SPLIT_LINE = "split_spool_directory = true\n"
SPARE_LINE = "spool_spare_files = 1000\n"


def without_line(config: str, line: str) -> str:
    """The configuration text with `line` (an option turned on) removed: the option's default."""
    if line not in config:
        raise ValueError(f"the bench configuration has no line {line.strip()!r}")
    return config.replace(line, "", 1)


class MtaServer(Server):
    """This checkout's `mta -bdf`, started and stopped by the daemon bench's Daemon."""

    name = "mta"

    def __init__(self, mode: str, tmp: Path, sink_port: int, maildirs: Path) -> None:
        os.chmod(tmp, 0o755)  # the receivers run as mta_user and must reach the spool inside
        cpus = os.cpu_count() or 1
        self.mode = mode
        self.maildirs = maildirs
        self.daemon = bench.Daemon(
            tmp,
            queue_only=mode == "spool",
            sink_port=sink_port,
            receivers=cpus,
            workers=cpus,
            set_receivers=False,
            set_workers=False,
        )
        if mode == "local":
            make_maildirs(maildirs, "mail")
            text = self.daemon.config.read_text()
            text = text.replace("domainlist local_domains =", "domainlist local_domains = example.org")
            text = text.replace("begin routers", MTA_DIRECTORS.format(maildirs=maildirs) + "begin routers")
            self.daemon.config.write_text(text + MTA_MAILDIR_TRANSPORT.format(maildirs=maildirs))
        text = self.daemon.config.read_text()
        if flat_spool:
            text = without_line(text, SPLIT_LINE)
        if no_spare_files:
            text = without_line(text, SPARE_LINE)
        self.daemon.config.write_text(text)
        self.port = self.daemon.port
        self.daemon.start()

    def pids(self) -> list[int]:
        return descendants(self.daemon.proc.pid) if self.daemon.proc else []

    def done(self) -> int | None:
        if self.mode == "spool":
            return self.daemon.spooled()
        return maildir_messages(self.maildirs) if self.mode == "local" else None

    def stop(self) -> None:
        self.daemon.stop()


MTA_DIRECTORS = """\
begin directors

maildirs:
  driver = smartuser
  transport = maildir_delivery

"""

MTA_MAILDIR_TRANSPORT = """
maildir_delivery:
  driver = appendfile
  directory = {maildirs}/$local_part/Maildir
  maildir_format
  user = mail
"""

EXIM_CONFIG = """\
primary_hostname = bench.example.com
qualify_domain = example.com
domainlist local_domains = {local_domains}
spool_directory = {tmp}/exim-spool
split_spool_directory = true
log_file_path = {tmp}/exim-log/%slog
exim_path = {exim}
local_interfaces = <; 127.0.0.1
smtp_accept_max = 0
smtp_accept_queue_per_connection = 0
smtp_connect_backlog = 1024
message_size_limit = 200M
host_lookup =
keep_environment =
tls_advertise_hosts =
acl_smtp_rcpt = acl_check_rcpt
{extra}

begin acl

acl_check_rcpt:
  accept  hosts = 127.0.0.1
  deny    message = relay not permitted

begin routers

maildirs:
  driver = accept
  domains = +local_domains
  local_parts = dsearch;{maildirs}
  transport = maildir_delivery

sink:
  driver = manualroute
  route_list = * 127.0.0.1 byname
  transport = remote_smtp
  self = send

begin transports

maildir_delivery:
  driver = appendfile
  directory = {maildirs}/$local_part_data/Maildir
  maildir_format
  create_directory
  user = {exim_user}

remote_smtp:
  driver = smtp
  port = {sink_port}
  allow_localhost
  hosts_avoid_tls = *

begin retry

*  *  F,1h,1m
"""


def exim_user() -> str:
    """The user Exim runs as (Debian's build: Debian-exim)."""
    for name in ("Debian-exim", "exim"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    sys.exit("exim: neither Debian-exim nor exim is a user here")


class EximServer(Server):
    """Exim 4 as `exim4 -C FILE -bdf -oX PORT`, as root, with a configuration and spool of its own.

    Run as root with -C, Exim keeps root in the daemon, but its reception processes re-execute Exim
    for each delivery and, with a -C file not in Exim's TRUSTED_CONFIG_LIST, that Exim runs as the
    Exim user ("exim user lost privilege for using -C option"): the maildirs therefore belong to,
    and are written as, the Exim user (mta's are written as `mail`)."""

    name = "exim"

    def __init__(self, mode: str, tmp: Path, sink_port: int, maildirs: Path) -> None:
        if not os.path.exists(EXIM):
            sys.exit(f"--against exim: {EXIM} is not installed")
        if os.geteuid() != 0:
            sys.exit("--against exim: Exim honours -C with a configuration of ours only for root")
        self.mode = mode
        self.tmp = tmp
        self.maildirs = maildirs
        user = exim_user()
        entry = pwd.getpwnam(user)
        os.chmod(tmp, 0o755)
        for sub in ("exim-spool", "exim-log"):
            (tmp / sub).mkdir()
            os.chown(tmp / sub, entry.pw_uid, entry.pw_gid)
        make_maildirs(maildirs, user)
        self.config = tmp / "exim.conf"
        text = EXIM_CONFIG.format(
            tmp=tmp,
            exim=EXIM,
            maildirs=maildirs,
            exim_user=user,
            sink_port=sink_port,
            extra="queue_only" if mode == "spool" else "",
            # Only the local load delivers to the maildirs: smtp-source's relay recipient,
            # sink@example.org, has a maildir (the local load's), which a local domain would
            # route to (Exim then fails those deliveries, "lost privilege", instead of relaying).
            local_domains="example.org" if mode == "local" else "",
        )
        self.config.write_text(without_line(text, SPLIT_LINE) if flat_spool else text)
        self.port = bench.free_port()
        self.output = tmp / "exim.out"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [EXIM, "-C", str(self.config), "-bdf", "-oX", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_banner(self.port, self.proc, self.output, "exim")

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)

    def done(self) -> int | None:
        if self.mode == "spool":
            return sum(1 for _ in (self.tmp / "exim-spool" / "input").rglob("*-H"))
        return maildir_messages(self.maildirs) if self.mode == "local" else None

    def stop(self) -> None:
        stop_group(self.proc, self.pids())


EXIM_WRAPPER_CONFIG = """\
mua_wrapper = true
primary_hostname = laptop.example.com
qualify_domain = example.com
spool_directory = {tmp}/exim-spool
log_file_path = {tmp}/exim-log/%slog
keep_environment =

begin routers

smarthost:
  driver = manualroute
  route_list = * 127.0.0.1 byname
  transport = smarthost_smtp
  self = send

begin transports

smarthost_smtp:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_avoid_tls = *
"""


def exim_wrapper_argv(tmp: Path, port: int) -> list[str]:
    """Exim's `sendmail -t` in mua_wrapper mode to the smart host on `port` (as root: -C is honoured)."""
    entry = pwd.getpwnam(exim_user())
    os.chmod(tmp, 0o755)  # Exim writes as its user: spool and log directories of its own in `tmp`
    for sub in ("exim-spool", "exim-log"):
        (tmp / sub).mkdir(exist_ok=True)
        os.chown(tmp / sub, entry.pw_uid, entry.pw_gid)
    config = tmp / "exim-wrapper.conf"
    config.write_text(EXIM_WRAPPER_CONFIG.format(tmp=tmp, port=port))
    return [EXIM, "-C", str(config), "-t"]


AIOSMTPD_SERVER = r"""
import os, sys
from aiosmtpd.controller import Controller
directory = sys.argv[2]
count = 0
class Handler:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        fd = os.open(f"{directory}/{count}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, envelope.original_content)
            os.fsync(fd)
        finally:
            os.close(fd)
        return "250 2.0.0 Ok: queued"
controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


class AiosmtpdServer(Server):
    """A bare aiosmtpd server (Controller, one handler) that writes each message to a file and fsyncs
    the file before its 250; the directory is not fsynced.  Spool loads only."""

    name = "aiosmtpd"

    def __init__(self, mode: str, tmp: Path, sink_port: int, maildirs: Path) -> None:
        assert mode == "spool"
        self.directory = tmp / "aiosmtpd-spool"
        self.directory.mkdir()
        self.port = bench.free_port()
        self.proc = subprocess.Popen(
            [bench.PYTHON, "-c", AIOSMTPD_SERVER, str(self.port), str(self.directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise BenchError("the aiosmtpd server did not start")

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)

    def done(self) -> int | None:
        return len(os.listdir(self.directory))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        stop_group(self.proc, [])


class ExternalServer(Server):
    """Any SMTP server at HOST:PORT, already running: the load only (no memory, nothing counted)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.name = address
        self.host = host.strip("[]")
        self.port = int(port)


POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {tmp}/postfix-queue
data_directory = {tmp}/postfix-data
meta_directory = {tmp}/postfix-etc
daemon_directory = {root}/usr/lib/postfix/sbin
command_directory = {root}/usr/sbin
shlib_directory = {root}/usr/lib/postfix
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={root}/usr/lib/postfix
maillog_file = {tmp}/postfix.log
maillog_file_prefixes = {tmp}
mail_owner = {owner}
setgid_group = {setgid_group}
default_privs = daemon
myhostname = bench.example.com
mydomain = example.com
myorigin = example.com
mydestination =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
default_process_limit = 1100
smtp_dns_support_level = disabled
message_size_limit = 209715200
virtual_mailbox_limit = 0
relayhost = [127.0.0.1]:{sink_port}
"""
POSTFIX_LOCAL = """\
virtual_mailbox_domains = example.org
virtual_mailbox_base = {maildirs}
virtual_mailbox_maps = inline:{{ {boxes} }}
virtual_minimum_uid = 1
virtual_uid_maps = static:{mail_uid}
virtual_gid_maps = static:{mail_gid}
"""

# The spool loads put every message on hold (the hold queue: written and fsynced by cleanup, never
# scheduled), as queue_only leaves them on mta's and Exim's spools.  Without qmgr instead, cleanup
# waits a second after each message for want of qmgr's trigger.
POSTFIX_HOLD = "smtpd_data_restrictions = check_client_access static:HOLD\n"
# master.cf.dist's services, none chrooted, no pickup (nothing is submitted locally).
POSTFIX_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
qmgr      unix  n - n 300 1 qmgr
postlog   unix-dgram n - n - 1 postlogd
"""
POSTFIX_QUEUES = (
    "active",
    "bounce",
    "corrupt",
    "defer",
    "deferred",
    "flush",
    "hold",
    "incoming",
    "private",
    "saved",
    "trace",
)


def unusable(name: str) -> str | None:
    """Why the reference `name` cannot be run here, or None."""
    if name in ("exim", "postfix") and os.geteuid() != 0:
        return f"--against {name}: it must be started as root (run the bench as root)"
    if name == "exim" and not os.path.exists(EXIM):
        return f"--against exim: {EXIM} is not installed"
    if name == "postfix" and postfix_root() is None:
        return (
            "--against postfix: no unpacked postfix package in ~/.cache/mta-bench/postfix "
            "(scripts/bench/daemon unpacks it with apt-get download and dpkg -x on its first run)"
        )
    return None


def postfix_root() -> Path | None:
    """Debian's postfix package unpacked by the daemon bench (find_postfix) under ~/.cache/mta-bench/postfix."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mta-bench" / "postfix"
    return root if (root / "usr" / "lib" / "postfix" / "sbin" / "master").exists() else None


class PostfixServer(Server):
    """Postfix's master (`master -c DIR -d`, in the foreground) from Debian's package unpacked under
    ~/.cache/mta-bench/postfix, never installed: a configuration directory, queue and port of its own.

    There is no `postfix` user here and none is made: mail_owner is `nobody` (default_privs, which
    must differ, is `daemon`; setgid_group `mail`).  Relay: relayhost = the sink.  Local: the
    `virtual` delivery agent into the maildirs, as `mail`."""

    name = "postfix"

    def __init__(self, mode: str, tmp: Path, sink_port: int, maildirs: Path) -> None:
        root = postfix_root()
        if root is None:
            sys.exit(
                "--against postfix: no unpacked postfix package in ~/.cache/mta-bench/postfix "
                "(scripts/bench/daemon unpacks it on its first run)"
            )
        if os.geteuid() != 0:
            sys.exit("--against postfix: Postfix's master must start as root")
        self.mode = mode
        self.tmp = tmp
        self.maildirs = maildirs
        os.chmod(tmp, 0o755)
        owner, mail = pwd.getpwnam("nobody"), pwd.getpwnam("mail")
        queue = tmp / "postfix-queue"
        queue.mkdir()
        for name in POSTFIX_QUEUES:
            (queue / name).mkdir(mode=0o700)
            os.chown(queue / name, owner.pw_uid, -1)
        for name, mode_bits in (("maildrop", 0o730), ("public", 0o710)):
            (queue / name).mkdir()
            os.chmod(queue / name, mode_bits)
            os.chown(queue / name, owner.pw_uid, mail.pw_gid)
        (queue / "pid").mkdir()
        (tmp / "postfix-data").mkdir()
        os.chown(tmp / "postfix-data", owner.pw_uid, -1)
        etc = tmp / "postfix-etc"
        etc.mkdir()
        (etc / "dynamicmaps.cf").touch()
        make_maildirs(maildirs, "mail")
        boxes = ", ".join(f"{lp}@example.org={lp}/Maildir/" for lp in LOCAL_PARTS)
        main = POSTFIX_MAIN + {"local": POSTFIX_LOCAL, "spool": POSTFIX_HOLD}.get(mode, "")
        (etc / "main.cf").write_text(
            main.format(
                tmp=tmp,
                root=root,
                owner="nobody",
                setgid_group="mail",
                sink_port=sink_port,
                maildirs=maildirs,
                boxes=boxes,
                mail_uid=mail.pw_uid,
                mail_gid=mail.pw_gid,
            )
        )
        self.port = bench.free_port()
        (etc / "master.cf").write_text(POSTFIX_MASTER.format(port=self.port))
        env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr" / "lib" / "postfix"))
        self.output = tmp / "postfix.log"
        self.proc = subprocess.Popen(
            [str(root / "usr" / "lib" / "postfix" / "sbin" / "master"), "-c", str(etc), "-d"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_banner(self.port, self.proc, self.output, "postfix")

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)

    def done(self) -> int | None:
        if self.mode == "spool":
            return sum(1 for p in (self.tmp / "postfix-queue" / "hold").rglob("*") if p.is_file())
        return maildir_messages(self.maildirs) if self.mode == "local" else None

    def stop(self) -> None:
        stop_group(self.proc, self.pids())
