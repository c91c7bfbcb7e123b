"""Crash safety: kill -9 in the middle of a delivery never delivers a recipient twice (issue 3).

A message has two local recipients: alice (an mbox) and slow@ (an alias to
a pipe that blocks until the test lets it go).  `mta -M` delivers alice,
journals her in -J, and starts the pipe; the test then SIGKILLs the whole
session (the mta process, its delivery child and the pipe command).  The
next `mta -M` must skip alice (read from -J) and deliver the pipe, the one
that was in flight, and then complete the message.
"""

from __future__ import annotations

import mailbox
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import DOMAIN, E2E, kill_session, message_text
from tests.support.mta import MTA


def wait_for(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def count_messages(path: Path) -> int:
    if not path.exists():
        return 0
    box = mailbox.mbox(path, create=False)
    try:
        return len(box)
    finally:
        box.close()


def start_delivery(e2e: E2E, message_id: str) -> subprocess.Popen[bytes]:
    """`mta -M id` in a session of its own, so that everything it starts can be killed with it."""
    return subprocess.Popen(
        [MTA, "-C", str(e2e.env.config), "-M", message_id],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


@pytest.mark.parametrize("first", ["mbox", "pipe", "mbox, upper case", "caseful director"])
def test_kill_9_between_two_local_deliveries_redelivers_neither(e2e: E2E, first: str) -> None:
    alice, pipe = e2e.user("alice"), e2e.user("pipe", home=False)
    state = e2e.root / "state"
    state.mkdir()
    os.chown(state, pipe.uid, pipe.gid)
    release = e2e.root / "release"
    started, delivered, first_out = state / "started", state / "slow.out", state / "first.out"
    blocking = e2e.script(
        "block.sh",
        "#!/bin/sh\n"
        "cat >/dev/null\n"
        f'echo "$$" >> {started}\n'
        f"while [ ! -e {release} ]; do sleep 0.05; done\n"
        f"echo delivered >> {delivered}\n",
    )
    appending = e2e.script("append.sh", f"#!/bin/sh\ncat >/dev/null\necho line >> {first_out}\n")
    e2e.write_aliases(f"slow: |{blocking}\nfirst: |{appending}\nteam: Caseful@{DOMAIN}\n")
    # A director that keeps the case of local parts: its routing key is "Caseful@...", and so
    # must the journal's be, or the alias's child would be delivered again after the crash.
    e2e.write_config(
        directors="caseful:\n  driver = smartuser\n  local_parts = Caseful\n  caseful_local_part\n"
        "  transport = caseful_pipe\n",
        transports=f"caseful_pipe:\n  driver = pipe\n  command = {appending}\n  user = {pipe.name}\n",
    )
    if first.startswith("mbox"):
        first_address = alice.address if first == "mbox" else alice.address.upper()
        first_line = f"=> {first_address.partition('@')[0]} <{first_address}> R=localuser T=local_mbox"
        # The routing key, then the recipient as -H spells it when that differs (for -bp's D).
        first_key = "\n".join(dict.fromkeys([alice.address, first_address]))

        def first_deliveries() -> int:
            return count_messages(e2e.mbox_path(alice))
    elif first == "caseful director":
        first_address = f"team@{DOMAIN}"
        first_line = f"=> Caseful <team@{DOMAIN}> R=caseful T=caseful_pipe"
        first_key = f"Caseful@{DOMAIN}"

        def first_deliveries() -> int:
            return len(first_out.read_text().splitlines()) if first_out.exists() else 0
    else:
        first_address = f"first@{DOMAIN}"
        first_line = f"=> |{appending} <first@{DOMAIN}> R=system_aliases T=address_pipe"
        first_key = f"|{appending}:first@{DOMAIN}"  # a pipe is journalled with its parent

        def first_deliveries() -> int:
            return len(first_out.read_text().splitlines()) if first_out.exists() else 0

    e2e.submit(message_text(alice.address, f"{first_address}, slow@{DOMAIN}", "twice?", "body\n"),
               "-odq", "-f", alice.address, first_address, f"slow@{DOMAIN}")
    (message_id,) = e2e.received_ids()
    journal = e2e.env.spool / "input" / f"{message_id}-J"
    header_before = e2e.env.header_file(message_id)

    proc = start_delivery(e2e, message_id)
    try:
        wait_for(lambda: first_deliveries() == 1 and journal.exists(), "the first delivery and -J")
        wait_for(started.exists, "the blocking pipe to start")
        assert proc.poll() is None, proc.communicate()
        # Meanwhile the message is locked: a second delivery leaves it alone.
        second = e2e.env.run("-M", message_id)
        assert (second.returncode, second.stderr) == (
            1, f"mta: message {message_id} is locked (being delivered by another process)\n"
        )
    finally:
        kill_session(proc.pid)
        proc.communicate(timeout=20)
    assert proc.returncode == -9

    # What the crash left: the first recipient journalled, -H untouched, the pipe never finished.
    assert journal.read_text() == first_key + "\n"
    assert e2e.env.header_file(message_id) == header_before
    assert e2e.log_for(message_id)[1:] == [first_line]
    assert not delivered.exists()
    listing = e2e.queue()
    if first.startswith("mbox"):
        # -bp reads -J: the recipient delivered before the crash is shown as delivered.
        assert f"        D {first_address}\n          slow@{DOMAIN}\n" in listing, listing
    else:
        assert f"slow@{DOMAIN}\n" in listing, listing

    release.touch()
    retry = e2e.env.run("-M", message_id)
    assert retry.returncode == 0, retry.stderr
    assert e2e.log_for(message_id)[2:] == [
        f"=> |{blocking} <slow@{DOMAIN}> R=system_aliases T=address_pipe",
        "Completed",
    ]
    assert first_deliveries() == 1  # not delivered again
    assert delivered.read_text() == "delivered\n"  # the delivery in flight was done, once
    assert len(started.read_text().split()) == 2  # killed once, run again once
    assert not journal.exists()
    assert e2e.queue() == ""
