"""Issue 15, point 3: what trusted_users, trusted_groups and admin_groups let an ordinary user do.

Run as the real unprivileged user `nobody` (tests/support/nobody.py).  What is
already shown elsewhere is not repeated: an untrusted -f (test_submission.py),
-bp (tests/config/test_caller.py), -Mrm and the admin-only -M options on the
user's own message (test_message_permissions.py).  Here: -f once trusted, -q,
and reading or editing a message someone else sent, refused and then allowed
by admin_groups.
"""

from __future__ import annotations

import os

import pytest

from mta.spool.format import read_header_file
from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody, give_spool_to
from tests.support.queue import submit

SIMPLE = "From: boss@example.org\nSubject: hello\n\nbody line\n"


@pytest.mark.parametrize("how", ["trusted_users", "trusted_groups"])
def test_trusted_callers_set_the_sender_with_f(open_env: MtaEnv, nobody: Nobody, how: str) -> None:
    """Trusted: -f is the envelope sender, and no Sender: is added (the untrusted case adds one)."""
    who = "nobody" if how == "trusted_users" else str(nobody.gid)
    open_env.write_config(f"{how} = {who}\n")
    open_env.config.chmod(0o644)
    give_spool_to(open_env, nobody)
    result = nobody.run(open_env, "-odq", "-f", "boss@example.org", "bob@example.com", input=SIMPLE)
    assert (result.returncode, result.stderr) == (0, "")
    (message_id,) = open_env.message_ids()
    header = next((open_env.spool / "input").rglob(f"{message_id}-H"))
    envelope = read_header_file(header.read_bytes(), message_id)
    assert envelope.sender_address == "boss@example.org"
    assert not envelope.sender_set_untrusted
    assert not [h for h in envelope.headers if str(h.text).lower().startswith("sender:")]


@pytest.mark.parametrize("args", [["-q"], ["-qf"], ["-R", "example.com"], ["-S", "root"]], ids=str)
def test_queue_runs_are_for_administrators(open_env: MtaEnv, nobody: Nobody, args: list[str]) -> None:
    submit(open_env, "a@example.org")
    result = nobody.run(open_env, *args)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "mta: permission denied: only administrators may start a queue run\n"


def share_spool(env: MtaEnv, nobody: Nobody) -> None:
    """The spool readable and writable through nobody's group: only mta's rules decide."""
    for path in [env.spool, *env.spool.rglob("*")]:
        os.chown(path, -1, nobody.gid)
        os.chmod(path, 0o2770 if path.is_dir() else 0o660)


SOMEONE_ELSES = [
    ["-Mvh", "+"], ["-Mvb", "+"], ["-Mvl", "+"], ["-Mvc", "+"],
    ["-Mes", "+", "x@example.org"], ["-Mar", "+", "x@example.org"], ["-Mmd", "+", "a@example.org"],
    ["-Mf", "+"], ["-Mt", "+"], ["-Mg", "+"], ["-Mmad", "+"], ["-Mrm", "+"],
]


def test_someone_elses_message_cannot_be_read_edited_or_removed(open_env: MtaEnv, nobody: Nobody) -> None:
    theirs = submit(open_env, "a@example.org")  # sent by root
    share_spool(open_env, nobody)
    before = {p.name: p.read_bytes() for p in open_env.spool.rglob("*") if p.is_file() and theirs in p.name}
    for args in SOMEONE_ELSES:
        result = nobody.run(open_env, *[theirs if a == "+" else a for a in args])
        assert (result.returncode, result.stdout) == (1, ""), args
        assert result.stderr.startswith("mta: permission denied: "), (args, result.stderr)
    after = {p.name: p.read_bytes() for p in open_env.spool.rglob("*") if p.is_file() and theirs in p.name}
    assert after == before


def test_admin_groups_make_a_user_an_administrator(open_env: MtaEnv, nobody: Nobody) -> None:
    open_env.write_config(f"admin_groups = {nobody.gid}\n")
    open_env.config.chmod(0o644)
    theirs = submit(open_env, "a@example.org")
    share_spool(open_env, nobody)
    shown = nobody.run(open_env, "-Mvh", theirs)
    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout.startswith(f"{theirs}-H\n")
    frozen = nobody.run(open_env, "-Mf", theirs)
    assert (frozen.returncode, frozen.stdout, frozen.stderr) == (0, f"Message {theirs} is now frozen\n", "")
