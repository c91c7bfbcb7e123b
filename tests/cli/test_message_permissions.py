"""Who may act on queued messages, tested as the real unprivileged user `nobody`.

Exim's rule (queue.c): only administrators may freeze, thaw, give up on,
edit or read a queued message; the user who sent a message may also remove
it.  To see the rule itself at work, and not just file permissions, most
tests use a spool that nobody can read and write through its group (but
that does not make nobody an administrator); the last one uses the normal
spool, which nobody cannot open at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody
from tests.support.queue import submit


def share_spool(env: MtaEnv, nobody: Nobody) -> None:
    """Every spool file readable and writable by nobody's group, owner unchanged (root)."""
    for path in [env.spool, *env.spool.rglob("*")]:
        os.chown(path, -1, nobody.gid)
        os.chmod(path, 0o2770 if path.is_dir() else 0o660)


def submit_as(nobody: Nobody, env: MtaEnv, recipient: str) -> str:
    before = set(env.message_ids())
    result = nobody.run(env, "-odq", recipient, input="Subject: mine\n\nbody\n")
    assert result.returncode == 0, result.stderr
    (new,) = set(env.message_ids()) - before
    return new


ADMIN_ONLY = [
    (["-Mf"], "freeze messages"),
    (["-Mt"], "thaw messages"),
    (["-Mg"], "give up on messages"),
    (["-Mmad"], "mark messages delivered"),
    (["-Mar", "+", "x@example.org"], "add recipients"),
    (["-Mmd", "+", "a@example.org"], "mark recipients delivered"),
    (["-Mes", "+", "x@example.org"], "change a sender"),
    (["-Mvh"], "read queued messages"),
    (["-Mvb"], "read queued messages"),
    (["-Mvl"], "read queued messages"),
    (["-Mvc"], "read queued messages"),
]


@pytest.mark.parametrize(("args", "doing"), ADMIN_ONLY, ids=[a[0][0] for a in ADMIN_ONLY])
def test_only_administrators(open_env: MtaEnv, nobody: Nobody, args: list[str], doing: str) -> None:
    """Refused by the rule, even for nobody's own message in a spool nobody can write."""
    open_env.spool.mkdir(exist_ok=True)
    share_spool(open_env, nobody)
    own = submit_as(nobody, open_env, "a@example.org")
    header = open_env.header_file(own)
    words = [own if a == "+" else a for a in args] + ([] if "+" in args else [own])
    result = nobody.run(open_env, *words)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"mta: permission denied: only administrators may {doing}\n"
    )
    assert open_env.header_file(own) == header


def test_sender_may_remove_own_message_only(open_env: MtaEnv, nobody: Nobody) -> None:
    theirs = submit(open_env, "a@example.org")  # sent by root
    share_spool(open_env, nobody)
    own = submit_as(nobody, open_env, "b@example.org")
    assert open_env.header_file(own).split("\n")[1] == f"nobody {nobody.uid} {nobody.gid}"

    refused = nobody.run(open_env, "-Mrm", theirs)
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1, "",
        f"mta: permission denied: message {theirs} was not sent by you "
        "(only its sender or an administrator may remove it)\n",
    )
    removed = nobody.run(open_env, "-Mrm", own)
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, f"Message {own} has been removed\n", "")
    assert open_env.message_ids() == [theirs]
    assert [line.split(" ", 3)[3] for line in open_env.log_lines() if f" {own} " in line][-2:] == [
        "removed by nobody", "Completed",
    ]


def test_sender_cannot_remove_a_broken_message(open_env: MtaEnv, nobody: Nobody) -> None:
    """The -H says who sent it: without a readable one only an administrator may remove it."""
    open_env.spool.mkdir(exist_ok=True)
    share_spool(open_env, nobody)
    own = submit_as(nobody, open_env, "b@example.org")
    (Path(open_env.spool) / "input" / f"{own}-D").unlink()
    result = nobody.run(open_env, "-Mrm", own)
    assert result.returncode == 1
    assert result.stderr == f"mta: message {own} has no data file: only an administrator can remove it\n"
    assert open_env.message_ids() == [own]


def test_a_spool_nobody_cannot_open(open_env: MtaEnv, nobody: Nobody) -> None:
    """The normal spool (0750, root's) and no daemon to ask: nobody's -Mrm says why it cannot be done, and
    changes nothing.  (With a daemon: tests/daemon/test_user_submission.py.)"""
    message_id = submit(open_env, "a@example.org")
    result = nobody.run(open_env, "-Mrm", message_id)
    assert result.returncode == 1
    assert result.stderr.startswith("mta: cannot remove messages: only the mail daemon can change the spool")
    assert result.stderr.count("\n") == 1 and "ask an administrator" in result.stderr
    assert open_env.message_ids() == [message_id]
