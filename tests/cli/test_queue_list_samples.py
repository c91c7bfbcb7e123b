"""`-bp` against Exim 4.96's own listing of the same spool files, `-bpr` order, and `D` at once.

Exim's sample spool (tests/data/exim-samples: a message with two of three
recipients delivered, a frozen bounce, a deferred bounce) is copied into
our spool; the listing must be Exim's bp.txt byte for byte once the ages
are the same (the samples were taken a while ago: their arrival time is
moved to now through the spool API).
"""

from __future__ import annotations

import os
import time

from mta.spool.store import Spool
from tests.support.mta import MtaEnv
from tests.support.queue import change, submit
from tests.support.samples import sample_text

SAMPLES = {"1xV6uq-0005Vj-1t": "spool-d-partial", "1xV6v0-0005WP-1f": "spool-c-bounce-frozen",
           "1xV6v2-0005WW-1k": "spool-c2-bounce-deferred"}


def install_samples(env: MtaEnv) -> None:
    (env.spool / "input").mkdir(parents=True)
    for message_id, name in SAMPLES.items():
        for suffix in ("H", "D"):
            (env.spool / "input" / f"{message_id}-{suffix}").write_text(sample_text(f"{name}-{suffix}.txt"))
        change(env, message_id, received_time=int(time.time()))


def without_status_line(sample: str) -> str:
    return sample.rsplit("# exit status", 1)[0]


def test_bp_is_exims(mta_env: MtaEnv) -> None:
    install_samples(mta_env)
    result = mta_env.run("-bp")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == without_status_line(sample_text("bp.txt"))
    assert mta_env.run("-bpc").stdout == without_status_line(sample_text("bpc.txt"))


def test_bpr_is_directory_order(mta_env: MtaEnv) -> None:
    install_samples(mta_env)
    for i in range(5):
        submit(mta_env, f"r{i}@example.org")
    listing = mta_env.run("-bpr").stdout
    blocks = listing.split("\n\n")[:-1]
    on_disk = [name[:-2] for name in os.listdir(mta_env.spool / "input") if name.endswith("-H")]
    assert [block.split()[2] for block in blocks] == on_disk
    assert sorted(blocks) == sorted(mta_env.run("-bp").stdout.split("\n\n")[:-1])
    # Exim's own -bpr of its three messages, in whatever order: the same blocks.
    exim = without_status_line(sample_text("bpr.txt")).split("\n\n")[:-1]
    assert set(exim) <= set(blocks)


def test_upper_case_recipient_is_delivered_at_once(mta_env: MtaEnv) -> None:
    """A delivery journals the routing key (lower-cased) and the recipient as -H spells it,
    so -bp shows D during the attempt (or after a crash), not only once -H is rewritten."""
    message_id = submit(mta_env, "Ann.Lee@Example.ORG", "bob@example.org")
    spool = Spool(mta_env.spool)
    with spool.lock(message_id):
        spool.append_journal(message_id, "ann.lee@example.org", "Ann.Lee@Example.ORG")
    assert mta_env.run("-bp").stdout.splitlines()[1:] == [
        "        D Ann.Lee@Example.ORG", "          bob@example.org", "",
    ]
    # The key alone (a journal written before the recipient's spelling was added) is not enough.
    (mta_env.spool / "input" / f"{message_id}-J").write_text("ann.lee@example.org\n")
    assert mta_env.run("-bp").stdout.splitlines()[1] == "          Ann.Lee@Example.ORG"
