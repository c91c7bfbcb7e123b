"""Durability of local deliveries, recorded in the real `mta` and its delivery children.

Each delivered address is in -J (fsynced) before the next delivery starts,
so a crash between two deliveries never delivers twice; at the end -H is
rewritten durably before -J goes (tests/support/durability.py has the rules).
"""

from __future__ import annotations

from tests.e2e.conftest import DOMAIN, E2E, message_text
from tests.support.durability import (
    SyscallTrace,
    assert_committed,
    assert_deliveries_recorded,
    assert_header_rewritten,
    assert_journal_durable,
    exit_index,
)


def test_each_local_delivery_is_journalled_before_the_next(e2e: E2E, syscall_trace: SyscallTrace) -> None:
    alice, bob = e2e.user("alice"), e2e.user("bob")
    e2e.write_aliases("later: :defer: not yet\n")
    e2e.write_config()
    syscall_trace.roots.append(e2e.root)  # the mailboxes too
    proc = e2e.env.run(
        "-odi",
        "-f",
        alice.address,
        alice.address,
        bob.address,
        f"later@{DOMAIN}",
        input=message_text(alice.address, bob.address, "two and a later", "body\n"),
        env=syscall_trace.env(),
    )
    assert proc.returncode == 0, proc.stderr
    [message_id] = e2e.env.message_ids()  # kept for later@
    events = syscall_trace.events()
    main = next(e.pid for e in events if e.op == "start")
    ack = exit_index(events, main)
    assert_committed(events, message_id, ack=ack)
    journal = assert_journal_durable(events, message_id)
    assert len(journal) == 2
    assert len(assert_deliveries_recorded(events, message_id)) == 2
    # The mailbox writes happen in children; each child's first write comes after the journal line
    # of the delivery before it is durable.
    mailboxes = {str(e2e.mbox_path(alice)): 0, str(e2e.mbox_path(bob)): 1}
    first_touch = {}
    for event in events:
        if event.path in mailboxes and event.pid != main and event.path not in first_touch:
            first_touch[event.path] = event
    assert set(first_touch) == set(mailboxes), [str(e) for e in events]
    earlier, later = sorted(first_touch.values(), key=lambda e: e.index)
    journal_sync = next(
        e for e in events if e.index > journal[0].index and e.op == "fsync" and e.path == journal[0].path
    )
    assert earlier.index < journal[0].index < journal_sync.index < later.index, [str(e) for e in events]
    assert_header_rewritten(events, message_id, ack=ack)
    log = e2e.log_for(message_id)
    assert f"=> {alice.name} <{alice.address}> R=localuser T=local_mbox" in log
    assert f"=> {bob.name} <{bob.address}> R=localuser T=local_mbox" in log
