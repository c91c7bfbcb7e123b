"""Becoming another user: for good in a forked child, to do one job with that user's rights.

Security: whatever a user's own data names (their .forward, a file it
:include:s, a path relative to their home) is opened with that user's
identity, never root's, so the kernel's permission checks (directories the
user cannot enter included) apply exactly as they would to the user.  A
seteuid() around the open would not do: it changes every thread of the
process, and root could be regained by code running meanwhile.  So the job
runs in a child that drops to the user for good (`become_user`) and reports
back as JSON, never as pickled objects: the parent must not execute anything
a process running as the user could have shaped.

Diagnostics: a child that cannot drop privileges, dies, or runs out of time
is reported by `AsUserError` with the reason; the caller turns it into a
deferral.
"""

from __future__ import annotations

import os
import time

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_MAX_REPORT = 4 * 1024 * 1024  # a list file is at most 1 MB; its JSON form with escapes fits


class AsUserError(Exception):
    """The job could not be run as the user (fork, privilege drop, timeout, no report)."""


class RootRegainedError(RuntimeError):
    """setuid() to an ordinary user left a way back to root: the process must not go on."""


# Modules that code run after a privilege drop (expansions, lookups, local transports, reading a
# user's files) imports inside functions, to keep start-up short.  A Python installed where the
# user cannot read (pyenv under /root) can import nothing once privileges are dropped, so these
# are imported before.  tests/test_privilege.py checks the list against those modules' code.
IMPORTS_BEFORE_DROP = (
    "base64",
    "codecs",
    "hashlib",
    "hmac",
    "ipaddress",
    "json",
    "lmdb",
    "os",
    "secrets",
    "signal",
    "socket",
    "stat",
    "subprocess",
    "re",  # regular expression items in lists (mta.config.lists)
    "mta.expand",
    "mta.expand.addresses",
    "mta.expand.crypteq",
    "mta.expand.escapes",
    "mta.expand.expander",
    "mta.expand.extract",
    "mta.expand.idna",
    "mta.expand.ipaddr",
    "mta.expand.items",
    "mta.expand.lookups",
    "mta.expand.lookups.lmdb",
    "mta.expand.operators",
    "mta.expand.textcodecs",
    "mta.expand.variables",
    "mta.errors",
    "mta.printable",
    "mta.message.rewrite_match",  # a transport's headers_rewrite
    "mta.config.list_lookups",  # lookup items in lists (mta.config.lists)
)


def import_before_drop() -> None:
    """Import IMPORTS_BEFORE_DROP (nothing to do once they are loaded).  Called before forking a
    child that will drop privileges, so that each child inherits them, and by `become_user`."""
    for name in IMPORTS_BEFORE_DROP:
        __import__(name)


def keep_python_reachable() -> bool:
    """Let this process go on importing after it drops privileges, from a Python installed
    where the new user may not look (pyenv or a virtualenv under /root, mode 0700).

    Each sys.path directory that others cannot reach (an ancestor without o+x) is opened
    now, as root, and named from then on by its /proc/self/fd/N alias: the kernel follows
    that link to the directory itself, without a search of the ancestors, so later imports
    work as the new user (only the directories and files themselves must be readable, as
    they are in a normal installation).  Packages already imported get the same aliases in
    their __path__.  Cheaper than importing beforehand everything the rest of the run might
    want (ssl alone costs 6 ms), which mua_wrapper did.  Nothing is done for directories
    anyone may reach.  False when an alias cannot be made (no /proc): import beforehand.
    """
    import sys

    aliases: dict[str, str] = {}
    searchable: dict[str, bool] = {}  # directory -> whether others may search it (shared ancestors)
    for entry in sys.path:
        if not entry or entry in aliases or _reachable_by_all(entry, searchable):
            continue
        try:
            fd = os.open(entry, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue  # not a directory (python311.zip is often absent): nothing to import from
        alias = f"/proc/self/fd/{fd}"
        if not os.path.isdir(alias):
            os.close(fd)
            return False
        aliases[entry] = alias
    if not aliases:
        return True

    def aliased(path: str) -> str:
        for entry, alias in aliases.items():
            if path == entry or path.startswith(entry + "/"):
                return alias + path[len(entry) :]
        return path

    sys.path[:] = [aliased(entry) for entry in sys.path]
    for module in list(sys.modules.values()):
        # The module's dict, not getattr: most modules have no __path__, and a failed getattr
        # costs an exception each (a hundred modules on every sendmail that root starts).
        package_path = getattr(module, "__dict__", {}).get("__path__")
        if isinstance(package_path, list):
            package_path[:] = [aliased(p) for p in package_path]
    return True


def _reachable_by_all(path: str, searchable: dict[str, bool]) -> bool:
    """Whether every directory above `path` lets others search it (o+x).  `searchable` remembers
    the directories already looked at: sys.path's entries share most of their ancestors, and this
    runs on every sendmail that root starts."""
    if not path.startswith("/"):
        path = os.path.abspath(path)
    while True:
        parent = path.rpartition("/")[0] or "/"
        if parent == path:
            return True
        known = searchable.get(parent)
        if known is None:
            try:
                known = bool(os.stat(parent).st_mode & 0o001)
            except OSError:
                known = True  # gone: nothing there to import either way
            searchable[parent] = known
        if not known:
            return False
        path = parent


def become_user(uid: int, gid: int, username: str | None = None) -> None:
    """Drop to uid/gid for good: supplementary groups (the user's with `username`, else just
    gid), then the gid, then the uid; the order matters, as after setuid() groups can no longer
    be changed.  Raises OSError if a step fails and RootRegainedError if root could be had back."""
    import_before_drop()
    if username is not None:
        os.initgroups(username, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if uid != 0:
        # Postfix's paranoia: prove that root cannot be had back.
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise RootRegainedError(f"could regain root after setuid({uid})")


def adopt_directory_owner(fd: int, directory: str | os.PathLike[str]) -> None:
    """Give a file just created by root to the owner of its directory.

    The spool and log directories belong to mta_user: the receiving processes
    (which run as mta_user) and the admin tools must be able to use every
    file in them, whoever made it.  Does nothing unless running as root and
    the directory is someone else's."""
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if st.st_uid != 0 or st.st_gid != 0:
        os.fchown(fd, st.st_uid, st.st_gid)


class EffectiveUser:
    """``with EffectiveUser(uid, gid):`` run a stretch of code with that effective uid and gid
    (the real and saved ids stay root, so root is had back at the end).

    For the daemon's delivery workers: the remote (SMTP) part of a delivery
    runs as mta_user.  It changes every thread of the process (glibc applies
    set*id to all threads), which is what is wanted there: the worker does
    nothing else meanwhile.  Not a security boundary against code that is
    already hostile; a guard against mistakes (no file is written as root
    by the SMTP client, no privileged port is used)."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid = uid, gid
        self._active = False

    def __enter__(self) -> EffectiveUser:
        if os.geteuid() == 0 and self.uid != 0:
            os.setegid(self.gid)
            os.seteuid(self.uid)
            self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            os.seteuid(0)
            os.setegid(0)
            self._active = False


def run_as_user(
    uid: int, gid: int, username: str | None, job: Callable[[], dict[str, Any]], timeout: float = 60.0
) -> dict[str, Any]:
    """Run `job` in a child that has become uid/gid; return the JSON-safe dict it returned.

    An exception in the job is reported as ``{"error": text, "errno": n}``
    (the caller decides what it means).  Raises AsUserError when the child
    cannot be made, cannot drop privileges, dies without a report or takes
    longer than `timeout` seconds (it is then killed).
    """
    import_before_drop()  # once here, not in every child (json and signal among them)
    import json

    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise AsUserError(f"cannot fork to act as uid {uid}: {exc.strerror}") from None
    if pid == 0:  # pragma: no cover - the child; its effects are what the tests check
        os.close(read_fd)
        _child(write_fd, uid, gid, username, job)
    os.close(write_fd)
    try:
        report = _read_all(read_fd, pid, timeout)
    finally:
        status = reap(pid)
    try:
        result = json.loads(report)
    except ValueError:
        shown = "unknown" if status is None else str(os.waitstatus_to_exitcode(status))
        raise AsUserError(f"the process acting as uid {uid} ended without a report (exit status {shown})") from None
    if not isinstance(result, dict) or "privilege_error" in result:
        reason = result.get("privilege_error") if isinstance(result, dict) else "bad report"
        raise AsUserError(f"cannot act as uid {uid} gid {gid}: {reason}")
    return result


def _child(write_fd: int, uid: int, gid: int, username: str | None, job: Callable[[], dict[str, Any]]) -> None:
    """Never returns: become the user, run the job, write its result, exit."""
    import signal

    code = 1
    try:
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        try:
            become_user(uid, gid, username)
        except (OSError, RootRegainedError) as exc:
            result: dict[str, Any] = {"privilege_error": str(getattr(exc, "strerror", None) or exc)}
        else:
            try:
                result = job()
            except OSError as exc:
                result = {"error": exc.strerror or str(exc), "errno": exc.errno or 0}
            except Exception as exc:
                # A forked child must never return into the parent's code: any error is a report.
                result = {"error": f"{type(exc).__name__}: {exc}", "errno": 0}
        write_report(write_fd, result)
        code = 0
    finally:
        os._exit(code)


def write_report(fd: int, report: dict[str, Any]) -> None:
    """A forked child's report to its parent: JSON, ASCII only, written whole."""
    import json  # imported before the drop: IMPORTS_BEFORE_DROP

    data = memoryview(json.dumps(report).encode("ascii"))
    while data:
        data = data[os.write(fd, data) :]


def _read_all(fd: int, pid: int, timeout: float) -> bytes:
    # Here, not at the top: the parent side only (never dropped), and select costs a sendmail 0.3 ms.
    from mta.readiness import readable

    deadline = time.monotonic() + timeout
    data = bytearray()
    try:
        while True:
            if not readable(fd, max(deadline - time.monotonic(), 0.0)):
                import signal

                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                raise AsUserError(f"the process acting as another user took more than {timeout:g}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(data)
            data += chunk
            if len(data) > _MAX_REPORT:
                raise AsUserError("the process acting as another user reported too much")
    finally:
        os.close(fd)


def reap(pid: int) -> int | None:
    """The child's wait status, or None if someone else (a SIGCHLD handler) already reaped it."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None  # reaped by someone else (a SIGCHLD handler)
        except InterruptedError:
            continue
