"""${run} and ${readsocket}: the two items that reach outside the process.

Both exist only when the configuration allows them (main options
expansion_run_commands and expansion_read_sockets; ExpandPolicy), and both
are reachable only from configuration text: data is never expanded.

${run} (Exim 4.96 as Debian ships it, with 4.97's argument scanning)
    The command is split into arguments first (white space; "..." with
    backslash escapes, '...' verbatim), then each argument is expanded on
    its own ("late expansion"); ``${run,preexpand{...}}`` expands first and
    splits after.  Security, beyond Exim: an argument that is tainted after
    expansion is refused in both forms, not only with preexpand, and the
    command must be an absolute path.  It runs without a shell, with stdin
    from /dev/null, stderr joined to stdout, umask 077, in a new process
    group, with the configured environment only (keep_environment /
    add_environment), as the mta user when the process is root
    (ExpandPolicy.run_as), and is killed after expansion_run_timeout.
    $value is its output, $runrc its exit status.
${readsocket{spec}{request}{timeout}{eol}{fail string}}
    A Unix socket path or ``inet:host:port``; the request is sent, the
    sending side shut down (unless ``shutdown=no``), and everything read
    until the server closes is the result.  A tainted spec is refused.
"""

from __future__ import annotations

import os

from mta.errors import ExpansionError
from mta.expand.arith import readtime
from mta.expand.exim_lists import ListReader
from mta.expand.textcodecs import cat_file, to_bytes
from mta.taint import Tainted, is_tainted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.expander import Expander

_C_SPACE = " \t\n\r\f\v"
_MAX_ARGS = 60
EX_EXECFAILED = 127


def item_run(ex: Expander, name: str, skipping: bool) -> str:
    if not ex.ctx.policy.run:
        raise ex.fail("running a command is not permitted")
    late = True
    while ex.at() == ",":
        ex.i += 1
        if ex.s.startswith("preexpand", ex.i):
            late = False
            ex.i += 9
        else:
            start = ex.i
            ex.i += 1
            while ex.at().isascii() and ex.at().isalpha():
                ex.i += 1
            raise ex.fail(f"bad option '{ex.s[start : ex.i]}' for run")
    ex.skip_white()
    if ex.at() != "{":
        raise ex.curly("missing '{' for command arg of run")
    ex.i += 1
    if late:
        start = ex.i
        ex.sub(skipping=True)  # only to find where the command ends
        command = ex.s[start : ex.i]
    else:
        command = ex.sub(skipping)
        ex.skip_white()
    if ex.take() != "}":
        raise ex.curly("missing '}' closing command arg of run")
    if skipping:
        ex.runrc = 0
        ex.lookup_value = None
    else:
        argv = _set_up_command(ex, command, late)
        ex.lookup_value, ex.runrc = _run(ex, argv)
    return ex.yesno(skipping, ex.runrc == 0, ex.lookup_value, "run")


def split_command(command: str) -> list[str]:
    """Exim's transport_set_up_command() splitting (no expansion)."""
    from mta.expand.escapes import dequote

    argv: list[str] = []
    i, n = 0, len(command)
    while i < n and command[i] in _C_SPACE:
        i += 1
    while i < n and len(argv) < _MAX_ARGS:
        if command[i] == "'":
            end = command.find("'", i + 1)
            end = n if end < 0 else end
            argv.append(command[i + 1 : end])
            i = min(end + 1, n)
        else:
            word, i = dequote(command, i)
            argv.append(word)
        while i < n and command[i] in _C_SPACE:
            i += 1
    if i < n:
        raise ExpansionError(f'Too many arguments in command "{command}" in ${{run}} expansion')
    return [Tainted(a) if is_tainted(command) else a for a in argv]


def _set_up_command(ex: Expander, command: str, late: bool) -> list[str]:
    try:
        argv = split_command(command)
    except ExpansionError as exc:
        raise ex.fail(exc.message) from None
    for k, arg in enumerate(argv):
        if late and ("$" in arg or "\\" in arg):
            try:
                arg = ex.expand_other(arg, skipping=False)
            except ExpansionError as exc:
                raise ex.fail(
                    f'Expansion of "{argv[k]}" from command "{command}" in ${{run}} expansion failed: {exc.message}'
                ) from None
            argv[k] = arg
        if is_tainted(arg):
            raise ex.fail(f"Tainted arg {k} for ${{run}} expansion command: '{arg}'")
    if not argv or not argv[0].startswith("/"):
        raise ex.fail(f'command for ${{run}} must be an absolute path: "{argv[0] if argv else ""}"')
    return argv


def _run(ex: Expander, argv: list[str]) -> tuple[str, int]:
    import subprocess  # here: every process that expands a string would pay for it at start-up

    policy = ex.ctx.policy
    # Dropping privilege is done by Popen itself (user=/group=), not by a
    # preexec_fn: the daemon has threads, and preexec_fn is unsafe with them.
    run_as = policy.run_as if os.geteuid() == 0 else None
    try:
        proc = subprocess.Popen(
            [to_bytes(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(ex.ctx.environment),
            cwd="/",
            close_fds=True,
            start_new_session=True,
            umask=0o077,
            user=run_as[0] if run_as else None,
            group=run_as[1] if run_as else None,
            extra_groups=[] if run_as else None,
        )
    except FileNotFoundError:
        return "", EX_EXECFAILED  # what Exim's child reports when execv() fails
    except PermissionError:
        return "", EX_EXECFAILED
    except OSError as exc:
        raise ex.fail(f"couldn't create child process: {exc.strerror}") from None
    try:
        output, _ = proc.communicate(timeout=policy.run_timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)  # the whole process group, as Exim does
        except ProcessLookupError:
            pass
        proc.communicate()  # reap it and close the pipe
        raise ex.fail("command timed out") from None
    if proc.returncode < 0:
        raise ex.fail(f"command killed by signal {-proc.returncode}")
    return cat_file(output, None), proc.returncode


# -- ${readsocket} -------------------------------------------------------------------------------


def item_readsocket(ex: Expander, name: str, skipping: bool) -> str:
    if not ex.ctx.policy.readsocket:
        raise ex.fail("socket insertions are not permitted")
    spec, request, options, eol = ex.read_subs(4, 2, skipping, False, name)
    out = ""
    failure: str | None = None
    if not skipping:
        assert spec is not None and request is not None
        try:
            out = _read_socket(ex, spec, request, options, eol)
        except _SocketFailure as exc:
            failure = exc.message
    if failure is not None:
        if ex.at() != "{":
            raise ex.fail(failure)
        ex.i += 1
        out = ex.sub(skipping=False)
        if ex.take() != "}":
            raise ex.curly("missing '}' closing failstring for readsocket")
        ex.skip_white()
    elif ex.at() == "{":
        ex.i += 1
        ex.sub(skipping=True)
        if ex.take() != "}":
            raise ex.curly("missing '}' closing failstring for readsocket")
        ex.skip_white()
    if ex.take() != "}":
        raise ex.curly("missing '}' closing readsocket")
    return "" if skipping else out


class _SocketFailure(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _read_socket(ex: Expander, spec: str, request: str, options: str | None, eol: str | None) -> str:
    import socket

    if is_tainted(spec):
        raise ex.fail(f"Tainted socket name '{spec}' refused for readsocket")
    timeout = ex.ctx.policy.socket_timeout
    shutdown = True
    if options is not None:
        reader = ListReader(options)
        first = reader.next()
        if first is not None:
            value = readtime(first)
            timeout = float(value) if value >= 0 else timeout
        for option in reader:
            if option.startswith("shutdown="):
                shutdown = option[9:] != "no"
    try:
        if spec.startswith("inet:"):
            host, _, port_text = spec[5:].rpartition(":")
            if not _ or not port_text:
                raise _SocketFailure("")  # Exim loses this message: its "Failed:" is empty
            if port_text[:1].isdigit():
                try:
                    port = int(port_text, 0)
                except ValueError:
                    raise _SocketFailure("") from None
            else:
                try:
                    port = socket.getservbyname(port_text, "tcp")
                except OSError:
                    raise _SocketFailure("") from None
            try:
                sock = socket.create_connection((host.strip("[]"), port), timeout=timeout)
            except OSError as exc:
                raise _SocketFailure(f"failed to connect to any address for {host}: {exc.strerror or exc}") from None
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(spec)
            except TimeoutError:
                sock.close()
                raise _SocketFailure("socket connect timed out") from None
            except OSError as exc:
                sock.close()
                raise _SocketFailure(f"failed to connect to socket {spec}: {exc.strerror}") from None
        with sock:
            if request:
                sock.sendall(to_bytes(request))
            if shutdown:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except TimeoutError:
        raise _SocketFailure("socket read timed out") from None
    except OSError as exc:
        raise _SocketFailure(f"request write to socket failed: {exc.strerror}") from None
    return cat_file(b"".join(chunks), eol or None)
