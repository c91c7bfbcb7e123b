"""What kill -9 leaves on the spool is cleaned up (found by scripts/crash-test, issue 16).

Two faults, both leaving files in input/ or msglog/ for ever:

* Spool.tidy_temporaries existed, but nothing called it: a -D whose reception
  was killed, an hdr.ID, or the -D and -J of a removal cut short stayed. Now each
  queue run tidies what is older than spool_tidy_age (default a day).
* Removing a message unlinked its -H before its msglog, so a crash between the two
  left a message log without a message, which tidying (by design) leaves alone.
  Now the msglog goes first, as in Exim: a crash there leaves a message without
  its msglog, which the next attempt completes.
"""

from __future__ import annotations

import os
import time

from mta.spool.ids import new_message_id
from tests.support.durability import SyscallTrace
from tests.support.mta import MtaEnv


def leftover(env: MtaEnv, name: str, age: float) -> str:
    path = env.spool / "input" / name
    path.write_text(f"{name}\nleft by a crash\n")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return name


def test_queue_run_tidies_old_crash_leftovers(mta_env: MtaEnv) -> None:
    mta_env.write_config("spool_tidy_age = 1h\n")
    (mta_env.spool / "input").mkdir(parents=True)
    killed_reception, rewrite_temp, removal = new_message_id(), new_message_id(), new_message_id()
    old = [
        leftover(mta_env, f"{killed_reception}-D", 7200),
        leftover(mta_env, f"hdr.{rewrite_temp}", 7200),
        leftover(mta_env, f"{removal}-D", 7200),
        leftover(mta_env, f"{removal}-J", 7200),
    ]
    young = leftover(mta_env, f"{new_message_id()}-D", 60)  # perhaps a slow reception: not yet

    result = mta_env.run("-q")
    assert (result.returncode, result.stderr) == (0, "")
    assert mta_env.spool_files() == [young]
    logged = [line.split(" ", 2)[2] for line in mta_env.log_lines() if "crash leftover" in line]
    assert sorted(logged) == sorted(f"removed crash leftover input/{name}" for name in old)


def test_spool_tidy_age_zero_never_tidies(mta_env: MtaEnv) -> None:
    mta_env.write_config("spool_tidy_age = 0s\n")
    (mta_env.spool / "input").mkdir(parents=True)
    name = leftover(mta_env, f"{new_message_id()}-D", 10 * 86400)
    assert mta_env.run("-q").returncode == 0
    assert mta_env.spool_files() == [name]


def test_msglog_is_removed_before_the_header(mta_env: MtaEnv, syscall_trace: SyscallTrace) -> None:
    submitted = mta_env.run("-odq", "-f", "a@example.com", "b@example.com", input="Subject: x\n\nhello\n")
    assert submitted.returncode == 0, submitted.stderr
    (message_id,) = mta_env.message_ids()
    assert (mta_env.spool / "msglog" / message_id).exists()

    removed = mta_env.run("-Mrm", message_id, env=syscall_trace.env())
    assert removed.returncode == 0, removed.stderr
    unlinked = [os.path.relpath(e.path, mta_env.spool) for e in syscall_trace.events() if e.op == "unlink" and e.path]
    msglog, header = f"msglog/{message_id}", f"input/{message_id}-H"
    assert msglog in unlinked and header in unlinked, unlinked
    assert unlinked.index(msglog) < unlinked.index(header), unlinked
    assert mta_env.spool_files() == []
