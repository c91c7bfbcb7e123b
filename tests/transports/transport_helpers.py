"""Building what a local transport is given: a message on disk, a delivery env, an address, a test user.

The env's expand() is the real expander over the variables the delivery code
provides (message, sender, time, and the address's own), so transports are
exercised exactly as in a delivery, with no stand-in of our own code.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mta.expand import ExpandContext, expand, time_variables
from mta.message.headers import parse_header_block
from mta.route.item import AddressItem
from mta.taint import Tainted
from mta.transports.base import DeliveryEnv, OutgoingMessage

HOSTNAME = "mail.example.com"
QUALIFY = "example.com"
MESSAGE_ID = "1xV6uN-0005TT-0O"

HEADERS = (
    "Received: from root by mail.example.com with local (mta)\n"
    "\t(envelope-from <carol@example.org>)\n"
    "\tid 1xV6uN-0005TT-0O;\n"
    "\tSun, 22 Nov 2026 12:43:03 +0000\n"
    "From: carol@example.org\n"
    "To: alice@example.com\n"
    "Subject: Lunch on Friday\n"
)
BODY = b"Are you free for lunch on Friday?\nFrom what I hear the new place is good.\n"


def make_message(
    directory: Path,
    body: bytes = BODY,
    headers: str = HEADERS,
    sender: str = "carol@example.org",
    message_id: str = MESSAGE_ID,
    size: int | None = None,
) -> OutgoingMessage:
    """A message whose body is a real file, read through open_body() as from the spool."""
    directory.mkdir(parents=True, exist_ok=True)
    body_path = directory / f"{message_id}-{uuid.uuid4().hex[:8]}-body"
    body_path.write_bytes(body)
    return OutgoingMessage(
        message_id=message_id,
        sender_address=sender,
        headers=parse_header_block(headers),
        received_time=1795351383.0,
        size=len(headers) + 1 + len(body) if size is None else size,
        open_body=lambda: open(body_path, "rb"),
        body_linecount=body.count(b"\n"),
    )


def make_env(now: float = 1795351401.0, home: str | None = None, **extra: Any) -> DeliveryEnv:
    """A DeliveryEnv whose expand() is the real expander with the delivery variables."""

    def expand_text(text: str, item: AddressItem | None = None, more: dict[str, Any] | None = None) -> str:
        variables: dict[str, Any] = {
            "primary_hostname": HOSTNAME,
            "qualify_domain": QUALIFY,
            "message_id": MESSAGE_ID,
            **time_variables(now),
            **extra.get("variables", {}),
        }
        if item is not None:
            variables.update(item.variables())
        if more:
            variables.update(more)
        return expand(text, ExpandContext(variables=variables))

    return DeliveryEnv(
        expand=expand_text,
        primary_hostname=HOSTNAME,
        qualify_domain=QUALIFY,
        now=now,
        home=home,
        extra={k: v for k, v in extra.items() if k != "variables"},
    )


def make_item(address: str = "alice@example.com", tainted: bool = True, **fields: Any) -> AddressItem:
    """An address as routing leaves it; its local part is tainted (it came from the envelope)."""
    local, _, domain = address.rpartition("@")
    item = AddressItem(Tainted(address) if tainted else address, **fields)
    item.local_part = Tainted(local) if tainted else local
    item.domain = Tainted(domain) if tainted else domain
    item.local_part_data = local  # as a director that matched a user or alias sets it: trusted
    return item


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (tests run as uid {os.geteuid()})")


def _useradd(name: str) -> pwd.struct_passwd:
    subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


@pytest.fixture
def mail_user() -> Iterator[pwd.struct_passwd]:
    """A real unprivileged user, created for the test and removed after it."""
    need_root("creating a user")
    name = f"mtat{uuid.uuid4().hex[:8]}"
    try:
        entry = _useradd(name)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"useradd failed: {exc}")
    try:
        yield entry
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is 0700 root): /tmp/mta-test-XXXX, mode 0711."""
    path = Path(tempfile.mkdtemp(prefix="mta-test-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def utc() -> Iterator[None]:
    """Run with TZ=UTC, as the Exim samples were made, so dates come out the same."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
