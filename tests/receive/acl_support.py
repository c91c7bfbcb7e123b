"""Helpers for the ACL tests: a real configuration in a tmp dir, the real engine, a context as the session fills it.

    world = acl_world(tmp_path, acls="check:\n  accept hosts = 192.0.2.0/24\n", main="acl_smtp_rcpt = check")
    result = world.rcpt("user@example.com", host="192.0.2.1")
    result = world.run(AclStage.MAIL, sender="a@b.example")

Each call makes a fresh `AclContext` unless one is passed (to keep state
across RCPTs, as a session does), runs the engine with asyncio.run, and
returns the AclResult.  The logs are the real ones under the spool.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from mta.config.loader import load_config
from mta.receive.acl import AclContext, AclEngine, AclResult, AclStage
from mta.runtime import build_runtime

BASE = """\
spool_directory = {root}/spool
primary_hostname = mail.example.com
qualify_domain = example.com
domainlist local_domains = example.com : other.example.com
domainlist relay_to_domains = backup.example.net
hostlist relay_from_hosts = <; 192.0.2.0/24 ; 2001:db8:1::/48
"""

DIRECTORS = """
begin directors

system_aliases:
  driver = aliasfile
  file = {root}/aliases
  search_type = lsearch
  optional
  allow_fail
  allow_defer

localuser:
  driver = localuser
  transport = local_delivery
  cannot_route_message = Unknown user

begin routers

nearby:
  driver = domainlist
  transport = remote_smtp
  route_list = example.org 198.51.100.7 byname ; backup.example.net 198.51.100.7 byname

begin transports

remote_smtp:
  driver = smtp

local_delivery:
  driver = appendfile
  file = {root}/mail/$local_part_data
"""

ALIASES = """\
postmaster: root
list: root@example.com, nobody@example.com
fwd: root@example.com
gone: :fail: Gone away, no forwarding address
later: :defer: Mailbox being moved
far: someone@example.org
loop1: loop2
loop2: loop1
"""


@dataclasses.dataclass
class AclWorld:
    root: Path
    engine: AclEngine

    @property
    def mainlog(self) -> str:
        path = self.root / "spool" / "log" / "mainlog"
        return path.read_text() if path.exists() else ""

    @property
    def rejectlog(self) -> str:
        path = self.root / "spool" / "log" / "rejectlog"
        return path.read_text() if path.exists() else ""

    @property
    def paniclog(self) -> str:
        path = self.root / "spool" / "log" / "paniclog"
        return path.read_text() if path.exists() else ""

    def context(self, stage: AclStage = AclStage.RCPT, **fields: Any) -> AclContext:
        fields.setdefault("host_address", "203.0.113.9")
        fields.setdefault("helo_name", "client.example.net")
        if stage in (AclStage.RCPT, AclStage.PREDATA, AclStage.DATA):
            fields.setdefault("sender_address", "sender@example.net")
        return AclContext(stage, **fields)

    def run(
        self, stage: AclStage = AclStage.RCPT, acl: str | None = "", ctx: AclContext | None = None, **fields: Any
    ) -> AclResult:
        """Run the ACL the configuration names for `stage` (or `acl`, when given; None: unset)."""
        ctx = ctx or self.context(stage, **fields)
        if acl == "":
            return asyncio.run(self.engine.check(ctx))
        return asyncio.run(self.engine.run(acl, ctx))

    def rcpt(self, recipient: str, ctx: AclContext | None = None, **fields: Any) -> AclResult:
        if ctx is None:
            ctx = self.context(AclStage.RCPT, recipient=recipient, smtp_command=f"RCPT TO:<{recipient}>", **fields)
        else:
            ctx.stage, ctx.recipient, ctx.smtp_command = AclStage.RCPT, recipient, f"RCPT TO:<{recipient}>"
            ctx.rcpt_count += 1
        result = asyncio.run(self.engine.check(ctx))
        if result.accepted:
            ctx.recipients.append(recipient)
        return result


def acl_world(root: Path, acls: str, main: str = "", directors: str = DIRECTORS, aliases: str = ALIASES) -> AclWorld:
    """A configuration with `main` options and `acls` as its ACL section; the engine built from it."""
    (root / "aliases").write_text(aliases)
    (root / "mail").mkdir(exist_ok=True)
    text = BASE.format(root=root) + main + "\nbegin acl\n\n" + acls + "\n" + directors.format(root=root)
    path = root / "mta.conf"
    path.write_text(text)
    runtime = build_runtime(load_config(str(path)))
    return AclWorld(root, AclEngine(runtime))


def acl_line(k: int, main: str = "") -> int:
    """The line in the written file of line `k` (1-based) of the `acls` text."""
    return BASE.count("\n") + main.count("\n") + 3 + k


def config_error(root: Path, acls: str, main: str = "") -> str:
    """The ConfigError text the engine gives for this configuration (the test fails if there is none)."""
    from mta.errors import ConfigError

    try:
        acl_world(root, acls, main)
    except ConfigError as exc:
        return str(exc)
    raise AssertionError("no ConfigError")
