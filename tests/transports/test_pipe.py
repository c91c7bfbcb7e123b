"""pipe: argv without a shell, a clean environment, exit statuses, timeouts, output, large messages."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mta.errors import ConfigError, DeferError, FailError
from mta.taint import Tainted
from mta.transports.pipe import PipeOptions, PipeTransport, split_command
from tests.transports import transport_helpers
from tests.transports.transport_helpers import HEADERS, make_env, make_item, make_message

utc = transport_helpers.utc  # a fixture, shared with the mbox tests

PY = sys.executable
from tests.support.samples import SAMPLES  # noqa: E402


def pipe(**options: Any) -> PipeTransport:
    transport = PipeTransport("address_pipe", PipeOptions(driver="pipe", **options), ("test.conf", 3))
    transport.check(None)
    return transport


def script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def deliver(transport: PipeTransport, tmp_path: Path, item: Any = None, **message: Any) -> None:
    transport.deliver(make_message(tmp_path / "msg", **message), item or make_item(), make_env())


# -- the command line ---------------------------------------------------------------------------------


def test_arguments_are_split_without_a_shell(tmp_path: Path) -> None:
    dump = script(tmp_path, "argv.py", "import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n")
    out = tmp_path / "argv.json"
    marker = tmp_path / "pwned"
    command = f"{PY} {dump} {out} \"a b; touch {marker}\" '$local_part' $local_part ${{uc:$domain}} $pipe_addresses"
    item = make_item("john doe@example.com")  # a local part with a space: still one argument
    deliver(pipe(command=command), tmp_path, item)
    assert json.loads(out.read_text()) == [
        f"a b; touch {marker}",
        "john doe",
        "john doe",
        "EXAMPLE.COM",
        "john doe@example.com",
    ]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("/bin/x a  b", ["/bin/x", "a", "b"]),
        ('/bin/x "a b" \'c "d\'', ["/bin/x", "a b", 'c "d']),
        (r'/bin/x "say \"hi\"\t" tail', ["/bin/x", 'say "hi"\t', "tail"]),
        ("  /bin/x  ", ["/bin/x"]),
        ("", []),
    ],
)
def test_split_command(text: str, argv: list[str]) -> None:
    assert split_command(text) == argv


def test_tainted_command_refused(tmp_path: Path) -> None:
    with pytest.raises(DeferError, match=r"Tainted '/bin/alice' \(command for address_pipe transport\)"):
        deliver(pipe(command="/bin/$local_part"), tmp_path)
    with pytest.raises(DeferError, match="Tainted"):
        deliver(pipe(command="echo $local_part", use_shell=True), tmp_path)
    item = make_item(pipe_command=Tainted("|/bin/true"))
    with pytest.raises(DeferError, match="Tainted"):
        deliver(pipe(), tmp_path, item)


def test_command_from_alias_file_item(tmp_path: Path) -> None:
    dump = script(tmp_path, "argv.py", "import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n")
    out = tmp_path / "argv.json"
    item = make_item("alerts@example.com", pipe_command=f"|{PY} {dump} {out} '$local_part' x")
    deliver(pipe(command="/bin/false"), tmp_path, item)
    assert json.loads(out.read_text()) == ["$local_part", "x"]  # alias-file commands are not expanded
    forced = pipe(command=f"{PY} {dump} {out} first $address_pipe last", force_command=True)
    deliver(forced, tmp_path, item)
    assert json.loads(out.read_text()) == ["first", PY, str(dump), str(out), "$local_part", "x", "last"]


def test_restrict_to_path_and_allow_commands(tmp_path: Path) -> None:
    with pytest.raises(FailError, match='"/" found in "/bin/true"'):
        deliver(pipe(command="/bin/true", restrict_to_path=True), tmp_path)
    deliver(pipe(command="true", restrict_to_path=True), tmp_path)  # found in path
    with pytest.raises(FailError, match='"/bin/false" command not permitted'):
        deliver(pipe(command="/bin/false", allow_commands="/bin/true"), tmp_path)
    deliver(pipe(command="/bin/true", allow_commands="/bin/true"), tmp_path)
    with pytest.raises(FailError, match='"no-such-command" command not found'):
        deliver(pipe(command="no-such-command"), tmp_path)


# -- environment and standard input ---------------------------------------------------------------------


def test_environment_is_exactly_the_documented_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_TEST_LEAK", "secret")
    monkeypatch.delenv("TZ", raising=False)
    # /proc/self/environ is what execve() passed, before the interpreter adds anything.
    dump = script(
        tmp_path,
        "env.py",
        "import sys\nraw = open('/proc/self/environ', 'rb').read()\nopen(sys.argv[1], 'wb').write(raw)\n",
    )
    out = tmp_path / "env"
    item = make_item("alice@example.com", home="/home/alice")
    deliver(pipe(command=f"{PY} {dump} {out}", environment="EXTRA=1 : MORE=a=b"), tmp_path, item)
    env = dict(entry.split("=", 1) for entry in out.read_bytes().decode().split("\0") if entry)
    assert env == {
        "LOCAL_PART": "alice",
        "LOGNAME": "alice",
        "USER": "alice",
        "LOCAL_PART_PREFIX": "",
        "LOCAL_PART_SUFFIX": "",
        "DOMAIN": "example.com",
        "HOME": "/home/alice",
        "MESSAGE_ID": "1xV6uN-0005TT-0O",
        "PATH": "/bin:/usr/bin",
        "QUALIFY_DOMAIN": "example.com",
        "RECIPIENT": "alice@example.com",
        "SENDER": "carol@example.org",
        "SHELL": "/bin/sh",
        "EXTRA": "1",
        "MORE": "a=b",
    }


@pytest.mark.usefixtures("utc")
def test_stdin_matches_exim_sample(tmp_path: Path) -> None:
    # pipe-alerts-output.txt: what an alias pipe got from Exim with the default pipe options.
    sample = (SAMPLES / "pipe-alerts-output.txt").read_bytes().split(b"\n", 1)[1]
    head, body = sample.split(b"\n\n", 1)
    header_text = head.split(b"\n", 1)[1].decode() + "\n"
    out = tmp_path / "alerts.out"
    item = make_item("alerts@example.com", pipe_command=f"|/usr/bin/tee -a {out}")
    pipe().deliver(
        make_message(tmp_path / "m", body=body[:-1], headers=header_text, sender="monitor@example.org"),
        item,
        make_env(now=1795351439.0),  # Sun, 22 Nov 2026 12:43:59 +0000
    )
    assert out.read_bytes() == sample


def test_command_that_does_not_read_its_input(tmp_path: Path) -> None:
    # EPIPE is not an error: the command succeeded without reading (no DeferError/FailError raised).
    assert deliver(pipe(command="/bin/true"), tmp_path, body=b"x" * 1_000_000) is None


def test_large_message_to_a_slow_reader_that_talks_first(tmp_path: Path) -> None:
    # Fills its output pipe before reading: a writer that does not read at the same time deadlocks.
    reader = script(
        tmp_path,
        "slow.py",
        "import sys, time\n"
        "sys.stdout.write('x' * 300000); sys.stdout.flush()\n"
        "total = 0\n"
        "while True:\n"
        "    data = sys.stdin.buffer.read(8192)\n"
        "    if not data: break\n"
        "    total += len(data)\n"
        "    time.sleep(0.0005)\n"
        "open(sys.argv[1], 'w').write(str(total))\n",
    )
    out = tmp_path / "count"
    body = b"0123456789abcdef" * 262144  # 4 MiB
    start = time.monotonic()
    deliver(pipe(command=f"{PY} {reader} {out}", max_output=1_000_000, timeout=60), tmp_path, body=body)
    assert time.monotonic() - start < 30
    prefix = len("From carol@example.org Sun Nov 22 12:43:21 2026\n")
    assert int(out.read_text()) == prefix + len(HEADERS) + 1 + len(body) + 1


# -- exit statuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "temp_errors", "error", "text"),
    [
        (75, "75:73", DeferError, "returned 75 (could mean temporary error)"),
        (73, "75:73", DeferError, "returned 73 (could mean can't create (user) output file)"),
        (1, "75:73", FailError, "returned 1 from command: /bin/sh -c"),
        (64, "75:73", FailError, "returned 64 (could mean usage or syntax error)"),
        (1, "*", DeferError, "returned 1"),
        (2, "1 : 2", DeferError, "returned 2"),
        (75, "1:2", FailError, "returned 75"),
        (130, "75:73", FailError, "returned 130 (could mean shell command ended by signal 2 (Interrupt))"),
    ],
)
def test_exit_status_mapping(tmp_path: Path, status: int, temp_errors: str, error: type, text: str) -> None:
    transport = pipe(command=f"/bin/sh -c 'exit {status}'", temp_errors=temp_errors)
    with pytest.raises(error) as info:
        deliver(transport, tmp_path)
    assert type(info.value) is error
    assert f"Child process of address_pipe transport {text}" in info.value.message


def test_exit_127_command_cannot_be_run(tmp_path: Path) -> None:
    with pytest.raises(FailError) as info:
        deliver(pipe(command=f"{tmp_path}/missing-program arg"), tmp_path)
    assert info.value.message.startswith(
        "Child process of address_pipe transport returned 127 (could mean unable to exec or command does not exist)"
        f" from command: {tmp_path}/missing-program arg"
    )
    with pytest.raises(FailError, match="returned 127"):
        deliver(pipe(command="no-such-program-anywhere", use_shell=True), tmp_path)


def test_killed_by_signal_defers(tmp_path: Path) -> None:
    killer = script(tmp_path, "k.sh", "kill -TERM $$\nsleep 5\n")
    with pytest.raises(DeferError, match=r"was terminated by signal 15 \(Terminated\)"):
        deliver(pipe(command=f"/bin/sh {killer}"), tmp_path)


def test_ignore_status(tmp_path: Path) -> None:
    deliver(pipe(command="/bin/false", ignore_status=True), tmp_path)
    with pytest.raises(FailError):
        deliver(pipe(command="/bin/false"), tmp_path)


# -- timeouts and output ------------------------------------------------------------------------------


@pytest.mark.parametrize(("timeout_defer", "error"), [(False, FailError), (True, DeferError)])
def test_timeout_kills_the_process_group(tmp_path: Path, timeout_defer: bool, error: type) -> None:
    pids = tmp_path / "pids"
    hang = script(tmp_path, "hang.sh", f"/bin/sleep 60 &\necho $! > {pids}\necho $$ >> {pids}\nexec /bin/sleep 60\n")
    start = time.monotonic()
    with pytest.raises(error, match="pipe delivery process timed out"):
        deliver(pipe(command=f"/bin/sh {hang}", timeout=1, timeout_defer=timeout_defer), tmp_path)
    assert time.monotonic() - start < 10
    for pid in map(int, pids.read_text().split()):
        # The background child too: it was in the command's process group.
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie is dead, just not reaped by its parent
    except FileNotFoundError:
        return False


def test_return_output(tmp_path: Path) -> None:
    with pytest.raises(FailError) as info:
        deliver(pipe(command="/bin/echo hello there", return_output=True), tmp_path)
    assert info.value.message.endswith("produced output from command: /bin/echo hello there")
    assert info.value.detail == "hello there\n"  # the output goes to the bounce, not the log line
    deliver(pipe(command="/bin/echo hello"), tmp_path)  # output alone is fine by default


def test_return_fail_output(tmp_path: Path) -> None:
    noisy = script(tmp_path, "noisy.sh", 'echo "no such mailbox" >&2\nexit "$1"\n')
    transport = pipe(command=f"/bin/sh {noisy} $value", return_fail_output=True)
    with pytest.raises(FailError) as info:
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env(variables={"value": "1"}))
    assert info.value.detail == "no such mailbox\n"
    assert "no such mailbox" not in info.value.message
    with pytest.raises(DeferError) as deferred:
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env(variables={"value": "75"}))
    assert "no such mailbox" not in deferred.value.message and not deferred.value.detail
    transport.deliver(make_message(tmp_path / "m"), make_item(), make_env(variables={"value": "0"}))
    without = pipe(command=f"/bin/sh {noisy} 1")
    with pytest.raises(FailError) as plain:
        deliver(without, tmp_path)
    assert "no such mailbox" not in plain.value.message and not plain.value.detail


def test_too_much_output_is_killed(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(FailError, match=r"Too much output from pipe command \(more than 1024 bytes\)"):
        deliver(pipe(command="/usr/bin/yes", max_output=1024), tmp_path)
    assert time.monotonic() - start < 10


# -- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"command": "x", "use_shell": True, "restrict_to_path": True}, "both restrict_to_path and use_shell"),
        ({"command": "x", "use_shell": True, "allow_commands": "/bin/x"}, "both allow_commands and use_shell"),
        ({"command": "x", "temp_errors": "75:soon"}, "temp_errors must be"),
        ({"command": "/bin/x ${if"}, "command:"),
    ],
)
def test_check_rejects_bad_configurations(options: dict[str, Any], error: str) -> None:
    transport = PipeTransport("p", PipeOptions(driver="pipe", **options), ("mta.conf", 4))
    with pytest.raises(ConfigError, match=error):
        transport.check(None)
