"""Who is asking: the token, the password file, and the sessions of the page.

Two ways in, both through the login form:

- **The token**: a random secret kept in ``<spool_directory>/monitor-token``
  (mode 0600, the spool's owner's, so only root and mta_user can read it),
  made on first use and printed by ``mta-monitor --print-token``.  Whoever
  has it could have read that file, so they act as the monitor's own user
  (mta_user, an administrator).
- **A password file** (``--password-file``): lines ``login:HASH``, the hash
  made by ``mta-monitor --hash-password`` (scrypt).  The login is a Unix
  user, and has here exactly the rights it has on the command line
  (mta.config.caller.is_administrator, spool_tools.message_actions.refusal);
  a login with no passwd entry may only look.

A login opens a session: a random id in a cookie (HttpOnly, SameSite=Strict,
Secure under TLS) and a CSRF token that the page sends back in the
``X-CSRF-Token`` header of every action (server.py checks it).

Security: secrets are compared in constant time (hmac.compare_digest); the
token file is opened without following links and refused when others can
read it; the password file is refused when others can read it, and its
errors name the file and line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import secrets
import stat
import time

from mta import record
from mta.config.caller import Caller, caller_for_uid, current_caller, is_administrator
from spool_tools.admin_command import ToolError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.config.loader import Config

TOKEN_FILE = "monitor-token"
SESSION_LIFETIME = 12 * 3600
SESSION_LIMIT = 1000  # past that the oldest session is closed: a login flood cannot fill memory
# scrypt's cost: about 50 ms and 16 MB per check on this class of machine.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_SCRYPT_N_MAX = 1 << 20  # a password file cannot make a check cost more than this
_MAXMEM = 256 * 1024 * 1024
_SALT_MIN, _DIGEST_MIN, _DIGEST_MAX = 8, 16, 64  # bytes


@record.dataclass(frozen=True, slots=True)
class User:
    """A logged-in user: the name the main log gives them, their Unix identity, and whether they
    are an administrator by the command line's rule."""

    name: str
    caller: Caller
    admin: bool


@record.dataclass(slots=True)
class Session:
    id: str
    user: User
    csrf: str
    expires: float
    address: str


# -- the token -----------------------------------------------------------------------------


def token_path(config: Config) -> str:
    return os.path.join(config.main.spool_directory, TOKEN_FILE)


def read_or_make_token(config: Config) -> str:
    """The token, made (and fsynced) the first time.  ToolError when it cannot be read, or when
    the file is readable by anyone but its owner (then it is no secret: remove it)."""
    path = token_path(config)
    try:
        return _read_token(path)
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _read_token(path)  # another process made it meanwhile
    except FileNotFoundError:
        raise ToolError(f"{config.main.spool_directory}: no such spool directory") from None
    except OSError as exc:
        raise ToolError(f"{path}: cannot create the token file: {exc.strerror}") from None
    try:
        from mta.privilege import adopt_directory_owner

        os.write(fd, (token + "\n").encode())
        adopt_directory_owner(fd, os.path.dirname(path))  # root made it: it is mta_user's
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def _read_token(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ToolError(f"{path}: cannot read the token file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise ToolError(
                f"{path}: the token file must be a file readable by its owner only (mode 0600); "
                "remove it and run mta-monitor --print-token for a new one"
            )
        owners = {0, os.geteuid(), _owner(os.path.dirname(path))}
        if st.st_uid not in owners:
            # Someone else's file, however it got there: its content is theirs to choose.
            raise ToolError(
                f"{path}: the token file is owned by uid {st.st_uid}, not by the spool's owner; "
                "remove it and run mta-monitor --print-token for a new one"
            )
        token = handle.read(4096).decode("ascii", "replace").strip()
    if len(token) < 32:
        raise ToolError(f"{path}: the token file holds no token; remove it and run mta-monitor --print-token")
    return token


def _owner(directory: str) -> int:
    try:
        return os.stat(directory).st_uid
    except OSError:
        return 0


# -- passwords -----------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_MAXMEM)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_hash(text: str) -> str | None:
    """What is wrong with a stored hash, or None."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return "not a hash made by mta-monitor --hash-password (scrypt$N$r$p$salt$hash)"
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return "a damaged scrypt hash"
    # Checked here, at start, what scrypt would refuse only at a login (a 500 instead of a clear
    # error): its memory (128 * r * (n + p) bytes, with room to spare) and an empty digest.
    if n < 2 or n > _SCRYPT_N_MAX or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        return "scrypt parameters out of range"
    if 128 * r * (n + p + 2) > _MAXMEM // 2:
        return f"scrypt parameters out of range (n * r needs more than {_MAXMEM // 2 >> 20} MB)"
    if len(salt) < _SALT_MIN or not _DIGEST_MIN <= len(digest) <= _DIGEST_MAX:
        return "a damaged scrypt hash (salt or hash too short)"
    return None


def password_matches(password: str, stored: str) -> bool:
    """Slow on purpose (scrypt): call it off the event loop."""
    _name, n, r, p, salt, digest = stored.split("$")
    expected = base64.b64decode(digest)
    got = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=_MAXMEM,
        dklen=len(expected),
    )
    return hmac.compare_digest(got, expected)


def read_password_file(path: str) -> dict[str, str]:
    """login -> stored hash.  ToolError naming the file (and line) for anything wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ToolError(f"{path}: cannot read the password file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_mode & 0o007:
            raise ToolError(f"{path}: the password file must not be readable by others (chmod o-rwx)")
        text = handle.read(1 << 20).decode("utf-8", "replace")
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        login, colon, stored = line.partition(":")
        problem = "no colon: lines are login:hash" if not colon else check_hash(stored)
        if not login or not login.isprintable() or " " in login:
            problem = "a bad login name"
        if not problem and login in users:
            problem = f"login {login} is given twice"
        if problem:
            raise ToolError(f"{path}:{number}: {problem}")
        users[login] = stored
    return users


# -- users and sessions ----------------------------------------------------------------------


class Authority:
    """Checks credentials and keeps the sessions they open."""

    def __init__(self, config: Config, token: str, passwords: dict[str, str]) -> None:
        self.config = config
        self.token = token
        self.passwords = passwords
        self.sessions: dict[str, Session] = {}
        # What an unknown login's password is checked against: one scrypt, as for a known one,
        # so that the time taken does not say whether a login exists.
        self._decoy = hash_password(secrets.token_urlsafe(16)) if passwords else ""

    def token_user(self, offered: str) -> User | None:
        if not hmac.compare_digest(offered.strip().encode(), self.token.encode()):
            return None
        caller = current_caller()  # the monitor's own user: who can read the token file
        return User(caller.login, caller, is_administrator(caller, self.config))

    def password_user(self, login: str, password: str) -> User | None:
        """Blocking (scrypt): run it in a thread."""
        stored = self.passwords.get(login)
        if stored is None:
            if self._decoy:
                password_matches(password, self._decoy)
            return None
        if not password_matches(password, stored):
            return None
        try:
            entry = pwd.getpwnam(login)
        except KeyError:
            return User(login, Caller(-1, -1, login, "", "/", frozenset()), False)
        caller = caller_for_uid(entry.pw_uid, entry.pw_gid)
        return User(login, caller, is_administrator(caller, self.config))

    def open_session(self, user: User, address: str, now: float | None = None) -> Session:
        now = time.time() if now is None else now
        self._expire(now)
        while len(self.sessions) >= SESSION_LIMIT:
            del self.sessions[next(iter(self.sessions))]  # the oldest: dicts keep their order
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now + SESSION_LIFETIME, address)
        self.sessions[session.id] = session
        return session

    def session(self, session_id: str | None, now: float | None = None) -> Session | None:
        if not session_id:
            return None
        session = self.sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= (time.time() if now is None else now):
            del self.sessions[session_id]
            return None
        return session

    def close_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[sid]
