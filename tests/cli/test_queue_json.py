"""`mailq --json` / `mta -bp --json`: one JSON object per message, as Postfix's `postqueue -j`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from mta.spool.store import Spool
from tests.support.mta import MTA, MtaEnv
from tests.support.queue import change, submit
from tests.support.sink import free_port

MAILQ = str(Path(MTA).with_name("mailq"))


def mailq_json(env: MtaEnv, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run([MAILQ, "-C", str(env.config), "--json", *args], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert all(line.isascii() for line in result.stdout.splitlines())
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_objects_in_postqueue_shape(mta_env: MtaEnv) -> None:
    first = submit(mta_env, "a@example.org", "B@example.org", sender="alice@example.net")
    bounce = submit(mta_env, "c@example.org", sender="", body="x" * 2000 + "\n")
    now = int(time.time())
    change(mta_env, first, non_recipients={"B@example.org"}, frozen=now, deliver_firsttime=False)
    listed = mailq_json(mta_env)
    assert [m["queue_id"] for m in listed] == [first, bounce]
    sizes = [line.split(" S=")[1].split()[0] for line in mta_env.log_lines() if " <= " in line]
    assert listed[0] == {
        # Postfix's members, with Postfix's meaning: recipients are those still to be delivered.
        "queue_name": "hold",
        "queue_id": first,
        "arrival_time": Spool(mta_env.spool).read_envelope(first).received_time,
        "message_size": int(sizes[0]),
        "forced_expire": False,
        "sender": "alice@example.net",
        "recipients": [{"address": "a@example.org"}],
        # mta's own.
        "delivered_recipients": ["B@example.org"],
        "frozen": True,
        "frozen_since": now,
        "warning_count": 0,
    }
    assert list(listed[0])[:7] == ["queue_name", "queue_id", "arrival_time", "message_size", "forced_expire",
                                   "sender", "recipients"]
    assert (listed[1]["queue_name"], listed[1]["sender"], listed[1]["message_size"]) == ("incoming", "", int(sizes[1]))
    # -bpu: without the delivered ones.
    undelivered = mailq_json(mta_env, "-bpu")[0]
    assert undelivered["recipients"] == [{"address": "a@example.org"}] and "delivered_recipients" not in undelivered


def test_queue_names_and_delay_reason(mta_env: MtaEnv) -> None:
    mta_env.write_config(
        "begin routers\n"
        "smarthost:\n  driver = domainlist\n  transport = remote_smtp\n"
        f'  route_list = * "127.0.0.1::{free_port()}" byname\n  self = send\n'  # nothing listens there
        "begin transports\n"
        "remote_smtp:\n  driver = smtp\n  allow_localhost\n"
    )
    tried, fresh = submit(mta_env, "a@example.org"), submit(mta_env, "b@example.org")
    assert mta_env.run("-M", tried).returncode == 0
    by_id = {m["queue_id"]: m for m in mailq_json(mta_env)}
    assert by_id[tried]["queue_name"] == "deferred"
    (recipient,) = by_id[tried]["recipients"]
    assert recipient["delay_reason"].startswith("Connection refused"), recipient
    assert by_id[fresh]["queue_name"] == "incoming" and "delay_reason" not in by_id[fresh]["recipients"][0]
    with Spool(mta_env.spool).lock(fresh):  # as while a delivery runs
        assert {m["queue_id"]: m["queue_name"] for m in mailq_json(mta_env)}[fresh] == "active"


def test_unreadable_message_and_refused_combinations(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    (mta_env.spool / "input" / f"{message_id}-D").unlink()
    (listed,) = mailq_json(mta_env)
    assert listed == {"queue_name": "corrupt", "queue_id": message_id, "arrival_time": listed["arrival_time"],
                      "error": f"data file {message_id}-D is missing"}
    for args in (["-bpc", "--json"], ["-bpi", "--json"], ["-bt", "--json", "a@example.org"]):
        result = mta_env.run(*args)
        assert (result.returncode, result.stderr) == (
            1, "mta: --json is for listing the queue: mailq --json, or -bp/-bpr/-bpu --json\n"
        )
