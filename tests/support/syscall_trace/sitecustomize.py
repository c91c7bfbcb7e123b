"""Records the file-system calls that make a message durable, in a real `mta` process.

Put this directory on PYTHONPATH (tests.support.durability.SyscallTrace does)
and set MTA_TEST_TRACE to a log file: every Python process started with that
environment (the `mta` command, its forked delivery children) then appends one
JSON line per event to the log, in the order the calls returned:

    {"pid": 123, "op": "start", "argv": [...]}
    {"pid": 123, "op": "create", "path": "/.../input/ID-J"}
    {"pid": 123, "op": "write", "path": "/.../input/ID-J", "n": 17}
    {"pid": 123, "op": "write", "path": "/.../log/mainlog", "n": 90, "text": "2026-... ID => ..."}
    {"pid": 123, "op": "fsync", "path": "/.../input/hdr.ID", "size": 812, "dir": false}
    {"pid": 123, "op": "syncfs", "path": "/.../input", "dir": true}
    {"pid": 123, "op": "rename", "path": "/.../input/hdr.ID", "dst": "/.../input/ID-H"}
    {"pid": 123, "op": "unlink", "path": "/.../input/ID-J"}
    {"pid": 123, "op": "exit"}

Only paths under the directories named in MTA_TEST_TRACE_ROOTS (os.pathsep
separated) are recorded.  The calls themselves are the real ones: the
wrappers call through to os.* and record only after the call succeeded, so a
failing call leaves no event.  "create" is an os.open with O_CREAT that made
the file (files made by the builtin open() are not seen).  Buffered writes through file objects do not
pass through os.write; `size` (from fstat at the fsync) shows what an fsync
covered.  Events are written with one O_APPEND write each, so lines from
several processes never mix and their order is the order of the calls.

This is test instrumentation at the operating-system edge, not a mock: mta
runs unchanged.  It lives in its own directory so that nothing else on
PYTHONPATH is shadowed.
"""

from __future__ import annotations

import atexit
import json
import os
import sys


def _install(log_path: str, roots: list[str]) -> None:
    real_open = os.open
    real_write = os.write
    real_fsync = os.fsync
    real_fdatasync = os.fdatasync
    real_rename = os.rename
    real_replace = os.replace
    real_unlink = os.unlink
    real_remove = os.remove
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:
        return  # e.g. a child running as another user: it goes unrecorded
    prefixes = tuple(os.path.realpath(root).rstrip("/") + "/" for root in roots if root)

    def wanted(path: str) -> bool:
        return path.startswith(prefixes)

    def emit(op: str, **fields: object) -> None:
        line = json.dumps({"pid": os.getpid(), "op": op, **fields}) + "\n"
        try:
            real_write(log_fd, line.encode())
        except OSError:
            pass

    def fd_path(fd: int) -> str | None:
        if fd == log_fd:
            return None
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return path if wanted(path) else None

    def any_path(path: object) -> str | None:
        if isinstance(path, int):
            return fd_path(path)
        try:
            text = os.fsdecode(path)  # type: ignore[arg-type]
        except TypeError:
            return None
        text = os.path.abspath(text)
        return text if wanted(text) else None

    def open_(path: object, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        name = any_path(path) if dir_fd is None and flags & os.O_CREAT else None
        existed = name is not None and not flags & os.O_EXCL and os.path.lexists(name)
        fd = real_open(path, flags, mode, dir_fd=dir_fd)  # type: ignore[arg-type]
        if name is not None and not existed:
            emit("create", path=name)
        return fd

    def write(fd: int, data: bytes) -> int:
        written = real_write(fd, data)
        path = fd_path(fd)
        if path is not None:
            if os.path.basename(path) == "mainlog":  # which delivery a log line reports
                emit("write", path=path, n=written, text=bytes(data[:200]).decode("utf-8", "replace"))
            else:
                emit("write", path=path, n=written)
        return written

    def synced(real: object, op: str) -> object:
        def sync(fd: object) -> None:
            real(fd)  # type: ignore[operator]
            number = fd if isinstance(fd, int) else fd.fileno()  # type: ignore[attr-defined]
            path = fd_path(number)
            if path is not None:
                info = os.fstat(number)
                emit(op, path=path, size=info.st_size, dir=os.path.isdir(path))

        return sync

    def renamer(real: object) -> object:
        def rename(src: object, dst: object, *args: object, **kwargs: object) -> None:
            real(src, dst, *args, **kwargs)  # type: ignore[operator]
            if args or kwargs.get("src_dir_fd") is not None or kwargs.get("dst_dir_fd") is not None:
                emit("rename-dirfd")  # relative to directory descriptors: not expected in mta
                return
            source, target = any_path(src), any_path(dst)
            if source is not None or target is not None:
                emit("rename", path=source, dst=target)

        return rename

    def remover(real: object) -> object:
        def unlink(path: object, *args: object, **kwargs: object) -> None:
            name = any_path(path) if not args and kwargs.get("dir_fd") is None else None
            real(path, *args, **kwargs)  # type: ignore[operator]
            if name is not None:
                emit("unlink", path=name)

        return unlink

    def syncfs_recorder(module: object) -> None:
        """mta.spool.syncfs calls syncfs(2) through ctypes, not os: record its calls too."""
        real = module.syncfs  # type: ignore[attr-defined]

        def syncfs(fd: int) -> None:
            real(fd)
            path = fd_path(fd)
            if path is not None:
                emit("syncfs", path=path, dir=True)

        module.syncfs = syncfs  # type: ignore[attr-defined]

    class SyncfsFinder:
        """Wraps mta.spool.syncfs.syncfs as soon as the module is loaded."""

        @staticmethod
        def find_spec(name: str, path: object, target: object = None) -> object:
            if name != "mta.spool.syncfs":
                return None
            import importlib.machinery

            spec = importlib.machinery.PathFinder.find_spec(name, path)  # type: ignore[arg-type]
            if spec is None or spec.loader is None:
                return spec
            loader = spec.loader
            real_exec = loader.exec_module  # type: ignore[attr-defined]

            def exec_module(module: object) -> None:
                real_exec(module)
                syncfs_recorder(module)

            loader.exec_module = exec_module  # type: ignore[attr-defined]
            return spec

    sys.meta_path.insert(0, SyncfsFinder)  # type: ignore[arg-type]
    os.open = open_  # type: ignore[assignment]
    os.write = write
    os.fsync = synced(real_fsync, "fsync")  # type: ignore[assignment]
    os.fdatasync = synced(real_fdatasync, "fdatasync")  # type: ignore[assignment]
    os.rename = renamer(real_rename)  # type: ignore[assignment]
    os.replace = renamer(real_replace)  # type: ignore[assignment]
    os.unlink = remover(real_unlink)  # type: ignore[assignment]
    os.remove = remover(real_remove)  # type: ignore[assignment]
    emit("start", argv=sys.argv)
    atexit.register(emit, "exit")


if os.environ.get("MTA_TEST_TRACE"):
    _install(os.environ["MTA_TEST_TRACE"], os.environ.get("MTA_TEST_TRACE_ROOTS", "").split(os.pathsep))
