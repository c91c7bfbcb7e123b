"""End-to-end fixtures: real local users, their home directories and mailboxes, and a delivery config.

The tests in this directory run the real `mta` command as root and deliver
to real accounts made with useradd, so that the privilege drop, file
ownership and `.forward` handling are the ones a real system sees.  They
skip (with the reason) when not run as root or when useradd is missing.

Layout of one test's world (`e2e`), all under a 0755 directory in /tmp
(pytest's tmp_path is 0700, which a delivery running as the user could
not enter):

    /tmp/mta-e2e-XXXX/          0755, removed afterwards
        home/<user>/            each user's home, owned by the user
        mail/                   1777, like /var/mail: one mbox per user
        aliases                 the aliasfile director's lsearch file
        bin/                    scripts used as pipe commands

The spool stays in the test's tmp_path (`mta_env`): only the root parent
of a delivery opens it.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mta import MtaEnv
from tests.support.users import absent_user

DOMAIN = "example.com"

# The directors and transports of every e2e test; {placeholders} are filled by E2E.write_config.
# Pipes and files from the alias file run as the `pipe` user (Exim's "user = mail" in the
# default configuration); those from a .forward run as its owner.
DELIVERY_CONFIG = """\
never_users = root
{main}
begin directors

system_aliases:
  driver = aliasfile
  file = {aliases}
  search_type = lsearch
  allow_fail
  allow_defer
  user = {pipe_user}
  pipe_transport = address_pipe
  file_transport = address_file
  directory_transport = address_directory
{directors}
userforward:
  driver = forwardfile
  file = .forward
  no_verify
  pipe_transport = address_pipe
  file_transport = address_file
  directory_transport = address_directory

localuser:
  driver = localuser
  transport = local_mbox
  cannot_route_message = Unknown user

begin transports

local_mbox:
  driver = appendfile
  file = {mail}/$local_part_data
  delivery_date_add
  envelope_to_add
  return_path_add
  mode = 0600

address_pipe:
  driver = pipe
  return_fail_output
  timeout = {pipe_timeout}
{pipe_options}
address_file:
  driver = appendfile
  file = $address_file
  delivery_date_add
  envelope_to_add
  return_path_add

address_directory:
  driver = appendfile
  directory = $address_file
  maildir_format
  delivery_date_add
  envelope_to_add
  return_path_add
{transports}"""


@dataclasses.dataclass(frozen=True)
class LocalUser:
    """A real account made for one test."""

    role: str  # what the test calls it ("alice")
    name: str  # the login name (random, so parallel runs never collide)
    uid: int
    gid: int
    home: Path

    @property
    def address(self) -> str:
        return f"{self.name}@{DOMAIN}"


def _run_admin(argv: list[str]) -> None:
    """useradd/userdel, retried while another process holds the passwd lock."""
    for attempt in range(50):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0:
            return
        # Exit 10 (useradd) / 10 (userdel): cannot lock the passwd or group file.
        if proc.returncode != 10 or attempt == 49:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        time.sleep(0.1)


@dataclasses.dataclass
class E2E:
    """One test's world: users, mail directory, alias file, scripts, and the mta environment."""

    root: Path
    env: MtaEnv
    token: str
    users: dict[str, LocalUser] = dataclasses.field(default_factory=dict)
    absent: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def aliases(self) -> Path:
        return self.root / "aliases"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    # -- users ---------------------------------------------------------------------------------
    def user(self, role: str, *, home: bool = True) -> LocalUser:
        """The account for `role`, made on first use; with home=False its home does not exist."""
        if role in self.users:
            return self.users[role]
        name = f"m{self.token}{role}"
        home_dir = self.root / "home" / role
        argv = ["useradd", "-M", "-d", str(home_dir), "-s", "/bin/sh", name]
        _run_admin(argv)
        entry = pwd.getpwnam(name)
        user = LocalUser(role, name, entry.pw_uid, entry.pw_gid, home_dir)
        self.users[role] = user
        if home:
            home_dir.mkdir(parents=True)
            os.chown(home_dir, user.uid, user.gid)
            home_dir.chmod(0o755)
        return user

    def nobody_called(self, role: str) -> str:
        """A local part that is no account here (random, checked absent), the same for `role`
        throughout the test: what an "unknown user" test sends to."""
        if role not in self.absent:
            self.absent[role] = absent_user(role)
        return self.absent[role]

    def _remove_users(self) -> None:
        errors = []
        for user in self.users.values():
            try:
                _run_admin(["userdel", user.name])
            except RuntimeError as exc:
                errors.append(str(exc))
        self.users.clear()
        if errors:
            raise RuntimeError("; ".join(errors))

    def reachable_spool(self) -> Path:
        """A spool that users' deliveries can reach, with the drop directory the daemon would make
        (for replies that a delivery running as a user submits); returns the spool directory."""
        self.env = MtaEnv(self.root / "mta")
        spool = self.env.spool
        spool.mkdir(parents=True)
        self.env.root.chmod(0o755)
        spool.chmod(0o751)
        (spool / "offline").mkdir()
        (spool / "offline").chmod(0o3733)
        return spool

    def write_forward(self, user: LocalUser, text: str, mode: int = 0o644) -> Path:
        """The user's ~/.forward, owned by the user."""
        path = user.home / ".forward"
        path.write_text(text)
        os.chown(path, user.uid, user.gid)
        path.chmod(mode)
        return path

    # -- configuration -----------------------------------------------------------------------------
    def write_aliases(self, text: str) -> Path:
        self.aliases.write_text(text)
        self.aliases.chmod(0o644)
        return self.aliases

    def write_config(
        self,
        *,
        main: str = "",
        directors: str = "",
        transports: str = "",
        pipe_options: str = "",
        pipe_timeout: str = "30s",
    ) -> Path:
        """The delivery configuration (DELIVERY_CONFIG) with extra main options, directors
        (inserted after system_aliases), transports, and pipe transport options."""
        pipe_user = self.user("pipe", home=False)
        if not self.aliases.exists():
            self.write_aliases("")
        text = DELIVERY_CONFIG.format(
            main=main,
            aliases=self.aliases,
            pipe_user=pipe_user.name,
            directors=directors,
            mail=self.mail,
            pipe_timeout=pipe_timeout,
            pipe_options=pipe_options,
            transports=transports,
        )
        return self.env.write_config(text)

    def script(self, name: str, text: str) -> Path:
        """An executable script in bin/ (a pipe command)."""
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)
        return path

    # -- running -------------------------------------------------------------------------------------
    def submit(self, message: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`mta args...` with `message` on stdin (e.g. "-odi", "-t"); asserts exit 0 unless check=False."""
        proc = self.env.run(*args, input=message)
        if check:
            assert proc.returncode == 0, f"mta {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        return proc

    def new_ids(self, before: list[str]) -> list[str]:
        """Message ids that arrived since `before` (from the <= lines of the main log)."""
        ids = []
        for line in self.env.log_lines():
            parts = line.split()
            if len(parts) > 3 and parts[3] == "<=" and parts[2] not in before and parts[2] not in ids:
                ids.append(parts[2])
        return ids

    def received_ids(self) -> list[str]:
        return self.new_ids([])

    def mbox(self, user: LocalUser) -> str:
        path = self.mail / user.name
        return path.read_text() if path.exists() else ""

    def mbox_path(self, user: LocalUser) -> Path:
        return self.mail / user.name

    def queue(self) -> str:
        proc = self.env.run("-bp")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def log_for(self, message_id: str) -> list[str]:
        """Main log lines of one message, without the timestamp."""
        result = []
        for line in self.env.log_lines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[2] == message_id:
                result.append(parts[3])
        return result


def message_text(sender: str, to: str, subject: str, body: str, extra_headers: str = "") -> str:
    return f"From: {sender}\nTo: {to}\nSubject: {subject}\n{extra_headers}\n{body}"


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[E2E]:
    if os.geteuid() != 0:
        pytest.skip("end-to-end delivery tests need root (real users, setuid to them)")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel not available")
    root = Path(tempfile.mkdtemp(prefix="mta-e2e-", dir="/tmp"))
    root.chmod(0o755)
    (root / "home").mkdir(mode=0o755)
    mail = root / "mail"
    mail.mkdir()
    mail.chmod(0o1777)  # like /var/mail: every user may create their own mailbox and lock file
    (root / "bin").mkdir(mode=0o755)
    world = E2E(root, MtaEnv(tmp_path / "mta"), secrets.token_hex(3))
    world.env.root.mkdir()
    try:
        yield world
    finally:
        try:
            world._remove_users()
        finally:
            shutil.rmtree(root)


def kill_session(session_id: int) -> None:
    """SIGKILL every process of a session (the mta process and all it started: local delivery
    children and pipe commands lead process groups of their own, but stay in its session)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended meanwhile
        # After the command name: state, ppid, pgrp, session, ...
        if int(fields[3]) == session_id:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                continue
