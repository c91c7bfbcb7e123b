"""The pipe transport's command: its argument vector, and the child process run with the message on stdin.

    argv = split_command('/usr/bin/procmail -d "$local_part"')   # no shell, as Exim
    result = run_command(argv, envp, umask, chunks, timeout, max_output)
    result.status, result.output, result.timed_out, result.too_much

`run_command` never blocks past its timeout and never leaves a process
behind: the command leads its own process group, which is killed on a
timeout, on too much output, and on any way out of the call.  Judging the
result (delivered, deferred, failed) is the transport's business.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator

from mta import record
from mta.errors import DeferError

EX_EXECFAILED = 127
# After the command has exited, how long a process it left holding its output may keep us.
DRAIN_GRACE = 5.0


def split_command(text: str) -> list[str]:
    """Split a command into arguments as Exim does, without a shell.

    White space separates arguments.  An argument that starts with a double
    quote runs to the closing quote, with backslash escapes (\\n, \\t,
    \\", \\\\, octal \\ddd) inside; one that starts with a single quote runs
    verbatim to the closing quote.  Anything else runs to the next white space.
    """
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return args
        if text[i] == "'":
            end = text.find("'", i + 1)
            end = n if end < 0 else end
            args.append(text[i + 1 : end])
            i = end + 1
        elif text[i] == '"':
            out: list[str] = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    char, i = _escape(text, i + 1)
                    out.append(char)
                else:
                    out.append(text[i])
                    i += 1
            args.append("".join(out))
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            args.append(text[start:i])


def _escape(text: str, i: int) -> tuple[str, int]:
    """The character a backslash escape at text[i-1] stands for, and the index after it."""
    char = text[i]
    simple = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}
    if char in simple:
        return simple[char], i + 1
    if char in "01234567":
        end = i
        while end < len(text) and end < i + 3 and text[end] in "01234567":
            end += 1
        return chr(int(text[i:end], 8)), end
    return char, i + 1


# -- running it ---------------------------------------------------------------------------------------


@record.dataclass(slots=True)
class RunResult:
    """How a command ended, and what it wrote."""

    status: int  # exit status; negative: killed by that signal
    output: bytes
    timed_out: bool = False
    too_much: bool = False


def run_command(
    argv: list[str], envp: dict[str, str], umask: int, chunks: Iterator[bytes], timeout: float, max_output: int
) -> RunResult:
    """Run `argv` with `chunks` on its stdin, collecting stdout+stderr; never blocks past `timeout`.

    Writing and reading are multiplexed with a selector on non-blocking
    pipes: a command that fills its output pipe before reading its input
    still makes progress.  The command is a process-group leader so that a
    timeout or excess output kills it and everything it started.  A command
    that cannot be executed gives status 127, as a shell would.
    """
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=envp,
            close_fds=True,
            process_group=0,
            umask=umask,
        )
    except OSError as exc:
        if exc.filename == argv[0]:
            # execve() failed: report it as a shell would, with status 127.
            return RunResult(EX_EXECFAILED, f"{argv[0]}: {exc.strerror}\n".encode("utf-8", "replace"))
        raise DeferError(
            f"Failed to create child process for {argv[0]}: {exc.strerror}", errno=exc.errno or 0
        ) from None
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout if timeout > 0 else None
    result = RunResult(0, b"")
    try:
        _exchange(proc, chunks, deadline, max_output, result)
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not result.timed_out:
            try:
                result.status = proc.wait(remaining)
            except subprocess.TimeoutExpired:
                result.timed_out = True
        if result.timed_out:
            _kill_group(proc.pid)
            result.status = proc.wait()
    finally:
        # On any way out (a spool read error included) leave no process behind.
        if proc.returncode is None:
            _kill_group(proc.pid)
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if not stream.closed:
                stream.close()
    return result


def _exchange(
    proc: subprocess.Popen[bytes], chunks: Iterator[bytes], deadline: float | None, max_output: int, result: RunResult
) -> None:
    """Feed stdin and drain stdout until both are done, the command exits, or the deadline passes."""
    assert proc.stdin is not None and proc.stdout is not None
    stdin_fd, stdout_fd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(stdin_fd, False)
    os.set_blocking(stdout_fd, False)
    output = bytearray()
    pending = b""
    writing = reading = True
    exited = False
    pidfd = _pidfd(proc.pid)
    selector = selectors.DefaultSelector()
    selector.register(stdin_fd, selectors.EVENT_WRITE, "stdin")
    selector.register(stdout_fd, selectors.EVENT_READ, "stdout")
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ, "exit")
    drain_until: float | None = None
    try:
        while reading or (writing and not exited):
            now = time.monotonic()
            limit = deadline
            if drain_until is not None:
                limit = drain_until if deadline is None else min(deadline, drain_until)
            if limit is not None and now >= limit:
                # Before the exit this is the timeout.  After it, the command is done and a
                # process it started still holds the output pipe: stop waiting for it.
                result.timed_out = not exited
                _kill_group(proc.pid)
                break
            wait = None if limit is None else limit - now
            if pidfd is None:
                wait = 0.05 if wait is None else min(wait, 0.05)  # no pidfd: poll for the exit
            for key, _events in selector.select(wait):
                if key.data == "stdin":
                    pending, writing = _feed(stdin_fd, pending, chunks)
                    if not writing:
                        selector.unregister(stdin_fd)
                        proc.stdin.close()
                elif key.data == "stdout":
                    data = os.read(stdout_fd, 65536)
                    if not data:
                        reading = False
                        selector.unregister(stdout_fd)
                    elif not result.too_much:
                        output += data
                        if len(output) > max_output:
                            result.too_much = True
                            del output[max_output:]
                            _kill_group(proc.pid)
                else:
                    exited = True
                    selector.unregister(key.fileobj)
            if pidfd is None and not exited and proc.poll() is not None:
                exited = True
            if exited and drain_until is None:
                drain_until = time.monotonic() + DRAIN_GRACE
                if writing:
                    writing = False  # nobody is left to read the rest of the message
                    selector.unregister(stdin_fd)
                    proc.stdin.close()
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
        result.output = bytes(output)


def _feed(fd: int, pending: bytes, chunks: Iterator[bytes]) -> tuple[bytes, bool]:
    """Write what the pipe takes; returns (what is still pending, whether there is more to write)."""
    if not pending:
        pending = next(chunks, b"")
        if not pending:
            return b"", False
    try:
        written = os.write(fd, pending[:65536])
    except BlockingIOError:
        return pending, True
    except BrokenPipeError:
        # The command stopped reading (it may not want the whole message): not an error, as in Exim.
        return b"", False
    return pending[written:], True


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux 5.3+), or None to poll instead."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return  # every process of the group has ended already
