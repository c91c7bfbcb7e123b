"""An `unseen` director delivers a copy and lets the address go on: two deliveries of one address.

Each copy is recorded as delivered under its own key (the address and its
transport, Exim's homonyms), so when one copy is delivered and the other
deferred, the message stays on the queue and the next attempt delivers
only the deferred copy.  (Before, the first copy's key was the address
itself: the recipient counted as delivered and the deferred copy was lost
with a "Completed".)
"""

from __future__ import annotations

import os

from tests.e2e.conftest import DOMAIN, E2E, message_text


def test_deferred_copy_of_an_unseen_delivery_is_kept_and_delivered_once(e2e: E2E) -> None:
    pipe = e2e.user("pipe", home=False)
    state = e2e.root / "state"
    state.mkdir()
    os.chown(state, pipe.uid, pipe.gid)
    ready = e2e.root / "ready"
    archive = e2e.script("archive.sh", f"#!/bin/sh\ncat >/dev/null\necho copy >> {state}/archive\n")
    main = e2e.script("main.sh", f"#!/bin/sh\ncat >/dev/null\n[ -e {ready} ] || exit 75\necho copy >> {state}/main\n")
    e2e.write_config(
        directors="archive:\n  driver = smartuser\n  local_parts = bob\n  unseen\n  transport = archive_pipe\n\n"
        "main:\n  driver = smartuser\n  local_parts = bob\n  transport = main_pipe\n",
        transports=f"archive_pipe:\n  driver = pipe\n  command = {archive}\n  user = {pipe.name}\n\n"
        f"main_pipe:\n  driver = pipe\n  command = {main}\n  user = {pipe.name}\n  temp_errors = 75\n",
    )
    e2e.submit(message_text(f"alice@{DOMAIN}", f"bob@{DOMAIN}", "two copies", "body\n"), "-odi", f"bob@{DOMAIN}")
    (message_id,) = e2e.received_ids()
    assert e2e.env.message_ids() == [message_id]  # deferred copy: still queued, not "Completed"
    assert f"NN bob@{DOMAIN}/archive_pipe\n" in e2e.env.header_file(message_id)
    assert f"          bob@{DOMAIN}\n" in e2e.queue()  # not shown as delivered: one copy is pending

    ready.touch()
    assert e2e.env.run("-M", message_id).returncode == 0
    assert e2e.log_for(message_id)[-2:] == [f"=> bob <bob@{DOMAIN}> R=main T=main_pipe", "Completed"]
    assert (state / "archive").read_text() == "copy\n"  # not delivered again
    assert (state / "main").read_text() == "copy\n"
