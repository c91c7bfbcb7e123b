"""log_file_path = syslog: lines through the real system logger interface (/dev/log).

The real mta runs in a mount namespace of its own (``unshare --mount``, as
root) whose /dev is a copy with the test's Unix datagram socket as
/dev/log, so the C library's syslog() writes to the test: what arrives is
exactly what a syslog daemon would get (``<priority>timestamp name[pid]: text``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.log import MAX_SYSLOG_LEN, syslog_pieces
from tests.support.mta import MTA, MtaEnv

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1) for a private /dev/log"
)

LOG_MAIL, LOG_LOCAL3 = 2 << 3, 19 << 3
LOG_ALERT, LOG_NOTICE, LOG_INFO = 1, 5, 6
DATAGRAM = re.compile(r"<(\d+)>(?:\w{3} [ \d]\d \d\d:\d\d:\d\d )?(\S+?)\[(\d+)\]: (.*)", re.S)

# Inside the namespace: a /dev with null, zero, urandom and the test's socket as log, then run mta.
NAMESPACE_SCRIPT = """
set -e
for n in null zero random urandom; do : > "$DEV/$n"; mount --bind "/dev/$n" "$DEV/$n"; done
mount --rbind "$DEV" /dev
exec "$@"
"""


class Syslog:
    """A datagram socket standing in for the syslog daemon, and the mta run that talks to it."""

    def __init__(self, root: Path) -> None:
        self.dev = root / "dev"
        self.dev.mkdir()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.dev / "log"))
        self.sock.setblocking(False)

    def run(self, env: MtaEnv, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "sh",
                MTA, "-C", str(env.config), *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, DEV=str(self.dev)))

    def received(self) -> list[tuple[int, int, str, str]]:
        """(facility, severity, name, text) of each datagram so far."""
        out = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return out
            m = DATAGRAM.fullmatch(data.decode().rstrip("\n"))
            assert m, data
            priority = int(m.group(1))
            out.append((priority & ~7, priority & 7, m.group(2), m.group(4)))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def syslog(tmp_path: Path) -> Iterator[Syslog]:
    receiver = Syslog(tmp_path)
    try:
        yield receiver
    finally:
        receiver.close()


MESSAGE = "Subject: x\n\nbody\n"


def test_syslog_and_files_together(mta_env: MtaEnv, syslog: Syslog) -> None:
    logdir = mta_env.root / "logs"
    mta_env.write_config(f"log_file_path = syslog : {logdir}/%slog\n")
    result = syslog.run(mta_env, "-odq", "-f", "a@example.com", "b@example.com", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [(facility, severity, name, text)] = syslog.received()
    assert (facility, severity, name) == (LOG_MAIL, LOG_INFO, "mta")
    # The time stamp is kept (syslog_timestamp defaults to true), then the line as in the file.
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ <= a@example.com ", text), text
    assert (logdir / "mainlog").read_text().rstrip("\n") == text


def test_facility_processname_and_no_timestamp(mta_env: MtaEnv, syslog: Syslog) -> None:
    mta_env.write_config(
        "log_file_path = syslog\nsyslog_facility = local3\nsyslog_processname = mymta\nno_syslog_timestamp\n"
    )
    result = syslog.run(mta_env, "-odq", "-f", "a@example.com", "b@example.com", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [(facility, severity, name, text)] = syslog.received()
    assert (facility, severity, name) == (LOG_LOCAL3, LOG_INFO, "mymta")
    assert re.match(r"\S{23} <= a@example.com ", text), text  # the id first: no time stamp
    assert not mta_env.mainlog.exists()  # syslog only: no files


SMTP_REJECTED = "HELO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\nQUIT\r\n"


@pytest.mark.parametrize("duplication", [True, False])
def test_rejections_and_syslog_duplication(mta_env: MtaEnv, syslog: Syslog, duplication: bool) -> None:
    mta_env.write_config(
        f"log_file_path = syslog\n{'' if duplication else 'no_'}syslog_duplication\n"
        "acl_smtp_rcpt = check\nbegin acl\ncheck:\n  deny message = relay not permitted\n"
    )
    result = syslog.run(mta_env, "-bs", "-oMa", "192.0.2.9", input=SMTP_REJECTED)
    assert "550 relay not permitted" in result.stdout, result.stderr
    rejected = [(f, s, t) for f, s, _n, t in syslog.received() if "rejected RCPT <x@example.net>" in t]
    if duplication:
        # Main log (INFO) and reject log (NOTICE): two copies, as the two files would have.
        assert sorted(s for _f, s, _t in rejected) == [LOG_NOTICE, LOG_INFO]
    else:
        assert [s for _f, s, _t in rejected] == [LOG_NOTICE]  # once, the reject log's copy


@pytest.mark.parametrize("duplication", [True, False])
def test_panic_goes_to_syslog_at_alert(mta_env: MtaEnv, syslog: Syslog, duplication: bool) -> None:
    mta_env.write_config(f"log_file_path = syslog\n{'' if duplication else 'no_'}syslog_duplication\n")
    assert syslog.run(mta_env, "-odq", "b@example.com", input=MESSAGE).returncode == 0
    [message_id] = mta_env.message_ids()
    next((mta_env.spool / "input").rglob(f"{message_id}-D")).unlink()  # a -H without its -D: a panic
    syslog.received()
    syslog.run(mta_env, "-M", message_id)
    missing = [(f, s) for f, s, _n, t in syslog.received() if f"data file {message_id}-D is missing" in t]
    if duplication:
        assert sorted(missing) == [(LOG_MAIL, LOG_ALERT), (LOG_MAIL, LOG_INFO)]  # panic log and main log
    else:
        assert missing == [(LOG_MAIL, LOG_INFO)]  # once, the main log's copy


def test_long_and_multiline_entries_are_split_as_exim_does() -> None:
    assert syslog_pieces("one line") == ["one line"]
    assert syslog_pieces("rejected\nEnvelope-from: <a@b>\nP Received: x") == [
        "[1\\3] rejected",
        "[2\\3] Envelope-from: <a@b>",
        "[3/3] P Received: x",
    ]
    long = "x" * (MAX_SYSLOG_LEN + 10)
    assert syslog_pieces(long) == ["[1/2] " + "x" * MAX_SYSLOG_LEN, "[2/2] " + "x" * 10]
