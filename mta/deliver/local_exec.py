"""Running one local delivery (appendfile, pipe) in a child process as the delivery user.

    identity = resolve_delivery_identity(transport, item, env)
    run_local_delivery(transport, message, item, env, uid=identity.uid, gid=identity.gid,
                       initgroups=identity.initgroups, home=identity.home,
                       current_directory=identity.current_directory, never_users=...)

returns when the transport delivered (with the ids of any messages it
generated and spooled, an autoreply's, for the caller to deliver), and
raises the DeferError or FailError it reported otherwise.

Security
--------
The parent (the delivery process, root on a real system) forks a child
that gives up root for good before it opens anything: supplementary
groups (the user's with initgroups, else only the delivery gid), then
setgid, then setuid, after which getting root back must fail.  A uid on
the never_users list (root, normally) is refused before forking.  The
child starts in current_directory, else the home directory (when it
exists), else "/", with stdin on /dev/null and umask 077 (transports set
modes explicitly).

The spool is not readable by the delivery user, so the parent opens the
message's -D file before forking and the child reads the body through
that inherited descriptor; the child needs no spool access at all.  (The
spool lock is an open-file-description lock held by the parent's own
descriptor, so the child closing its copies never releases it.)

When mta does not run as root it cannot change uid: the delivery runs
as the invoking user, as Exim does, which is how unprivileged test runs
work.  Running as root with no uid at all is refused.

The child shares nothing with the parent after the fork except the
report pipe; the transport's outcome comes back as one JSON object
(status, code, esc, errno, retry_error, message) and the child leaves
with os._exit(), never returning into the parent's code.  Fork this from
a single-threaded process (the delivery workers are).

Diagnostics
-----------
Nothing is logged here: outcomes go back to the caller, which logs them.
A child that dies by a signal, exits without a report, or outlives
`timeout` (its process group is then killed) is a DeferError.  A pipe
command runs in a process group of its own, which the pipe transport's
own timeout covers; set that below any `timeout` given here.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import signal
import time

from mta import record
from mta.errors import DeferError, DeliveryError, ExpansionError, FailError, SpoolError
from mta.privilege import RootRegainedError, become_user, import_before_drop, reap, write_report
from mta.readiness import readable
from mta.route.item import AddressItem
from mta.transports.base import DeliveryEnv, LocalTransport, OutgoingMessage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

# A report is one small JSON object; anything bigger is not a report.
_MAX_REPORT = 1 << 20


@record.dataclass(frozen=True, slots=True)
class DeliveryIdentity:
    """Who a local delivery runs as, and where."""

    uid: int | None
    gid: int | None
    initgroups: bool = False
    home: str | None = None
    current_directory: str | None = None


# -- who ----------------------------------------------------------------------------------------------


def resolve_user(value: str) -> tuple[int, int | None]:
    """A `user` option value (name or number) -> (uid, the passwd gid or None).  KeyError if unknown."""
    text = value.strip()
    if text.isdigit():
        uid = int(text)
        try:
            return uid, pwd.getpwuid(uid).pw_gid
        except KeyError:
            return uid, None  # a bare number needs no passwd entry; the gid must come from elsewhere
    entry = pwd.getpwnam(text)
    return entry.pw_uid, entry.pw_gid


def resolve_group(value: str) -> int:
    """A `group` option value (name or number) -> gid.  KeyError if unknown."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    return grp.getgrnam(text).gr_gid


def resolve_delivery_identity(transport: LocalTransport, item: AddressItem, env: DeliveryEnv) -> DeliveryIdentity:
    """The uid, gid, home and working directory for delivering `item` with `transport`.

    The transport's `user`/`group` override what the director set on the
    item (item.uid/gid); a transport `user` without `group` brings that
    user's passwd gid.  `home_directory` and `current_directory` of the
    transport override the item's home.  Raises DeferError for an unknown
    user or group or a failed expansion (the administrator can fix both).
    """
    options = transport.options
    uid, gid = item.uid, item.gid
    # initgroups follows whoever supplied the uid (Exim: the transport's option only for its own user).
    initgroups = item.initgroups
    if options.user:
        text = _expand(transport, "user", options.user, item, env)
        try:
            uid, passwd_gid = resolve_user(text)
        except KeyError:
            raise DeferError(
                f'Failed to find user "{text}" from expanded string "{options.user}" for the {transport.name} transport'
            ) from None
        gid = passwd_gid if passwd_gid is not None else gid
        initgroups = options.initgroups
    if options.group:
        text = _expand(transport, "group", options.group, item, env)
        try:
            gid = resolve_group(text)
        except KeyError:
            raise DeferError(
                f'Failed to find group "{text}" from expanded string "{options.group}" '
                f"for the {transport.name} transport"
            ) from None
    if uid is not None and gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            raise DeferError(f"User set without group for {transport.name} transport") from None
    home = item.home if item.home is not None else env.home
    if options.home_directory:
        home = _expand(transport, "home_directory", options.home_directory, item, env)
    current = None
    if options.current_directory:
        current = _expand(transport, "current_directory", options.current_directory, item, env)
    return DeliveryIdentity(uid, gid, initgroups, home, current)


def _expand(transport: LocalTransport, name: str, text: str, item: AddressItem, env: DeliveryEnv) -> str:
    try:
        return env.expand(text, item)
    except ExpansionError as exc:
        raise DeferError(
            f'Failed to expand {name} "{text}" for the {transport.name} transport: {exc.message}'
        ) from None


# -- running ------------------------------------------------------------------------------------------


def run_local_delivery(
    transport: LocalTransport,
    message: OutgoingMessage,
    item: AddressItem,
    env: DeliveryEnv,
    *,
    uid: int | None,
    gid: int | None,
    initgroups: bool,
    home: str | None,
    current_directory: str | None,
    never_users: set[int],
    timeout: float | None = None,
    batch: list[AddressItem] | None = None,
) -> list[str]:
    """Deliver `item` with `transport` in a child running as `uid`/`gid`; see the module docstring.
    `batch`, when given, is every address delivered by this one run (`item` first): batch_max.

    Returns on success (the ids of messages the transport spooled); raises
    the DeferError or FailError the transport reported, or a DeferError when the child could not be started, died,
    gave no report or ran past `timeout` seconds.
    """
    is_root = os.geteuid() == 0
    if is_root:
        import_before_drop()  # once in this process, not in every child
    if uid is not None and uid in never_users:
        raise DeferError(f"User {uid} set for {transport.name} transport is on the never_users list")
    if is_root and uid is None:
        # Without a uid the delivery would run as root: refuse rather than guess.
        raise DeferError(f"no uid set for the local delivery of {item.address} by the {transport.name} transport")
    if is_root and gid is None:
        raise DeferError(f"User set without group for {transport.name} transport")
    username = None
    if is_root and initgroups and uid is not None:
        try:
            username = pwd.getpwuid(uid).pw_name
        except KeyError:
            username = None  # no passwd entry: no supplementary groups to add

    # Open the body here: the child, running as the user, could not read the spool.
    try:
        body = message.open_body()
    except (OSError, SpoolError) as exc:
        raise DeferError(f"cannot open the body of message {message.message_id}: {exc}") from None
    try:
        body_fd, body_offset = body.fileno(), body.tell()
        try:
            read_end, write_end = os.pipe()  # both close-on-exec: no command inherits them
        except OSError as exc:
            raise DeferError(f"cannot make a pipe for local delivery: {exc.strerror}", errno=exc.errno or 0) from None
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            raise DeferError(
                f"fork failed for local delivery to {item.address}: {exc.strerror}", errno=exc.errno or 0
            ) from None
        if pid == 0:
            os.close(read_end)
            _child(
                write_end,
                transport,
                message,
                batch or [item],
                env,
                _ChildSetup(uid, gid, username, home, current_directory, body_fd, body_offset),
            )
        os.close(write_end)
        try:
            os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
        except (PermissionError, ProcessLookupError):
            pass  # the child already did it, or already exited: either way it leads its group
        report = _read_report(read_end, pid, timeout, transport.name)
    finally:
        body.close()
    status = reap(pid)
    return _raise_outcome(report, status, transport.name)


@record.dataclass(frozen=True, slots=True)
class _ChildSetup:
    uid: int | None
    gid: int | None
    username: str | None  # set when initgroups applies
    home: str | None
    current_directory: str | None
    body_fd: int
    body_offset: int


def _read_report(fd: int, pid: int, timeout: float | None, name: str) -> bytes | None:
    """Everything the child wrote before exiting; None if it ran out of time (it is then killed)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    data = bytearray()
    try:
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not readable(fd, wait):
                _kill_child(pid)
                reap(pid)
                raise DeferError(f"local delivery process for {name} transport timed out after {timeout:g}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(data)
            if len(data) < _MAX_REPORT:
                data += chunk
    finally:
        os.close(fd)


def _kill_child(pid: int) -> None:
    # The child leads its own process group; kill whatever it started with it.
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
            return
        except ProcessLookupError:
            continue


def _raise_outcome(report: bytes | None, status: int | None, name: str) -> list[str]:
    """The generated message ids for a reported success; else raise what was reported, or a
    DeferError when there is no report.

    A complete report wins over the exit status: a child killed just after
    reporting a delivery did deliver, and deferring it would deliver twice.
    """
    try:
        outcome = json.loads(report or b"")
        kind = outcome["status"]
    except (ValueError, KeyError, TypeError):
        outcome, kind = None, None
    if kind == "ok":
        assert outcome is not None
        return [str(i) for i in outcome.get("generated") or () if isinstance(i, str)]
    if outcome is not None and kind in ("defer", "fail"):
        cls = FailError if kind == "fail" else DeferError
        raise cls(
            str(outcome.get("message") or f"{name} transport failed"),
            code=outcome.get("code"),
            esc=outcome.get("esc"),
            errno=int(outcome.get("errno") or 0),
            retry_error=outcome.get("retry_error"),
            detail=outcome.get("detail"),
        )
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        meaning = signal.strsignal(number) or "unknown signal"
        raise DeferError(f"local delivery process for {name} transport was killed by signal {number} ({meaning})")
    shown = "unknown" if status is None else str(os.waitstatus_to_exitcode(status))
    raise DeferError(f"local delivery process for {name} transport ended without a report (exit status {shown})")


# -- the child ----------------------------------------------------------------------------------------


def _child(
    report_fd: int,
    transport: LocalTransport,
    message: OutgoingMessage,
    items: list[AddressItem],
    env: DeliveryEnv,
    setup: _ChildSetup,
) -> None:
    """The forked child: drop privileges, deliver, report, exit.  Never returns."""
    exit_code = 1
    try:
        try:
            report = _deliver_in_child(transport, message, items, env, setup)
        except DeliveryError as exc:
            report = _error_report(exc)
        except ExpansionError as exc:
            report = {"status": "defer", "message": f"expansion failed in {transport.name} transport: {exc.message}"}
        except OSError as exc:
            report = {
                "status": "defer",
                "message": f"{transport.name} transport: {exc.strerror or exc}",
                "errno": exc.errno or 0,
            }
        except BaseException as exc:
            # The one catch-all of the delivery code: this is a forked child that must
            # never return into the parent's code.  Whatever went wrong (a bug included)
            # becomes a deferral reported to the parent, so the message stays on the spool.
            report = {"status": "defer", "message": f"{transport.name} transport: {type(exc).__name__}: {exc}"}
        write_report(report_fd, report)
        exit_code = 0
    finally:
        os._exit(exit_code)


def _error_report(exc: DeliveryError) -> dict[str, Any]:
    return {
        "status": "fail" if isinstance(exc, FailError) else "defer",
        "code": exc.code,
        "esc": exc.esc,
        "errno": exc.errno,
        "retry_error": exc.retry_error,
        "message": exc.message,
        "detail": exc.detail,
    }


def _deliver_in_child(
    transport: LocalTransport,
    message: OutgoingMessage,
    items: list[AddressItem],
    env: DeliveryEnv,
    setup: _ChildSetup,
) -> dict[str, Any]:
    # Signal handlers of the parent (a daemon's SIGTERM, say) must not run in here.
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    os.setpgid(0, 0)
    _drop_privileges(transport, setup)
    os.umask(0o077)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    _enter_working_directory(setup)
    child_message = record.replace(message, open_body=_body_opener(setup.body_fd, setup.body_offset))
    child_env = record.replace(env, uid=os.geteuid(), gid=os.getegid(), home=setup.home)
    if len(items) == 1:
        transport.deliver(child_message, items[0], child_env)
    else:
        transport.deliver_items(child_message, items, child_env)
    return {"status": "ok", "generated": child_env.generated}


def _enter_working_directory(setup: _ChildSetup) -> None:
    """chdir to current_directory, else the home directory, else "/" (Exim's order).

    A home directory that does not exist (a system account with home
    /nonexistent, `useradd -M`) is not a reason to keep the user's mail
    back: a mailbox in /var/mail does not need it, so the delivery runs in
    "/" as if no home were set (Exim would defer it for ever).  A home that
    exists but cannot be entered (EACCES, an NFS error) still defers, and so
    does a current_directory the administrator set explicitly.
    """
    directory = setup.current_directory or setup.home or "/"
    try:
        os.chdir(directory)
        return
    except (FileNotFoundError, NotADirectoryError) as exc:
        if setup.current_directory:
            raise DeferError(f"failed to chdir to {directory}: {exc.strerror}", errno=exc.errno or 0) from None
    except OSError as exc:
        raise DeferError(f"failed to chdir to {directory}: {exc.strerror}", errno=exc.errno or 0) from None
    os.chdir("/")


def _drop_privileges(transport: LocalTransport, setup: _ChildSetup) -> None:
    """Become the delivery user for good: groups, then gid, then uid (the order matters: after
    setuid() we could no longer change groups)."""
    if os.geteuid() != 0 or setup.uid is None or setup.gid is None:
        # Not root: we cannot change uid, so the delivery runs as the invoking user (Exim's rule
        # for unprivileged runs).  Root without a uid was refused by the parent.
        return
    try:
        become_user(setup.uid, setup.gid, setup.username)
    except RootRegainedError as exc:
        raise DeferError(f"{exc} in {transport.name} transport", errno=errno.EPERM) from None
    except OSError as exc:
        raise DeferError(
            f"unable to set uid={setup.uid} gid={setup.gid} for {transport.name} transport: {exc.strerror}",
            errno=exc.errno or 0,
        ) from None


def _body_opener(fd: int, offset: int) -> Any:
    """open_body for the child: a fresh reader of the inherited -D descriptor, at the body's start."""

    def open_body() -> BinaryIO:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.fdopen(os.dup(fd), "rb")

    return open_body
