"""Queue listings in Exim's format: `-bp`, `-bpc`, `-bpr`, `-bpu`, `-bpi`, `-bpa`, and `mailq`.

Messages are made with the real CLI (-odq); their state (delivered
recipients, frozen, age) is changed the way the delivery code does it
(tests/support/queue.py), or by appending to the -J journal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spool_tools.queue_list import format_age, format_size
from tests.support.mta import MTA, MtaEnv
from tests.support.nobody import Nobody
from tests.support.queue import change, submit

MAILQ = str(Path(MTA).with_name("mailq"))

AGES = [
    (0, " 0m"),
    (59, " 0m"),
    (60, " 1m"),
    (25 * 60 + 59, "25m"),
    (90 * 60, "90m"),
    (90 * 60 + 59, "90m"),
    (91 * 60, " 2h"),  # (91 + 30) // 60
    (149 * 60, " 2h"),
    (150 * 60, " 3h"),
    (72 * 3600, "72h"),
    (72 * 3600 + 29 * 60, "72h"),
    (72 * 3600 + 30 * 60, " 3d"),  # 73 hours -> (73 + 12) // 24
    (83 * 3600 + 29 * 60, " 3d"),
    (83 * 3600 + 30 * 60, " 4d"),  # 84 hours -> (84 + 12) // 24
    (100 * 86400, "100d"),
    (-30, " 0m"),  # clock stepped back: never a negative age
]


@pytest.mark.parametrize(("seconds", "want"), AGES, ids=[f"{a[0]}s" for a in AGES])
def test_format_age(seconds: int, want: str) -> None:
    assert format_age(seconds) == want


SIZES = [
    (0, "     "),
    (1, "    1"),
    (1023, " 1023"),
    (1024, " 1.0K"),
    (1536, " 1.5K"),
    (10 * 1024 - 1, "10.0K"),
    (10 * 1024, "  10K"),
    (10 * 1024 + 511, "  10K"),
    (10 * 1024 + 512, "  11K"),  # Exim rounds whole K: (size + 512) / 1024
    (1024 * 1024 - 1, "1024K"),
    (1024 * 1024, " 1.0M"),
    (int(2.5 * 1024 * 1024), " 2.5M"),
    (10 * 1024 * 1024, "  10M"),
    (10 * 1024 * 1024 + 512 * 1024, "  11M"),
    (123 * 1024 * 1024, " 123M"),
]


@pytest.mark.parametrize(("size", "want"), SIZES, ids=[str(s[0]) for s in SIZES])
def test_format_size(size: int, want: str) -> None:
    assert format_size(size) == want


def size_of(env: MtaEnv, message_id: str) -> int:
    """S= of the message's arrival line."""
    line = next(line for line in env.log_lines() if f"{message_id} <= " in line)
    return int(line.split(" S=")[1].split()[0])


def bp(env: MtaEnv, flags: str = "", *args: str) -> str:
    result = env.run(f"-bp{flags}", *args)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def test_empty_queue(mta_env: MtaEnv) -> None:
    assert bp(mta_env) == ""
    assert bp(mta_env, "c") == "0\n"


def test_bp_one_message(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "bob@example.com", "carol@example.org")
    size = size_of(mta_env, message_id)
    assert bp(mta_env) == (
        f" 0m {format_size(size)} {message_id} <root@example.com>\n"
        "          bob@example.com\n"
        "          carol@example.org\n"
        "\n"
    )


def test_bp_sender_empty_and_size_columns(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "bob@example.com", sender="", body="x" * 3000 + "\n")
    first = bp(mta_env).splitlines()[0]
    assert first == f" 0m  {size_of(mta_env, message_id) / 1024:.1f}K {message_id} <>"


def test_delivered_recipients_marked_D_and_bpu(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org", "b@example.org", "c@example.org")
    change(mta_env, message_id, non_recipients={"a@example.org", "c@example.org"})
    lines = bp(mta_env).splitlines()
    assert lines[1:] == ["        D a@example.org", "          b@example.org", "        D c@example.org", ""]
    assert bp(mta_env, "u").splitlines()[1:] == ["          b@example.org", ""]


def test_journal_counts_as_delivered(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org", "b@example.org")
    (mta_env.spool / "input" / f"{message_id}-J").write_text("b@example.org\n")
    assert bp(mta_env).splitlines()[1:] == ["          a@example.org", "        D b@example.org", ""]
    assert bp(mta_env, "u").splitlines()[1:] == ["          a@example.org", ""]


def test_frozen(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    change(mta_env, message_id, frozen=int(time.time()))
    assert bp(mta_env).splitlines()[0].endswith(f" {message_id} <root@example.com> *** frozen ***")


def test_age_column_and_order(mta_env: MtaEnv) -> None:
    young = submit(mta_env, "a@example.org")
    old = submit(mta_env, "b@example.org")
    now = int(time.time())
    change(mta_env, old, received_time=now - 5 * 3600)
    change(mta_env, young, received_time=now - 4 * 86400)
    firsts = [line for line in bp(mta_env).splitlines() if line and not line.startswith(" " * 8)]
    # Sorted by arrival time as coded in the id (the order they came in), ages from -H.
    assert [line.split()[2] for line in firsts] == [young, old]
    assert firsts[0].startswith(" 4d ") and firsts[1].startswith(" 5h ")


def test_bpc_bpi_bpr_bpa(mta_env: MtaEnv) -> None:
    ids = [submit(mta_env, f"r{i}@example.org") for i in range(3)]
    assert bp(mta_env, "c") == "3\n"
    assert bp(mta_env, "i").splitlines() == ids
    unsorted = bp(mta_env, "r")
    assert sorted(unsorted.split("\n\n")) == sorted(bp(mta_env).split("\n\n"))
    assert bp(mta_env, "a") == bp(mta_env)
    assert bp(mta_env, "ra").count("\n\n") == 3


def test_bp_with_ids_lists_only_those(mta_env: MtaEnv) -> None:
    ids = [submit(mta_env, f"r{i}@example.org") for i in range(2)]
    out = bp(mta_env, "", ids[1])
    assert ids[1] in out and ids[0] not in out
    assert bp(mta_env, "c", ids[0]) == "1\n"


def test_blank_line_after_each_message(mta_env: MtaEnv) -> None:
    for i in range(3):
        submit(mta_env, f"r{i}@example.org")
    out = bp(mta_env)
    assert out.endswith("\n\n")
    assert [block.count("\n") for block in out.split("\n\n")[:-1]] == [1, 1, 1]


def test_unreadable_H_reported_in_listing(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    header = mta_env.spool / "input" / f"{message_id}-H"
    # A recipient count that is not a number: the strict reader refuses the file.
    header.write_text(header.read_text().replace("\nXX\n1\n", "\nXX\none\n", 1))
    first = bp(mta_env).splitlines()[0]
    assert first.startswith(" 0m       " + message_id + " *** spool read error: ")
    assert first.endswith(" ***")


def test_mailq_is_bp(mta_env: MtaEnv) -> None:
    submit(mta_env, "a@example.org", "b@example.org")
    result = subprocess.run([MAILQ, "-C", str(mta_env.config)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == bp(mta_env)
    assert result.stdout.count("@example.org") == 2


def test_queue_listing_is_for_administrators_and_the_spool_owner(open_env: MtaEnv, nobody: Nobody) -> None:
    queued = open_env.run("-odq", "someone@example.com", input="Subject: x\n\nhello\n")
    assert queued.returncode == 0, queued.stderr
    for args in (["-bp"], ["-M", open_env.message_ids()[0]]):
        refused = nobody.run(open_env, *args)
        assert refused.returncode == 1
        assert "permission denied: only administrators" in refused.stderr
    # A per-user instance: the user who owns the spool directory administers it.
    for path in [open_env.spool, *open_env.spool.rglob("*")]:
        os.chown(path, nobody.uid, nobody.gid)
    listing = nobody.run(open_env, "-bp")
    assert (listing.returncode, listing.stderr) == (0, "")
    assert "someone@example.com" in listing.stdout


def test_bP_n_prints_values_without_names(mta_env: MtaEnv) -> None:
    result = mta_env.run("-bP", "-n", "primary_hostname", "queue_only", "config_file")
    assert (result.returncode, result.stdout) == (0, f"mail.example.com\nno_queue_only\n{mta_env.config}\n")


def test_mailq_help_spool_option_ids_and_python_m(mta_env: MtaEnv) -> None:
    ids = [submit(mta_env, f"r{i}@example.org") for i in range(2)]
    usage = subprocess.run([MAILQ, "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: mailq [-C FILE | --spool DIR] ")
    # --spool: the spool itself, no configuration read (there is none at the default path here).
    for argv in ([MAILQ, "--spool", str(mta_env.spool), "-bpi"], [MAILQ, f"--spool={mta_env.spool}", "-bpi"],
                 [sys.executable, "-m", "spool_tools.queue_list", "--spool", str(mta_env.spool), "-bpi"]):
        listed = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert (listed.returncode, listed.stdout.split()) == (0, ids), listed.stderr
    both = mta_env.run("-bp", "--spool", str(mta_env.spool))
    assert both.returncode == 1 and "--spool DIR is for listing a spool without a configuration" in both.stderr
    # Ids are checked: either form is taken, anything else is an error, not an empty listing.
    assert bp(mta_env, "i", ids[1], "1xV6uq-0005Vj-1t") == ids[1] + "\n"
    malformed = mta_env.run("-bp", "1xV6uq-0005Vj")
    assert (malformed.returncode, malformed.stdout) == (1, "")
    assert malformed.stderr == ('mta: "1xV6uq-0005Vj" is not a message id (23 characters as mta makes them, '
                                "or Exim 4.96's 16, such as 1xV6uq-0005Vj-1t)\n")
