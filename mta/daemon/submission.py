"""Submission by ordinary users: `sendmail` hands its message to the daemon, or leaves it for it.

The spool belongs to root and mta_user; nobody else can write it (and so
nobody can read or forge another user's queued mail).  An ordinary user's
`sendmail` therefore does not write the spool itself:

* **With a daemon running**, it connects to the submission socket
  (`submission_socket`, default ``<spool>/submit.sock``, mode 0666) and
  sends one JSON line (its command-line arguments) and then the message,
  and half-closes.  A receiving process learns the caller's uid from the
  kernel (SO_PEERCRED), never from what the client says, and runs the same
  local submission as `mta -bm`/`-t` would, with that caller's trust: -f
  only as `untrusted_set_sender` allows, Sender: added, U= in the log.  It
  answers with one JSON line (exit status, message id or error) only after
  the message is fsynced; `sendmail` exits with that status.
* **With no daemon**, it writes the same request into the drop directory
  ``<spool>/offline`` (mode 3733: anyone may create a file, nobody but
  mta_user may list or read it; files get mta_group and mode 0640), fsyncs
  it, and exits 0.  The daemon takes these in when it starts and at every
  queue run, as the file's owner (its uid is the file's, which the kernel
  set), exactly as if they had come through the socket.

Options that would let a caller choose the daemon's configuration or fake
what it may not (-C, -D, -oM*, -bd, ...) are refused from the socket; the
rest are those of `mta -bm`/`-t`.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time

from mta.config.caller import Caller
from mta.config.caller import caller_for_uid as _caller_for_uid
from mta.errors import ConfigError, MtaError, SpoolError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from mta.config.loader import Config
    from mta.daemon.receiver import Receiver
    from mta.runtime import Runtime

OFFLINE = "offline"
REQUEST_LINE_MAX = 1 << 20
_FORBIDDEN = ("-C", "-D", "-oM", "-bd", "-bs", "-bS", "-bh", "-q", "-M", "-be", "-bP", "-bt", "-bv", "-bp", "-p",
              "-oX", "-oP", "-d", "-N")


def socket_path(config: Config) -> str:
    return config.main.submission_socket or os.path.join(config.main.spool_directory, "submit.sock")


def offline_directory(config: Config) -> str:
    return os.path.join(config.main.spool_directory, OFFLINE)


def check_arguments(argv: list[str]) -> str | None:
    """Why `argv` may not come through the socket, or None."""
    for word in argv:
        if word == "--":
            break
        if word.startswith(_FORBIDDEN):
            return f"option {word.split('=')[0][:20]} is not allowed when submitting through the mail daemon"
    return None


# -- the daemon's side ------------------------------------------------------------------------------


def handle_request(runtime: Runtime, stream: BinaryIO, caller: Caller) -> dict[str, Any]:
    """Read one request (JSON line, then the message) and submit it as `caller`.  Blocking: runs in
    a worker thread of the receiving process, or in a queue run for an offline file."""
    from mta.cli_args import UsageError, parse_command_line
    from mta.receive.local_submit import submit_as_caller

    line = stream.readline(REQUEST_LINE_MAX + 1)
    try:
        request = json.loads(line)
        if isinstance(request, dict) and request.get("action") == "remove":
            return remove_as_caller(runtime, [str(i) for i in request["ids"]], caller)
        argv = [str(a) for a in request["argv"]]
    except (ValueError, KeyError, TypeError):
        return {"status": 1, "error": "malformed submission request"}
    refusal = check_arguments(argv)
    if refusal is not None:
        return {"status": 1, "error": refusal}
    try:
        inv = parse_command_line(argv)
    except UsageError as exc:
        return {"status": 1, "error": exc.message}
    if inv.mode not in ("bm", "t"):
        return {"status": 1, "error": f"-{inv.mode} cannot be used through the mail daemon"}
    try:
        outcome = submit_as_caller(runtime, inv, stream, caller)
    except MtaError as exc:
        return {"status": 1, "error": str(exc)}
    return {"status": outcome.status, "message_id": outcome.message_id, "error": outcome.note,
            "deliver": outcome.deliver}


def remove_as_caller(runtime: Runtime, ids: list[str], caller: Caller) -> dict[str, Any]:
    """`mta -Mrm` from a user who cannot open the spool: remove the messages that `caller` sent
    (Exim's rule; an administrator's own -Mrm never comes here).  The answer's "lines" are what
    the command prints, one per message, and "status" is 1 if any was refused."""
    from mta.config.caller import is_administrator
    from mta.spool.ids import is_message_id
    from spool_tools.message_actions import ActionError, Actor, remove

    if not ids or len(ids) > 1000 or not all(is_message_id(i) for i in ids):
        return {"status": 1, "error": "malformed removal request"}
    main = runtime.config.main
    actor = Actor(runtime.spool, runtime.logger, caller, is_administrator(caller, runtime.config),
                  message_logs=main.message_logs, preserve_message_logs=main.preserve_message_logs)
    lines: list[list[Any]] = []
    for message_id in ids:
        try:
            lines.append([0, remove(actor, message_id)])
        except ActionError as exc:
            lines.append([1, str(exc)])
    return {"status": max(status for status, _ in lines), "lines": lines}


async def serve_submission(receiver: Receiver, listener: socket.socket) -> Any:
    """Accept on the submission socket (shared by all receivers) and handle each client in a thread."""
    import asyncio

    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    clients: set[asyncio.Task[None]] = set()

    def accept() -> None:
        try:
            conn, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        task = loop.create_task(_client(receiver, conn))
        clients.add(task)
        task.add_done_callback(clients.discard)

    loop.add_reader(listener, accept)

    class _Server:
        def close(self) -> None:
            loop.remove_reader(listener)

    return _Server()


async def _client(receiver: Receiver, conn: socket.socket) -> None:
    import asyncio

    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, gid = struct.unpack("3i", creds)
        caller = _caller_for_uid(uid, gid)
        conn.setblocking(True)
        conn.settimeout(float(receiver.runtime.config.main.smtp_receive_timeout) or None)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, _serve_blocking, receiver.runtime, conn, caller)
        if answer.get("status") == 0 and answer.get("message_id") and answer.get("deliver"):
            receiver.dispatcher.send(answer["message_id"])
    finally:
        conn.close()


def _serve_blocking(runtime: Runtime, conn: socket.socket, caller: Caller) -> dict[str, Any]:
    stream = conn.makefile("rb")
    try:
        answer = handle_request(runtime, stream, caller)
    except OSError as exc:
        answer = {"status": 1, "error": f"submission failed: {exc.strerror or exc}"}
    finally:
        stream.close()
    try:
        conn.sendall((json.dumps({k: v for k, v in answer.items() if k != "deliver"}) + "\n").encode())
    except OSError:
        pass  # the client went away; the message, if accepted, is on the spool regardless
    return answer


def take_offline_messages(runtime: Runtime) -> list[str]:
    """Submit every file in the drop directory as its owner; returns the new message ids."""
    directory = offline_directory(runtime.config)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        runtime.logger.panic(f"cannot read the offline drop directory {directory}: {exc.strerror}")
        return []
    ids = []
    for name in names:
        if name.startswith("."):
            continue  # still being written (".tmp-...")
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as stream:
            st = os.fstat(stream.fileno())
            if not os.path.stat.S_ISREG(st.st_mode):  # type: ignore[attr-defined]
                continue
            answer = handle_request(runtime, stream, _caller_for_uid(st.st_uid, st.st_gid))
        if answer.get("status") == 0 and answer.get("message_id"):
            ids.append(answer["message_id"])
        elif answer.get("error"):
            runtime.logger.main(f"offline submission {name} from uid {st.st_uid} refused: {answer['error']}")
        try:
            os.unlink(path)  # taken in (or refused and reported): never submitted twice
        except OSError as exc:
            runtime.logger.panic(f"cannot remove offline submission {path}: {exc.strerror}")
    return ids


# -- the client's side (an ordinary user's sendmail) -----------------------------------------------------


def _without_local_options(argv: list[str]) -> list[str]:
    """-C and -D chose the configuration this process read (to find the socket); the daemon
    uses its own, so they are not passed on."""
    out: list[str] = []
    skip = False
    for index, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word == "--":
            out.extend(argv[index:])
            break
        if word in ("-C", "-D"):
            skip = True
            continue
        if word.startswith(("-C", "-D")):
            continue
        out.append(word)
    return out


def submit_through_daemon(config: Config, argv: list[str], stdin: BinaryIO) -> tuple[int, str]:
    """(exit status, text for stderr).  Tries the socket, then the drop directory."""
    argv = _without_local_options(argv)
    refusal = check_arguments(argv)
    if refusal is not None:
        return 1, refusal
    request = (json.dumps({"argv": argv, "version": 1}) + "\n").encode()
    path = socket_path(config)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        conn.close()
        return _drop_offline(config, request, stdin)
    with conn:
        try:
            conn.sendall(request)
            _copy(stdin, conn.sendall)
            conn.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            pass  # the daemon refused early: its answer says why
        reply = conn.makefile("rb").readline(REQUEST_LINE_MAX)
    try:
        answer = json.loads(reply)
    except ValueError:
        return 1, "the mail daemon did not answer; the message was not accepted"
    return int(answer.get("status", 1)), str(answer.get("error") or "")


def remove_through_daemon(config: Config, ids: list[str]) -> list[tuple[int, str]]:
    """Ask the daemon to remove the caller's own messages: (status, line) for each, in order.
    Raises MtaError when there is no daemon to ask (removal, unlike submission, cannot wait)."""
    request = (json.dumps({"action": "remove", "ids": ids, "version": 1}) + "\n").encode()
    path = socket_path(config)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            reply = conn.makefile("rb").readline(REQUEST_LINE_MAX)
    except OSError as exc:
        raise MtaError(
            f"cannot remove messages: only the mail daemon can change the spool, and it cannot be "
            f"reached at {path} ({exc.strerror or exc}): it is not running? ask an administrator"
        ) from None
    try:
        answer = json.loads(reply)
        if "lines" not in answer:
            raise MtaError(str(answer.get("error") or "the mail daemon refused the request"))
        return [(int(status), str(line)) for status, line in answer["lines"]]
    except (ValueError, TypeError, AttributeError):
        raise MtaError("the mail daemon did not answer; nothing was removed") from None


def _copy(stdin: BinaryIO, write: Any) -> None:
    while True:
        chunk = stdin.read(65536)
        if not chunk:
            return
        write(chunk)


def _drop_offline(config: Config, request: bytes, stdin: BinaryIO) -> tuple[int, str]:
    directory = offline_directory(config)
    temp = os.path.join(directory, f".tmp-{os.getpid()}-{time.time_ns()}")
    final = os.path.join(directory, f"{time.time_ns()}-{os.getpid()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        return 1, (f"cannot queue the message: the mail daemon is not running and the drop directory "
                   f"{directory} cannot be written ({exc.strerror})")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(request)
            _copy(stdin, out.write)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, final)
        _sync_rename(directory)
    except OSError as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        return 1, f"cannot queue the message in {directory}: {exc.strerror}"
    return 0, ""


def _sync_rename(directory: str) -> None:
    """Make the rename durable.  The drop directory cannot be read by the user (3733), so it cannot
    be opened to fsync it; then everything is synced instead: slow, but this path is taken only
    when the daemon is down, and exit 0 must mean the message is on disk."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        os.sync()
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def can_write_spool(config: Config) -> bool:
    input_dir = os.path.join(config.main.spool_directory, "input")
    target = input_dir if os.path.isdir(input_dir) else config.main.spool_directory
    return os.access(target, os.W_OK | os.X_OK)


__all__ = ["ConfigError", "SpoolError", "can_write_spool", "handle_request", "remove_as_caller",
           "remove_through_daemon", "submit_through_daemon", "take_offline_messages"]
