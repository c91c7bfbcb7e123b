"""The message admin commands through the real CLI, as root: -Mf -Mt -Mrm -Mar -Mmd -Mmad -Mes -Mv*.

Each command: what it prints (Exim's lines from queue.c), what it changes in
-H (read back through the strict reader), the log lines it writes (Exim's
wording: "frozen by root", "removed by root" ...), and its refusals: a
locked message, a missing one, a malformed id.  -Mg has its own file
(test_message_giveup.py), privileges theirs (test_message_permissions.py).
"""

from __future__ import annotations

import subprocess

import pytest

from mta.spool.store import Spool
from tests.support.mta import MTA, MtaEnv
from tests.support.queue import change, submit

MISSING = "1xZ2Tx-000000005zT-0nM1"  # well-formed, never on the spool


def envelope(env: MtaEnv, message_id: str):  # type: ignore[no-untyped-def]
    return Spool(env.spool).read_envelope(message_id)


def msglog(env: MtaEnv, message_id: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in (env.spool / "msglog" / message_id).read_text().splitlines()]


def log_for(env: MtaEnv, message_id: str) -> list[str]:
    return [line.split(" ", 3)[3] for line in env.log_lines() if line.split(" ", 3)[2] == message_id]


def raw(env: MtaEnv, *args: str) -> bytes:
    """Standard output as bytes (to a pipe, not a terminal)."""
    proc = subprocess.run([MTA, "-C", str(env.config), *args], capture_output=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr
    return proc.stdout


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], line: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"mta: {line}\n")


# -- freeze and thaw --------------------------------------------------------------------------


def test_freeze_and_thaw(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    assert ok(mta_env.run("-Mf", message_id)) == f"Message {message_id} is now frozen\n"
    frozen = envelope(mta_env, message_id)
    assert frozen.frozen is not None and not frozen.manual_thaw
    assert mta_env.run("-bp").stdout.splitlines()[0].endswith(f"{message_id} <root@example.com> *** frozen ***")
    refused(mta_env.run("-Mf", message_id), f"message {message_id} is already frozen")

    assert ok(mta_env.run("-Mt", message_id)) == f"Message {message_id} is no longer frozen\n"
    thawed = envelope(mta_env, message_id)
    assert thawed.frozen is None and thawed.manual_thaw
    assert "-manual_thaw\n" in mta_env.header_file(message_id)
    refused(mta_env.run("-Mt", message_id), f"message {message_id} is not frozen")

    assert log_for(mta_env, message_id)[1:] == ["frozen by root", "unfrozen by root"]
    assert msglog(mta_env, message_id)[1:] == ["frozen by root", "unfrozen by root"]


def test_several_ids_each_reported(mta_env: MtaEnv) -> None:
    first, second = submit(mta_env, "a@example.org"), submit(mta_env, "b@example.org")
    result = mta_env.run("-Mf", first, MISSING, second)
    assert result.returncode == 1
    assert result.stdout == f"Message {first} is now frozen\nMessage {second} is now frozen\n"
    assert result.stderr == f"mta: message {MISSING} is not on the spool\n"
    assert envelope(mta_env, first).frozen is not None and envelope(mta_env, second).frozen is not None


def test_forced_delivery_thaws_a_frozen_message(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    ok(mta_env.run("-Mf", message_id))
    ok(mta_env.run("-Mc", message_id))  # not forced: the message stays frozen
    assert envelope(mta_env, message_id).frozen is not None
    assert log_for(mta_env, message_id)[-1] == "Message is frozen"
    mta_env.run("-M", message_id)
    assert "Unfrozen by forced delivery" in log_for(mta_env, message_id)


# -- the refusals every acting command shares ----------------------------------------------------

ACTING = [
    ["-M"],
    ["-Mc"],
    ["-Mf"],
    ["-Mt"],
    ["-Mrm"],
    ["-Mg"],
    ["-Mmad"],
    ["-Mar", "+", "new@example.org"],
    ["-Mmd", "+", "a@example.org"],
    ["-Mes", "+", "other@example.org"],
]


def command(args: list[str], message_id: str) -> list[str]:
    """The option with `message_id` where "+" stands (or after the option)."""
    if "+" in args:
        return [message_id if a == "+" else a for a in args]
    return [*args, message_id]


@pytest.mark.parametrize("args", ACTING, ids=[a[0] for a in ACTING])
def test_locked_message_is_left_alone(mta_env: MtaEnv, args: list[str]) -> None:
    message_id = submit(mta_env, "a@example.org")
    if args[0] == "-Mt":
        change(mta_env, message_id, frozen=1)
    before = mta_env.header_file(message_id)
    with Spool(mta_env.spool).lock(message_id):  # as a delivery in progress holds it
        result = mta_env.run(*command(args, message_id))
    refused(result, f"message {message_id} is locked (being delivered by another process)")
    assert mta_env.header_file(message_id) == before
    assert len(log_for(mta_env, message_id)) == 1  # only its arrival


@pytest.mark.parametrize("args", ACTING, ids=[a[0] for a in ACTING])
def test_missing_message(mta_env: MtaEnv, args: list[str]) -> None:
    refused(mta_env.run(*command(args, MISSING)), f"message {MISSING} is not on the spool")


@pytest.mark.parametrize("args", [*ACTING, ["-Mvh"], ["-Mvb"], ["-Mvl"]], ids=lambda a: a[0])
def test_malformed_id_refuses_the_whole_command(mta_env: MtaEnv, args: list[str]) -> None:
    message_id = submit(mta_env, "a@example.org")
    before = mta_env.header_file(message_id)
    for bad in ("1xZ2Tx-000000005zT", "../../etc/passwd", "1xZ2Tx-000000005zT-0nM!"):
        words = command(args, bad)
        if "+" not in args and args[0] not in ("-Mvh", "-Mvb", "-Mvl"):
            words = [*args, message_id, bad]  # a good id first: it must not be acted on either
        refused(mta_env.run(*words), f"{bad} is not a message id (nothing was done)")
    assert mta_env.header_file(message_id) == before


def test_no_ids_and_missing_addresses(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    refused(mta_env.run("-Mf"), "-Mf: no message ids given")
    refused(mta_env.run("-Mar", message_id), "-Mar: no addresses given after the message id")
    refused(mta_env.run("-Mes", message_id), "-Mes: give one message id and one sender address (<> for none)")
    refused(mta_env.run("-Mes", message_id, "a@x.org", "b@x.org"),
            "-Mes: give one message id and one sender address (<> for none)")
    refused(mta_env.run("-Mvh", message_id, message_id), "-Mvh: only one message can be shown at a time")


# -- removing -----------------------------------------------------------------------------------


def test_remove(mta_env: MtaEnv) -> None:
    keep, gone = submit(mta_env, "a@example.org"), submit(mta_env, "b@example.org")
    ok(mta_env.run("-Mf", gone))  # leaves a msglog, which goes too
    assert ok(mta_env.run("-Mrm", gone)) == f"Message {gone} has been removed\n"
    assert mta_env.message_ids() == [keep]
    assert not any(gone in name for name in mta_env.spool_files())
    assert not (mta_env.spool / "msglog" / gone).exists()
    assert log_for(mta_env, gone)[-2:] == ["removed by root", "Completed"]
    assert len(mta_env.message_ids()) == 1  # no bounce was made
    refused(mta_env.run("-Mrm", gone), f"message {gone} is not on the spool")


def test_remove_a_broken_message(mta_env: MtaEnv) -> None:
    """An administrator can always get rid of a message: -D missing, or -H unreadable."""
    no_data, bad_header = submit(mta_env, "a@example.org"), submit(mta_env, "b@example.org")
    (mta_env.spool / "input" / f"{no_data}-D").unlink()
    header = mta_env.spool / "input" / f"{bad_header}-H"
    header.write_text(header.read_text().replace("\nXX\n1\n", "\nXX\none\n", 1))
    assert ok(mta_env.run("-Mrm", no_data, bad_header)) == (
        f"Message {no_data} has been removed or did not exist\nMessage {bad_header} has been removed\n"
    )
    assert mta_env.spool_files() == []


# -- recipients and sender ------------------------------------------------------------------------


def test_mark_delivered_is_exact_and_all_or_nothing(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "Ann@example.org", "bob@example.org", "cat@example.org")
    refused(mta_env.run("-Mmd", message_id, "bob@example.org", "ann@example.org"),
            f"message {message_id}: ann@example.org is not a recipient: message not updated")
    assert envelope(mta_env, message_id).non_recipients == set()
    assert ok(mta_env.run("-Mmd", message_id, "Ann@example.org", "<bob@example.org>")) == (
        f"Message {message_id} has been modified\n"
    )
    assert envelope(mta_env, message_id).non_recipients == {"Ann@example.org", "bob@example.org"}
    assert mta_env.run("-bp").stdout.splitlines()[1:] == [
        "        D Ann@example.org", "        D bob@example.org", "          cat@example.org", "",
    ]
    assert log_for(mta_env, message_id)[1:] == [
        "address <Ann@example.org> marked delivered by root", "address <bob@example.org> marked delivered by root",
    ]


def test_mark_all_delivered_then_delivery_completes(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org", "b@example.org", "c@example.org")
    (mta_env.spool / "input" / f"{message_id}-J").write_text("b@example.org\n")  # a crashed attempt's
    assert ok(mta_env.run("-Mmad", message_id)) == f"Message {message_id} has been modified\n"
    assert mta_env.run("-bpu").stdout.splitlines()[1:] == [""]
    # Only what was still pending is logged as marked; the journal stays the record of b.
    assert log_for(mta_env, message_id)[1:] == [
        "address <a@example.org> marked delivered by root", "address <c@example.org> marked delivered by root",
    ]
    assert (mta_env.spool / "input" / f"{message_id}-J").exists()
    ok(mta_env.run("-M", message_id))  # nothing left to deliver: the message is done
    assert log_for(mta_env, message_id)[-1] == "Completed"
    assert mta_env.message_ids() == []


def test_add_recipients(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    change(mta_env, message_id, non_recipients={"done@example.org"})
    for words, why in [
        (["b@example.org", "local"], "error while adding recipient: bad address local: domain missing"),
        (["b@example.org", "a@example.org"], "a@example.org is already a recipient: message not updated"),
        (["done@example.org"], "done@example.org is in its list of delivered addresses: message not updated"),
        (["b@example.org", "b@"], "error while adding recipient: bad address b@: "),
    ]:
        result = mta_env.run("-Mar", message_id, *words)
        assert result.returncode == 1 and result.stderr.startswith(f"mta: message {message_id}: {why}"), result.stderr
    assert [r.address for r in envelope(mta_env, message_id).recipients] == ["a@example.org"]
    assert ok(mta_env.run("-Mar", message_id, "b@example.org", "Carol <c@example.net>")) == (
        f"Message {message_id} has been modified\n"
    )
    assert [r.address for r in envelope(mta_env, message_id).recipients] == [
        "a@example.org", "b@example.org", "c@example.net",
    ]
    assert log_for(mta_env, message_id)[1:] == [
        "recipient <b@example.org> added by root", "recipient <c@example.net> added by root",
    ]


def test_edit_sender(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    refused(mta_env.run("-Mes", message_id, "nobody"),
            f"message {message_id}: error while editing sender: bad address nobody: domain missing")
    assert ok(mta_env.run("-Mes", message_id, "<new@example.net>")) == f"Message {message_id} has been modified\n"
    assert envelope(mta_env, message_id).sender_address == "new@example.net"
    ok(mta_env.run("-Mes", message_id, "<>"))
    assert envelope(mta_env, message_id).sender_address == ""
    assert mta_env.run("-bp").stdout.splitlines()[0].endswith(f"{message_id} <>")
    assert log_for(mta_env, message_id)[1:] == [
        "sender address changed to <new@example.net> by root", "sender address changed to <> by root",
    ]


# -- viewing ----------------------------------------------------------------------------------------


def test_views_show_the_files_as_they_are(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org", body="caf\xe9 \x1b[2J\n")
    ok(mta_env.run("-Mf", message_id))
    spool = mta_env.spool
    assert raw(mta_env, "-Mvh", message_id) == (spool / "input" / f"{message_id}-H").read_bytes()
    body = raw(mta_env, "-Mvb", message_id)
    # As Exim's: the whole -D file, its first line included, bytes untouched when not a terminal.
    assert body == (spool / "input" / f"{message_id}-D").read_bytes()
    assert body.endswith("caf\xe9 \x1b[2J\n".encode())
    assert raw(mta_env, "-Mvl", message_id) == (spool / "msglog" / message_id).read_bytes()
    copy = ok(mta_env.run("-Mvc", message_id))
    headers, _, text = copy.partition("\n\n")
    assert headers.startswith("Received: from root by mail.example.com") and "\nSubject: q\n" in headers + "\n"
    assert text == "caf\xe9 \x1b[2J\n"


def test_views_need_no_lock(mta_env: MtaEnv) -> None:
    """As Exim's: reading is safe while a delivery runs (-H is replaced by rename only)."""
    message_id = submit(mta_env, "a@example.org")
    with Spool(mta_env.spool).lock(message_id):
        assert raw(mta_env, "-Mvh", message_id) == (mta_env.spool / "input" / f"{message_id}-H").read_bytes()


def test_view_refusals(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    (mta_env.spool / "msglog" / message_id).unlink()
    refused(mta_env.run("-Mvl", message_id), f"message {message_id} has no message log")
    refused(mta_env.run("-Mvh", MISSING), f"message {MISSING} is not on the spool")
    refused(mta_env.run("-Mvl", MISSING), f"message {MISSING} is not on the spool")
    mta_env.write_config("message_logs = false\n")
    refused(mta_env.run("-Mvl", message_id),
            f"message {message_id} has no message log (message_logs is false: none are written)")
