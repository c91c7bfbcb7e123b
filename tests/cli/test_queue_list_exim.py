"""`mta -bp` and its variants against Exim 4.96's own `exim -bp...` on the very same spool.

The spool is made by the real mta (-odq -bS submissions), its state changed as a
delivery changes it (delivered and generated addresses, a -J journal, frozen,
arrival times, an untrusted sender), and each message then moved to an Exim
4.96 (16-character) id through mta.spool.format, since 4.96 does not know
the 23-character ids.  Exim (Debian's exim4, run with -C naming a small
configuration that points at this spool) and mta must then print the same
bytes.  -bpr is unsorted in both, in different ways (Exim inserts each
message at the top or the bottom at random, mta keeps directory order), so
it is compared as a set of messages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.spool.store import Spool
from tests.support.mta import MtaEnv
from tests.support.queue import ACCEPT_ALL_RCPT, change, old_form_id, rename_message, submit_batch

EXIM = "/usr/sbin/exim4"

pytestmark = pytest.mark.skipif(not os.access(EXIM, os.X_OK), reason=f"no {EXIM} to compare with")


@pytest.fixture(scope="module")
def shared_spool() -> Iterator[MtaEnv]:
    # A directory Exim can read once it drops to its own user for a -C it does not trust.
    root = Path(tempfile.mkdtemp(prefix="mta-exim-bp-"))
    root.chmod(0o755)
    env = MtaEnv(root)
    env.write_config(ACCEPT_ALL_RCPT)
    now = int(time.time())
    made = submit_batch(env, [
        ("alice@example.net", ["bob@example.org", "carol@example.org", "dave@example.net"], "Subject: a\n\nhi\n"),
        ("", ["ghost@example.com"], "Subject: b\n\n" + "x" * 3000 + "\n"),
        ("mallory@example.org", ["sales@example.com", "x@example.net"], "Subject: c\n\nhi\n"),
        ("root@example.com", ["big@example.org"], "Subject: d\n\n" + ("y" * 99 + "\n") * 1500),
        ("joe@example.org", ["j1@example.org", "j2@example.org"], "Subject: e\n\nhi\n"),
    ])
    changes: list[dict[str, object]] = [
        {"non_recipients": {"carol@example.org", "dave@example.net"}, "received_time": now - (25 * 60 + 30)},
        {"frozen": now, "received_time": now - (5 * 3600 + 10 * 60)},
        {"non_recipients": {"help@example.com", "alice@example.com"}, "sender_set_untrusted": True,
         "received_time": now - (4 * 86400 + 6 * 3600)},
        {"received_time": now - 100 * 86400},
        {},
    ]
    first_second = now - 1000
    for index, (message_id, fields) in enumerate(zip(made, changes, strict=True)):
        if fields:
            change(env, message_id, **fields)
        rename_message(env, message_id, old_form_id(first_second + index, 1000 + index, 3))
    # A delivery in progress (or cut short) has journalled j2: both list it as delivered.
    journalled = old_form_id(first_second + 4, 1004, 3)
    (env.spool / "input" / f"{journalled}-J").write_text("j2@example.org\n")
    (env.root / "exim.conf").write_text(
        f"spool_directory = {env.spool}\nprimary_hostname = mail.example.com\n"
        f"log_file_path = {env.root}/exim-%slog\nkeep_environment =\n"
    )
    for path in [env.spool, *env.spool.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield env
    shutil.rmtree(root, ignore_errors=True)


def listings(env: MtaEnv, option: str) -> tuple[str, str]:
    exim = subprocess.run([EXIM, "-C", str(env.root / "exim.conf"), option], capture_output=True, text=True,
                          timeout=30)
    assert exim.returncode == 0, exim.stderr
    mta = env.run(option)
    assert (mta.returncode, mta.stderr) == (0, ""), mta.stderr
    return mta.stdout, exim.stdout


@pytest.mark.parametrize("option", ["-bp", "-bpu", "-bpa", "-bpc"])
def test_listing_is_exims(shared_spool: MtaEnv, option: str) -> None:
    ours, exims = listings(shared_spool, option)
    assert ours == exims
    assert Spool(shared_spool.spool).list_message_ids()  # not two empty listings


def test_listing_shows_every_column(shared_spool: MtaEnv) -> None:
    """What the comparison covers: ages in minutes, hours and days, sizes in bytes, K and M-ish,
    the null sender, an untrusted sender's login, frozen, D and +D."""
    ours, _ = listings(shared_spool, "-bpa")
    firsts = [block.split("\n")[0] for block in ours.split("\n\n")[:-1]]
    assert [line[:4] for line in firsts] == ["25m ", " 5h ", " 4d ", "100d", " 0m "]
    assert firsts[1].endswith(" <> *** frozen ***") and re.search(r" \d\.\dK \S+ <>", firsts[1])
    assert firsts[2].endswith(" <mallory@example.org> (root)")
    assert re.search(r" 14\dK \S+ <root@example.com>$", firsts[3])
    assert "       +D alice@example.com\n       +D help@example.com\n" in ours
    assert "        D j2@example.org\n" in ours


@pytest.mark.parametrize("option", ["-bpr", "-bpru", "-bpra"])
def test_unsorted_listing_has_exims_messages(shared_spool: MtaEnv, option: str) -> None:
    ours, exims = listings(shared_spool, option)
    assert sorted(ours.split("\n\n")) == sorted(exims.split("\n\n"))
    on_disk = [name[:-2] for name in os.listdir(shared_spool.spool / "input") if name.endswith("-H")]
    assert [block.split()[2] for block in ours.split("\n\n")[:-1]] == on_disk  # directory order


def test_bpi_and_bpri(shared_spool: MtaEnv) -> None:
    """Exim 4.97 added -bpi (4.96 refuses it): the ids of -bp, and of -bpr, in their orders."""
    listing, _ = listings(shared_spool, "-bp")
    ids = [block.split()[2] for block in listing.split("\n\n")[:-1]]
    assert shared_spool.run("-bpi").stdout.split() == ids
    on_disk = [name[:-2] for name in os.listdir(shared_spool.spool / "input") if name.endswith("-H")]
    assert shared_spool.run("-bpri").stdout.split() == on_disk
