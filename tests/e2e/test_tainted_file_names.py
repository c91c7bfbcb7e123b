"""Issue 11, point 6: the classic configurations work, and nothing tainted escapes its directory.

Exim 3's own examples name files after the local part:

    file = /var/spool/mail/${local_part}          (appendfile, one mbox per user)
    file = /etc/exim/lists/${local_part}          (forwardfile, a directory of lists)

A tainted value may appear in a file name only as exactly one whole path
component under an untainted absolute directory, with no "/", not "." or
"..", no leading "." and no control character.  Every test here submits
real messages with the real CLI (`mta -odi`) and then looks at the files
and the main log, as an administrator would; the directories are temporary.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import DOMAIN, E2E, LocalUser, message_text

TAINTED = "not permitted"

CONFIG = """\
never_users = root

begin directors

lists:
  driver = forwardfile
  local_part_prefix = list-
  file = {lists}/${{local_part}}
  no_check_local_user
  no_verify

classic:
  driver = smartuser
  transport = classic_mbox
  user = {owner}

begin transports

classic_mbox:
  driver = appendfile
  file = {spool_mail}/${{local_part}}
  mode = 0600
  headers_add = X-First: ${{if first_delivery{{yes}}{{no}}}}
"""


@pytest.fixture
def world(e2e: E2E) -> tuple[E2E, LocalUser, Path, Path]:
    owner = e2e.user("owner", home=False)
    spool_mail = e2e.root / "spool-mail"
    spool_mail.mkdir()
    spool_mail.chmod(0o1777)  # like /var/spool/mail
    lists = e2e.root / "lists"
    lists.mkdir(mode=0o755)
    (lists / "staff").write_text(f"team-a@{DOMAIN}, team-b@{DOMAIN}\n")
    (lists / ".hidden").write_text(f"stolen@{DOMAIN}\n")  # a leading dot must never be readable by name
    (e2e.root / "secret").write_text(f"leaked@{DOMAIN}\n")  # outside the lists directory
    for path in lists.iterdir():
        path.chmod(0o644)
    e2e.env.write_config(CONFIG.format(lists=lists, spool_mail=spool_mail, owner=owner.name))
    return e2e, owner, spool_mail, lists


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def deferrals(e2e: E2E, message_id: str) -> dict[str, str]:
    """address -> the reason of its "==" (deferred) log line."""
    out = {}
    for line in e2e.log_for(message_id):
        if line.startswith("== "):
            address, _, reason = line[3:].partition(" ")
            out[address] = reason
    return out


def test_classic_mailbox_per_local_part(world: tuple[E2E, LocalUser, Path, Path]) -> None:
    e2e, owner, spool_mail, _ = world
    e2e.submit(message_text(f"root@{DOMAIN}", f"alice@{DOMAIN}", "hi", "hello\n"), "-odi", f"alice@{DOMAIN}",
               f"Bob.Smith@{DOMAIN}")  # fmt: skip
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[-1] == "Completed", e2e.log_for(message_id)
    # Upper case is kept (as a case-sensitive file name) and stays inside the directory.
    assert sorted(os.listdir(spool_mail)) == ["Bob.Smith", "alice"]
    mbox = spool_mail / "alice"
    assert (mbox.stat().st_uid, stat.S_IMODE(mbox.stat().st_mode)) == (owner.uid, 0o600)
    assert "Subject: hi" in mbox.read_text()
    assert "X-First: yes" in mbox.read_text()  # the first_delivery condition, in a real delivery


ESCAPES = [
    ('".."', "dot-dot"),
    ('"."', "dot"),
    ('".profile"', "leading dot"),
    ('".FORWARD"', "leading dot, upper case"),
    ('"a/b"', "quoted local part with a slash"),
    ('"../../etc/passwd"', "quoted path"),
    ('"..\\/x"', "backslash-escaped slash"),
    ('"x\tz"', "control character (a real tab)"),
]


def test_escape_attempts_on_a_mailbox_are_refused(world: tuple[E2E, LocalUser, Path, Path]) -> None:
    e2e, _, spool_mail, _ = world
    recipients = [f"{local}@{DOMAIN}" for local, _ in ESCAPES]
    before = everything_under(e2e.root)
    e2e.submit(message_text(f"root@{DOMAIN}", "x", "escape", "body\n"), "-odi", *recipients)
    (message_id,) = e2e.received_ids()
    refused = deferrals(e2e, message_id)
    assert len(refused) == len(ESCAPES), e2e.log_for(message_id)
    for reason in refused.values():
        assert TAINTED in reason and "Tainted" in reason, reason
    # Nothing was created anywhere: not in the mailbox directory, not beside or above it.
    assert everything_under(e2e.root) - before == set()
    assert os.listdir(spool_mail) == []
    assert len(e2e.env.message_ids()) == 1  # the message waits on the queue for a fixed configuration


ENCODED = [
    ('"a%2F..%2F..%2Fetc%2Fpasswd"', "a%2F..%2F..%2Fetc%2Fpasswd"),
    ('"A%2f..%2fB"', "A%2f..%2fB"),
    ('"a..b"', "a..b"),
]


def test_encoded_slashes_are_only_characters(world: tuple[E2E, LocalUser, Path, Path]) -> None:
    # Nothing decodes %2F, so such a local part is one odd but harmless name inside the directory.
    e2e, _, spool_mail, _ = world
    e2e.submit(message_text(f"root@{DOMAIN}", "x", "encoded", "body\n"), "-odi",
               *[f"{local}@{DOMAIN}" for local, _ in ENCODED])  # fmt: skip
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[-1] == "Completed", e2e.log_for(message_id)
    assert sorted(os.listdir(spool_mail)) == sorted(name for _, name in ENCODED)
    assert all((spool_mail / name).is_file() for _, name in ENCODED)


def test_directory_of_lists(world: tuple[E2E, LocalUser, Path, Path]) -> None:
    e2e, _, spool_mail, _ = world
    e2e.submit(message_text(f"root@{DOMAIN}", "x", "to the list", "body\n"), "-odi", f"list-staff@{DOMAIN}")
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[-1] == "Completed", e2e.log_for(message_id)
    assert sorted(os.listdir(spool_mail)) == ["team-a", "team-b"]


LIST_ESCAPES = [
    ('"list-.."', "dot-dot"),
    ('"list-.hidden"', "leading dot (the file exists)"),
    ('"list-../secret"', "a slash out of the directory"),
    ('"LIST-../secret"', "upper case prefix"),
]


def test_escape_attempts_on_the_lists_directory(world: tuple[E2E, LocalUser, Path, Path]) -> None:
    e2e, _, spool_mail, _ = world
    recipients = [f"{local}@{DOMAIN}" for local, _ in LIST_ESCAPES]
    e2e.submit(message_text(f"root@{DOMAIN}", "x", "list escape", "body\n"), "-odi", *recipients)
    (message_id,) = e2e.received_ids()
    refused = deferrals(e2e, message_id)
    assert len(refused) == len(LIST_ESCAPES), e2e.log_for(message_id)
    for reason in refused.values():
        assert "tainted file name" in reason, reason
    # Neither the hidden list nor the file outside was read: nobody got their addresses.
    assert os.listdir(spool_mail) == []
