"""`mta-what` (exiwhat) against real processes: a daemon with a session held open, a delivery
stalled on a host that never greets, `mta -M` and `mta -q` stalled the same way, an `mta -bs`
session.

The stalled host is a listening socket nobody accepts on: the kernel completes
each connection, and the client waits for a greeting that never comes until
the socket is closed at the end (which resets them, so every delivery ends
in a deferral and the daemon stops at once).
"""

from __future__ import annotations

import pwd
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from mta import __version__
from tests.support.daemon import DaemonWorld, RawClient
from tests.support.mta import MTA, SMARTHOST_CONFIG
from tests.support.nobody import Nobody, find_nobody

WHAT = str(Path(MTA).with_name("mta-what"))

MAIN = """\
spool_directory = {spool}
primary_hostname = mail.example.com
qualify_domain = example.com
domainlist local_domains = example.com
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
smtp_receivers = 1
delivery_workers = 1
acl_smtp_rcpt = everyone

begin acl
everyone:
  accept
"""


def config(stall_port: int) -> str:
    """Every remote address goes to the stalled host (the smart host configuration of the other tests)."""
    return MAIN + SMARTHOST_CONFIG.format(port=stall_port)


def parents() -> dict[int, int]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    return table


def mta_what(world: DaemonWorld, *, user: int | None = None, command: list[str] | None = None) \
        -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(command or [WHAT]), "-C", str(world.config)], capture_output=True, text=True,
                          timeout=30, user=user, cwd="/")


def what_command(nobody: Nobody) -> list[str]:
    """mta-what as another user runs it: the console script, or the fallback nobody.py uses."""
    if nobody.prefix == (MTA,):
        return [WHAT]
    *interpreter, boot = nobody.prefix
    changed = boot.replace("sys.argv[0] = 'mta'; from mta.cli import main",
                           "sys.argv[0] = 'mta-what'; from spool_tools.what import main")
    assert changed != boot
    return [*interpreter, changed]


def submit_over_smtp(port: int, recipient: str) -> str:
    with RawClient(port) as client:
        client.reply()
        client.command("EHLO client.example")
        client.command("MAIL FROM:<alice@example.com>")
        assert client.command(f"RCPT TO:<{recipient}>")[0] == 250
        assert client.command("DATA")[0] == 354
        code, text = client.command("Subject: stalled\r\n\r\nhello\r\n.")
        client.command("QUIT")
    assert code == 250, text
    return text.rsplit("id=", 1)[1]


def test_what_each_process_is_doing(daemon_world: DaemonWorld, tmp_path: Path) -> None:
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen(16)
    stall_port = stall.getsockname()[1]
    daemon_world.write_config(base=config(stall_port))
    # Not an mta that answers SIGUSR1 yet (an mta process starting up looks like this): never signalled.
    lookalike = tmp_path / "mta"
    lookalike.write_text("import time\ntime.sleep(60)\n")
    started = subprocess.Popen([sys.executable, str(lookalike), "-C", str(daemon_world.config)])
    helpers: list[subprocess.Popen[bytes]] = [started]
    try:
        daemon_world.start("-q30m")
        assert daemon_world.process is not None
        master = daemon_world.process.pid
        with RawClient(daemon_world.port) as held:
            held.reply()
            held.command("EHLO held.example")
            by_worker = submit_over_smtp(daemon_world.port, "bob@example.net")
            queued = daemon_world.run("-odq", "carol@example.net", "dave@example.net", input="Subject: x\n\nhi\n")
            assert queued.returncode == 0, queued.stderr
            (by_cli,) = set(daemon_world.message_ids()) - {by_worker}
            forced = subprocess.Popen([MTA, "-C", str(daemon_world.config), "-M", by_cli])
            helpers.append(forced)
            # -M must hold its message before the queue run starts, or the run may take it first.
            deadline = time.monotonic() + 20
            while f"delivering {by_cli} to" not in (shown := mta_what(daemon_world)).stdout:
                assert time.monotonic() < deadline and forced.poll() is None, shown.stdout + shown.stderr
                time.sleep(0.1)
            queued = daemon_world.run("-odq", "erin@example.net", input="Subject: x\n\nhi\n")
            (by_run,) = set(daemon_world.message_ids()) - {by_worker, by_cli}
            # A queue run skips the two messages being delivered (locked) and tries this one.
            run = subprocess.Popen([MTA, "-C", str(daemon_world.config), "-q"])
            session = subprocess.Popen([MTA, "-C", str(daemon_world.config), "-bs"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
            helpers += [run, session]
            assert session.stdout is not None and session.stdout.readline().startswith(b"220 ")
            deadline = time.monotonic() + 20
            while True:
                result = mta_what(daemon_world)
                if all(f"delivering {i} to" in result.stdout for i in (by_worker, by_cli, by_run)):
                    break
                assert time.monotonic() < deadline, result.stdout + result.stderr
                time.sleep(0.1)
            assert (result.returncode, result.stderr) == (0, "")
            lines = result.stdout.splitlines()
            family = parents()
            kids = {pid for pid, parent in family.items() if parent == master}
            stalled = f"127.0.0.1 [127.0.0.1]:{stall_port}"
            expected = {
                f"{master:5d} daemon({__version__}): -q30m, listening for SMTP on [127.0.0.1]:{daemon_world.port}",
                f"{forced.pid:5d} delivering {by_cli} to {stalled} (carol@example.net, ...)",
                f"{run.pid:5d} delivering {by_run} to {stalled} (erin@example.net)",
                f"{session.pid:5d} accepting a local SMTP message",
            }
            assert expected <= set(lines), lines
            receiving = [line for line in lines if line.endswith(" handling incoming connection from [127.0.0.1]")]
            delivering = [line for line in lines if line.endswith(f" delivering {by_worker} to {stalled} "
                                                                   "(bob@example.net)")]
            assert len(receiving) == 1 and len(delivering) == 1, lines
            receiver, worker = (int(line.split()[0]) for line in (receiving[0], delivering[0]))
            assert {receiver, worker} <= kids and receiver != worker
            # Sorted by pid, one line each: nothing else was asked (processes of other tests are left alone).
            assert len(lines) == 6 and lines == sorted(lines, key=lambda line: int(line.split()[0]))
            assert started.poll() is None  # the look-alike was not sent a signal that would kill it

            # Anyone else is told plainly, and signals nothing.
            nobody = find_nobody()
            if not isinstance(nobody, str):
                command = what_command(nobody)
                refused = mta_what(daemon_world, user=nobody.uid, command=command)
                assert refused.returncode == 1 and refused.stdout == ""
                assert refused.stderr == "mta-what: permission denied: only root or mta_user (mail) may ask mta " \
                                         "processes what they are doing\n"
                # mta_user reaches the receivers (its own processes) and is told about the rest.
                as_mail = mta_what(daemon_world, user=pwd.getpwnam("mail").pw_uid, command=command)
                assert as_mail.returncode == 1
                assert as_mail.stdout == f"{receiver:5d} handling incoming connection from [127.0.0.1]\n"
                assert re.fullmatch(r"mta-what: cannot signal 5 mta processes \(pid [\d, ]+\): permission denied "
                                    r"\(only root can ask every mta process\)\n", as_mail.stderr), as_mail.stderr
    finally:
        stall.close()  # resets the stalled connections: every delivery defers and ends
        for process in helpers:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
    assert daemon_world.stop() == 0


def test_an_mta_command_is_told_apart_by_its_python_command_line() -> None:
    from spool_tools.what import _config_of, _mta_arguments

    # pip's console script, mta's launcher (python -S), python -m mta.cli, with interpreter options.
    assert _mta_arguments(["/venv/bin/python", "/venv/bin/mta", "-bd", "-q30m"]) == ["-bd", "-q30m"]
    assert _mta_arguments(["/venv/bin/python", "-S", "/venv/bin/sendmail", "-t"]) == ["-t"]
    assert _mta_arguments(["/usr/bin/python3", "-I", "-X", "importtime", "/usr/sbin/sendmail", "-i"]) == ["-i"]
    assert _mta_arguments(["python3.11", "-m", "mta.cli", "-C", "/etc/x"]) == ["-C", "/etc/x"]
    assert _config_of(["/venv/bin/python", "-S", "/venv/bin/mta", "-C", "mta.conf", "-bd"], "/srv") == "/srv/mta.conf"
    # Not mta: another program, python running something else, or nothing after the options.
    for argv in (["/usr/sbin/sendmail", "-t"], ["python3", "-m", "http.server"], ["python3", "-c", "mta"],
                 ["python3", "-S", "/usr/bin/other", "-bd"], ["python3", "-S"], ["python3"]):
        assert _mta_arguments(argv) is None, argv
