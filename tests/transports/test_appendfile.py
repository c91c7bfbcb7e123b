"""appendfile: mbox and Maildir deliveries, locking, symlink/owner checks, quota, disk full."""

from __future__ import annotations

import email.utils
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mta.config.loader import load_config
from mta.errors import ConfigError, DeferError, FailError
from mta.message.headers import parse_header_block
from mta.runtime import build_runtime
from mta.transports.appendfile import AppendfileOptions, AppendfileTransport
from tests.support.tmpfs import small_tmpfs
from tests.transports import transport_helpers
from tests.transports.transport_helpers import BODY, HEADERS, make_env, make_item, make_message, need_root

utc = transport_helpers.utc  # a fixture, shared with the pipe tests

from tests.support.samples import SAMPLES  # noqa: E402


def appendfile(**options: Any) -> AppendfileTransport:
    transport = AppendfileTransport("local_mbox", AppendfileOptions(driver="appendfile", **options), ("test.conf", 7))
    transport.check(None)
    return transport


def expected_mbox_message(sender: str, when: str, body: bytes = BODY, envelope_to: str = "alice@example.com") -> bytes:
    return (
        (
            f"From {sender or 'MAILER-DAEMON'} {when}\n"
            f"Return-path: <{sender}>\n"
            f"Envelope-to: {envelope_to}\n"
            "Delivery-date: Sun, 22 Nov 2026 12:43:21 +0000\n"
        ).encode()
        + HEADERS.encode()
        + b"\n"
        + body
        + b"\n"
    )


# -- mbox format ---------------------------------------------------------------------------------


def _sample_messages(text: str) -> list[dict[str, Any]]:
    """Split an Exim mbox into what each delivery was given (sender, recipients, time, headers, body)."""
    messages = []
    for part in re.split(r"(?m)^(?=From \S+ \w{3} \w{3} [ \d]\d )", text):
        if not part:
            continue
        from_line, rest = part.split("\n", 1)
        header_text, body = rest.split("\n\n", 1)
        headers = parse_header_block(header_text + "\n")
        added = {h.name: h.value().strip() for h in headers[:3]}
        assert list(added) == ["Return-path", "Envelope-to", "Delivery-date"], from_line
        messages.append(
            {
                "sender": added["Return-path"][1:-1],
                "envelope_to": [a.strip() for a in added["Envelope-to"].split(",")],
                "now": email.utils.parsedate_to_datetime(added["Delivery-date"]).timestamp(),
                "headers": "".join(h.text for h in headers[3:]),
                "body": body[:-1].encode(),  # the last newline is the transport's message_suffix
            }
        )
    return messages


@pytest.mark.usefixtures("utc")
def test_mbox_reproduces_exim_sample_byte_for_byte(tmp_path: Path) -> None:
    sample = (SAMPLES / "mbox-alice.txt").read_text().split("\n", 1)[1]
    transport = appendfile(
        file=f"{tmp_path}/mail/$local_part_data", return_path_add=True, envelope_to_add=True, delivery_date_add=True
    )
    messages = _sample_messages(sample)
    assert len(messages) == 5
    for number, m in enumerate(messages):
        message = make_message(tmp_path / f"msg{number}", m["body"], m["headers"], sender=m["sender"])
        # help and sales both alias to alice: one delivery whose Envelope-to names both originals.
        item = make_item("alice@example.com", parent=make_item(m["envelope_to"][0]))
        item.extra["envelope_to"] = m["envelope_to"]
        transport.deliver(message, item, make_env(now=m["now"]))
    assert (tmp_path / "mail" / "alice").read_text() == sample


@pytest.mark.usefixtures("utc")
def test_bounce_matches_exim_sample(tmp_path: Path) -> None:
    sample = (SAMPLES / "msg-bounce-unknown-user.txt").read_text().split("\n", 1)[1]
    [m] = _sample_messages(sample)
    assert m["sender"] == ""
    transport = appendfile(file=f"{tmp_path}/alice", return_path_add=True, envelope_to_add=True, delivery_date_add=True)
    transport.deliver(make_message(tmp_path, m["body"], m["headers"], sender=""), make_item(), make_env(now=m["now"]))
    written = (tmp_path / "alice").read_text()
    assert written.startswith("From MAILER-DAEMON Sun Nov 22 12:43:40 2026\nReturn-path: <>\n")
    assert written == sample


@pytest.mark.usefixtures("utc")
def test_two_deliveries_append_with_from_escaping(tmp_path: Path) -> None:
    body = b"From the start\nplain line\nFrom: not a header here\n>From already quoted\nFromage\n"
    transport = appendfile(
        file=f"{tmp_path}/$local_part_data", return_path_add=True, envelope_to_add=True, delivery_date_add=True
    )
    transport.deliver(make_message(tmp_path / "a"), make_item(), make_env())
    transport.deliver(make_message(tmp_path / "b", body=body, sender=""), make_item(), make_env())
    # Exim escapes "From " only (not mboxrd): a line already starting ">From " is left alone.
    escaped = b">From the start\nplain line\nFrom: not a header here\n>From already quoted\nFromage\n"
    assert (tmp_path / "alice").read_bytes() == (
        expected_mbox_message("carol@example.org", "Sun Nov 22 12:43:21 2026").replace(b"\nFrom what", b"\n>From what")
        + expected_mbox_message("", "Sun Nov 22 12:43:21 2026", body=escaped)
    )
    assert sorted(os.listdir(tmp_path)) == ["a", "alice", "b"]  # lock file and hitching post gone
    assert stat.S_IMODE(os.stat(tmp_path / "alice").st_mode) == 0o600


def test_headers_add_and_remove(tmp_path: Path) -> None:
    transport = appendfile(
        file=f"{tmp_path}/box",
        message_prefix="",
        message_suffix="",
        headers_add="X-Delivered-To: $local_part_data\nX-Two: 2",
        headers_remove="Subject:Received",
    )
    item = make_item()
    item.headers_add.append("X-Router: yes")
    transport.deliver(make_message(tmp_path), item, make_env())
    assert (tmp_path / "box").read_bytes() == (
        b"From: carol@example.org\nTo: alice@example.com\nX-Router: yes\nX-Delivered-To: alice\nX-Two: 2\n\n"
        + BODY.replace(b"\nFrom what", b"\n>From what")
    )


def test_tainted_file_name_refused(tmp_path: Path) -> None:
    # $local_part came from the envelope: it may only be one whole checked component (issue 11).
    transport = appendfile(file=f"{tmp_path}/x$local_part")
    with pytest.raises(DeferError, match=r"Tainted '.*/xalice' \(file or directory name for local_mbox transport\)"):
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert not (tmp_path / "xalice").exists()
    transport = appendfile(file=f"{tmp_path}/$local_part")
    with pytest.raises(DeferError, match=r"Tainted '.*/\.\.' \(file or directory name for local_mbox transport\)"):
        transport.deliver(make_message(tmp_path / "m"), make_item("..@example.com"), make_env())


def test_local_part_as_one_component_is_allowed(tmp_path: Path) -> None:
    transport = appendfile(file=f"{tmp_path}/$local_part")
    transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert (tmp_path / "alice").exists()


def test_message_size_limit_fails(tmp_path: Path) -> None:
    transport = appendfile(file=f"{tmp_path}/box", message_size_limit=100)
    with pytest.raises(FailError, match=r"message is too big \(transport limit = 100\)"):
        transport.deliver(make_message(tmp_path), make_item(), make_env())
    assert not (tmp_path / "box").exists()


# -- locking --------------------------------------------------------------------------------------


def test_lock_file_held_defers_after_retries(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"old mail\n")
    (tmp_path / "box.lock").write_bytes(b"")  # another delivery or a mail reader holds the lock
    transport = appendfile(file=str(box), lock_retries=3, lock_interval=1)
    start = time.monotonic()
    with pytest.raises(DeferError, match=r"failed to lock mailbox .*/box \(lock file\)"):
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert time.monotonic() - start >= 2  # it waited between tries
    assert box.read_bytes() == b"old mail\n"
    assert (tmp_path / "box.lock").exists()  # a live lock of someone else is never removed
    assert sorted(os.listdir(tmp_path)) == ["box", "box.lock", "m"]  # no hitching post left


def test_stale_lock_file_is_removed(tmp_path: Path) -> None:
    box = tmp_path / "box"
    (tmp_path / "box.lock").write_bytes(b"")
    transport = appendfile(file=str(box), lock_retries=5, lock_interval=1, lockfile_timeout=1)
    transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert box.read_bytes().startswith(b"From carol@example.org ")
    assert not (tmp_path / "box.lock").exists()


def test_fcntl_lock_held_by_another_process(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"old mail\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True);"
            " sys.stdin.read()",
            str(box),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        transport = appendfile(file=str(box), use_lockfile=False, lock_retries=2, lock_interval=0)
        with pytest.raises(DeferError, match=r"failed to lock mailbox .*/box \(fcntl\)"):
            transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
        assert box.read_bytes() == b"old mail\n"
    finally:
        holder.communicate(b"", timeout=10)
    transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())  # the lock is free now
    assert box.read_bytes().startswith(b"old mail\nFrom carol@example.org ")


# -- what the mailbox is --------------------------------------------------------------------------


def test_symlink_to_a_system_file_is_refused(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"  # stands for /etc/passwd
    shutil.copyfile("/etc/passwd", passwd)
    before = passwd.read_bytes()
    (tmp_path / "alice").symlink_to(passwd)
    transport = appendfile(file=f"{tmp_path}/$local_part_data")
    with pytest.raises(DeferError, match=r"mailbox .*/alice is a symbolic link"):
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert passwd.read_bytes() == before


def test_dangling_symlink_is_refused_and_nothing_created(tmp_path: Path) -> None:
    (tmp_path / "alice").symlink_to(tmp_path / "target")
    transport = appendfile(file=f"{tmp_path}/alice")
    with pytest.raises(DeferError, match="symbolic link"):
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert not (tmp_path / "target").exists()


def test_allow_symlink_delivers_to_the_target(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_bytes(b"")
    target.chmod(0o600)
    (tmp_path / "alice").symlink_to(target)
    transport = appendfile(file=f"{tmp_path}/alice", allow_symlink=True)
    transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert target.read_bytes().startswith(b"From carol@example.org ")


def test_mailbox_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    need_root("chown of a test mailbox")
    box = tmp_path / "box"
    box.write_bytes(b"old mail\n")
    box.chmod(0o600)
    os.chown(box, 4242, 4242)
    with pytest.raises(DeferError, match=rf"mailbox .*/box has wrong uid \(4242 != {os.geteuid()}\)"):
        appendfile(file=str(box)).deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert box.read_bytes() == b"old mail\n"
    appendfile(file=str(box), check_owner=False).deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert box.read_bytes().startswith(b"old mail\nFrom carol")


def test_mailbox_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()
    with pytest.raises(DeferError, match=r"mailbox .*/box is not a regular file"):
        appendfile(file=f"{tmp_path}/box").deliver(make_message(tmp_path / "m"), make_item(), make_env())


def test_mode_is_narrowed_but_never_widened(tmp_path: Path) -> None:
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    for path, mode in ((wide, 0o644), (narrow, 0o400)):
        path.write_bytes(b"")
        path.chmod(mode)
    appendfile(file=str(wide)).deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert stat.S_IMODE(wide.stat().st_mode) == 0o600
    with pytest.raises(DeferError, match=r"has the wrong mode 400 \(600 expected\)"):
        appendfile(file=str(narrow)).deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert stat.S_IMODE(narrow.stat().st_mode) == 0o400


def test_file_must_exist_and_create_file(tmp_path: Path) -> None:
    with pytest.raises(DeferError, match="does not exist, but file_must_exist is set"):
        appendfile(file=f"{tmp_path}/box", file_must_exist=True).deliver(
            make_message(tmp_path / "m"), make_item(), make_env()
        )
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(DeferError, match="creation outside the home directory is not permitted"):
        appendfile(file=f"{tmp_path}/box", create_file="belowhome").deliver(
            make_message(tmp_path / "m"), make_item(), make_env(home=str(home))
        )
    assert not (tmp_path / "box").exists()
    appendfile(file=f"{home}/mail/box", create_file="belowhome").deliver(
        make_message(tmp_path / "m"), make_item(), make_env(home=str(home))
    )
    assert (home / "mail" / "box").exists()
    assert stat.S_IMODE((home / "mail").stat().st_mode) == 0o700


# -- quota and full disks -----------------------------------------------------------------------------


def test_quota_exceeded_defers_and_leaves_mailbox_alone(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"x" * 900)
    box.chmod(0o600)
    transport = appendfile(file=str(box), quota=1024)
    with pytest.raises(DeferError) as info:
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert info.value.message == "mailbox is full (quota exceeded)"
    assert info.value.retry_error == "quota"
    assert info.value.errno == -22
    assert box.read_bytes() == b"x" * 900
    # Not inclusive: a mailbox under its quota takes the message even if it goes over.
    appendfile(file=str(box), quota=1024, quota_is_inclusive=False).deliver(
        make_message(tmp_path / "m"), make_item(), make_env()
    )
    assert box.stat().st_size > 1024


def test_quota_enforced_while_writing_truncates_back(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"x" * 100)
    box.chmod(0o600)
    big = b"line of text\n" * 10000
    # The size estimate is wrong, so only the check while writing can catch it.
    message = make_message(tmp_path / "m", body=big, size=50)
    with pytest.raises(DeferError, match=r"quota exceeded"):
        appendfile(file=str(box), quota=65536).deliver(message, make_item(), make_env())
    assert box.read_bytes() == b"x" * 100


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, to fill up for real."""
    with small_tmpfs(tmp_path / "tiny", size="64k") as mount:
        yield mount


def test_disk_full_defers_and_leaves_mailbox_alone(tmp_path: Path, tiny_fs: Path) -> None:
    box = tiny_fs / "box"
    box.write_bytes(b"old mail\n")
    box.chmod(0o600)
    message = make_message(tmp_path / "m", body=b"y" * 200_000)
    with pytest.raises(DeferError) as info:
        appendfile(file=str(box)).deliver(message, make_item(), make_env())
    assert info.value.errno == 28  # ENOSPC
    assert "No space left on device" in info.value.message
    assert box.read_bytes() == b"old mail\n"
    assert sorted(os.listdir(tiny_fs)) == ["box"]


# -- Maildir -------------------------------------------------------------------------------------------


def maildir(tmp_path: Path, **options: Any) -> AppendfileTransport:
    return appendfile(directory=f"{tmp_path}/Maildir", maildir_format=True, **options)


def test_maildir_tmp_to_new_unique_and_complete(tmp_path: Path) -> None:
    transport = maildir(tmp_path, delivery_date_add=True)
    for _ in range(2):
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    root = tmp_path / "Maildir"
    assert sorted(os.listdir(root)) == ["cur", "new", "tmp"]
    for sub in ("", "cur", "new", "tmp"):
        assert stat.S_IMODE((root / sub).stat().st_mode) == 0o700
    assert os.listdir(root / "tmp") == []
    names = sorted(os.listdir(root / "new"))
    assert len(names) == 2 and names[0] != names[1]
    for name in names:
        assert re.fullmatch(rf"\d+\.{os.getpid()}_\d+\.mail\.example\.com", name)
        path = root / "new" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # No From_ line, no >From escaping in a Maildir.
        date = b"Delivery-date: Sun, 22 Nov 2026 12:43:21 +0000\n"
        assert path.read_bytes() == date + HEADERS.encode() + b"\n" + BODY


def test_maildir_filecount_quota(tmp_path: Path) -> None:
    transport = maildir(tmp_path, quota_filecount=1)
    transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    with pytest.raises(DeferError, match="quota exceeded") as info:
        transport.deliver(make_message(tmp_path / "m"), make_item(), make_env())
    assert info.value.retry_error == "quota"
    assert len(os.listdir(tmp_path / "Maildir" / "new")) == 1
    assert os.listdir(tmp_path / "Maildir" / "tmp") == []


def test_maildir_disk_full_leaves_nothing(tmp_path: Path, tiny_fs: Path) -> None:
    transport = appendfile(directory=f"{tiny_fs}/Maildir", maildir_format=True)
    with pytest.raises(DeferError) as info:
        transport.deliver(make_message(tmp_path / "m", body=b"z" * 200_000), make_item(), make_env())
    assert info.value.errno == 28
    assert os.listdir(tiny_fs / "Maildir" / "tmp") == [] and os.listdir(tiny_fs / "Maildir" / "new") == []


# -- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"file": "/a", "directory": "/b", "maildir_format": True}, 'only one of "file" or "directory"'),
        ({}, r'one of "file" or "directory" must be set \(.*file = \$address_file\)'),
        ({"directory": "/b"}, "need maildir_format"),
        ({"file": "/a", "use_lockfile": False, "use_fcntl_lock": False}, "no locking configured"),
        ({"file": "/a", "create_file": "somewhere"}, "create_file must be"),
        ({"file": "/a/${lc:"}, "file:"),
    ],
    ids=["both", "neither", "directory-not-maildir", "no-locking", "create-file", "bad-expansion"],
)
def test_check_rejects_bad_configurations(options: dict[str, Any], error: str) -> None:
    transport = AppendfileTransport("t", AppendfileOptions(driver="appendfile", **options), ("mta.conf", 12))
    with pytest.raises(ConfigError, match=error) as info:
        transport.check(None)
    assert (info.value.path, info.value.line) == ("mta.conf", 12)


def test_configuration_file_builds_the_transport(tmp_path: Path) -> None:
    conf = tmp_path / "mta.conf"
    conf.write_text(
        f"spool_directory = {tmp_path}/spool\nprimary_hostname = mail.example.com\n\nbegin transports\n\n"
        "local_mbox:\n  driver = appendfile\n  file = /var/mail/$local_part_data\n  mode = 0640\n"
        "  lock_interval = 1s\n  quota = 50M\n  delivery_date_add\n\n"
        "address_pipe:\n  driver = pipe\n  return_fail_output\n  timeout = 2m\n"
    )
    runtime = build_runtime(load_config(str(conf)))
    mbox = runtime.transports["local_mbox"]
    assert isinstance(mbox, AppendfileTransport)
    assert (mbox.options.mode, mbox.options.lock_interval, mbox.options.quota) == (0o640, 1, 50 * 1024 * 1024)
    assert runtime.transports["address_pipe"].options.timeout == 120
    conf.write_text(conf.read_text() + "\nbroken:\n  driver = appendfile\n  directory = /x\n")
    with pytest.raises(ConfigError, match="maildir_format"):
        build_runtime(load_config(str(conf)))
