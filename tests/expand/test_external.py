"""${run} and ${readsocket}: what they do, and what they refuse (issue 11, point 2).

Real commands and real sockets (a Unix socket and a TCP listener on
127.0.0.1 served by a thread); the expander is called in-process with a
context as a configuration would make it.
"""

from __future__ import annotations

import os
import pwd
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.errors import ExpansionError
from mta.expand import ExpandContext, ExpandPolicy, expand
from mta.taint import Tainted

ALLOWED = ExpandPolicy(run=True, readsocket=True, run_timeout=5, socket_timeout=2)


def ctx(
    policy: ExpandPolicy = ALLOWED, environment: dict[str, str] | None = None, **variables: object
) -> ExpandContext:
    return ExpandContext(variables, policy=policy, environment=environment or {})  # type: ignore[arg-type]


def failure(text: str, context: ExpandContext) -> str:
    with pytest.raises(ExpansionError) as info:
        expand(text, context)
    return info.value.message


# -- ${run} ------------------------------------------------------------------------------


RUN = [
    ("output", "${run{/bin/echo hello}}", "hello\n"),
    ("yes-string", "${run{/bin/echo hello}{<$value>}{no}}", "<hello\n>"),
    ("exit-status", "${run{/bin/sh -c 'exit 3'}{yes}{no $runrc}}", "no 3"),
    ("runrc-after", "${run{/bin/false}{}{}}$runrc", "1"),
    ("stderr-joined", "${run{/bin/sh -c 'echo err >&2'}}", "err\n"),
    ("quoted-args", '${run{/bin/echo \'a  b\' "c\\"d"}}', 'a  b c"d\n'),
    ("late-expansion", "${run{/bin/echo ${lc:AB} $primary_hostname}}", "ab mx.example\n"),
    ("preexpand", "${run,preexpand{/bin/echo ${uc:ab}}}", "AB\n"),
    ("no-shell", "${run{/bin/echo \\$(id) ; ls}}", "$(id) ; ls\n"),
    ("missing-program", "${run{/nonexistent/program}{yes}{no $runrc}}", "no 127"),
    ("stdin-is-empty", "${run{/bin/cat}}", ""),
    ("skipped-not-run", "${if eq{a}{b}{${run{/bin/sh -c 'exit 9'}}}}$runrc", "0"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in RUN], ids=[c[0] for c in RUN])
def test_run(text: str, want: str) -> None:
    got = expand(text, ctx(primary_hostname="mx.example"))
    assert got == want, f"expand({text!r}): got {got!r}, want {want!r}"


def test_run_environment_is_only_the_configured_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_FROM_CALLER", "leak")
    got = expand("${run{/usr/bin/env}}", ctx(environment={"PATH": "/bin", "LANG": "C"}))
    assert sorted(got.split()) == ["LANG=C", "PATH=/bin"]
    assert expand("${env{LANG}{$value}{unset}}|${env{SECRET_FROM_CALLER}{$value}{unset}}",
                  ctx(environment={"LANG": "C"})) == "C|unset"  # fmt: skip


def test_run_timeout_kills_the_command() -> None:
    started = time.monotonic()
    policy = ExpandPolicy(run=True, run_timeout=0.5)
    assert failure("${run{/bin/sleep 30}}", ctx(policy)) == "command timed out"
    assert time.monotonic() - started < 10


def test_run_umask_and_directory(tmp_path: Path) -> None:
    target = tmp_path / "made"
    expand(f"${{run{{/usr/bin/touch {target}}}}}", ctx())
    assert target.stat().st_mode & 0o777 == 0o600  # umask 077, as Exim's child_open
    assert expand("${run{/bin/pwd}}", ctx()) == "/\n"


def test_run_as_the_mta_user_when_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    nobody = pwd.getpwnam("nobody")
    policy = ExpandPolicy(run=True, run_as=(nobody.pw_uid, nobody.pw_gid))
    assert expand("${run{/usr/bin/id -u}}", ctx(policy)) == f"{nobody.pw_uid}\n"


REFUSED = [
    ("tainted-argument", "${run{/bin/echo $local_part}}", "Tainted arg 1 for ${run} expansion command: 'bob'"),
    ("tainted-preexpand", "${run,preexpand{/bin/echo $local_part}}", "Tainted arg 0 for ${run} expansion command"),
    ("tainted-in-operator", "${run{/bin/echo ${md5:$local_part}}}", "Tainted arg 1 for ${run} expansion command"),
    ("relative-command", "${run{echo hi}}", 'command for ${run} must be an absolute path: "echo"'),
    ("bad-option", "${run,later{/bin/echo}}", "bad option 'later' for run"),
    ("unterminated", "${run{/bin/echo", "missing } at end of string"),
    (
        "late-expansion-failure",
        "${run{/bin/echo ${lc:}",
        "missing } at end of string",
    ),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_run_refusals(text: str, message: str) -> None:
    got = failure(text, ctx(local_part=Tainted("bob")))
    assert message in got, f"expand({text!r}): got {got!r}, want {message!r}"


def test_data_never_becomes_a_command() -> None:
    # A local part that looks like an expansion is data: it is printed, never run.
    got = expand("$local_part", ctx(local_part=Tainted("${run{/bin/echo pwned}}")))
    assert got == "${run{/bin/echo pwned}}"


def test_run_switched_off() -> None:
    off = ExpandPolicy(run=False)
    assert failure("${run{/bin/echo hi}}", ctx(off)) == "running a command is not permitted"
    # Refused as soon as it is read, also in a branch not taken (as Exim's expand_forbid).
    assert failure("${if eq{a}{b}{${run{/bin/echo hi}}}}", ctx(off)) == "running a command is not permitted"


# -- ${readsocket} -------------------------------------------------------------------------


class EchoServer:
    """Answers "you said: <request>" and closes; records what each client sent."""

    def __init__(self, listener: socket.socket, delay: float = 0.0) -> None:
        self.listener = listener
        self.delay = delay
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                self.requests.append(data)
                time.sleep(self.delay)
                try:
                    conn.sendall(b"you said: " + data + b"\nbye\n")
                except OSError:
                    pass


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[tuple[str, EchoServer]]:
    path = str(tmp_path / "sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    server = EchoServer(listener)
    yield path, server
    listener.close()


@pytest.fixture
def tcp_server() -> Iterator[tuple[int, EchoServer]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = EchoServer(listener)
    yield listener.getsockname()[1], server
    listener.close()


def test_readsocket_unix(unix_server: tuple[str, EchoServer]) -> None:
    path, server = unix_server
    assert expand(f"${{readsocket{{{path}}}{{hello}}}}", ctx()) == "you said: hello\nbye\n"
    assert server.requests == [b"hello"]


def test_readsocket_tcp_with_eol(tcp_server: tuple[int, EchoServer]) -> None:
    port, _ = tcp_server
    got = expand(f"${{readsocket{{inet:127.0.0.1:{port}}}{{hi}}{{2s}}{{|}}}}", ctx())
    assert got == "you said: hi|bye|"


def test_readsocket_failure_string_and_errors(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-socket"
    assert expand(f"${{readsocket{{{missing}}}{{x}}{{1s}}{{}}{{fallback}}}}", ctx()) == "fallback"
    message = failure(f"${{readsocket{{{missing}}}{{x}}}}", ctx())
    assert message == f"failed to connect to socket {missing}: No such file or directory"


def test_readsocket_timeout(tcp_server: tuple[int, EchoServer]) -> None:
    port, server = tcp_server
    server.delay = 3
    started = time.monotonic()
    assert failure(f"${{readsocket{{inet:127.0.0.1:{port}}}{{x}}{{1s}}}}", ctx()) == "socket read timed out"
    assert time.monotonic() - started < 3


def test_readsocket_tainted_spec_refused(unix_server: tuple[str, EchoServer]) -> None:
    path, server = unix_server
    message = failure("${readsocket{$sender_host_name}{x}}", ctx(sender_host_name=Tainted(path)))
    assert message == f"Tainted socket name '{path}' refused for readsocket"
    assert server.requests == []


def test_readsocket_switched_off(unix_server: tuple[str, EchoServer]) -> None:
    path, _ = unix_server
    off = ExpandPolicy(run=True, readsocket=False)
    assert failure(f"${{readsocket{{{path}}}{{x}}}}", ctx(off)) == "socket insertions are not permitted"
