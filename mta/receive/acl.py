"""INTERIM ACL engine, replaced by the full one from the daemon-acl branch.

Supports only the literal ACL names "accept" and "deny" and named ACLs of
accept/deny/require statements with hosts, domains and authenticated.
"""

from __future__ import annotations

import enum

from mta import record
from mta.config.lists import match_domain, match_host
from mta.config.variables import list_context

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class AclStage(enum.Enum):
    CONNECT = 1
    HELO = 2
    MAIL = 3
    RCPT = 4
    PREDATA = 5
    DATA = 6
    MIME = 7
    NOT_SMTP = 8
    VRFY = 9
    EXPN = 10
    ETRN = 11
    AUTH = 12
    QUIT = 13
    STARTTLS = 14


@record.dataclass
class AclContext:
    stage: AclStage
    host_address: str | None = None
    host_port: int | None = None
    host_name: str | None = None
    helo_name: str | None = None
    interface_address: str | None = None
    interface_port: int | None = None
    sender_address: str | None = None
    recipient: str | None = None
    recipients: list[str] = record.field(default_factory=list)
    authenticated_id: str | None = None
    authenticator: str | None = None
    tls_cipher: str | None = None
    received_protocol: str | None = None
    headers: Callable[[str], str | None] | None = None
    message_size: int | None = None
    smtp_command: str | None = None
    connection_vars: dict[str, str] = record.field(default_factory=dict)
    message_vars: dict[str, str] = record.field(default_factory=dict)
    trace: Callable[[str], None] | None = None


@record.dataclass
class AclResult:
    verb: str
    user_message: str | None = None
    log_message: str | None = None
    add_headers: list[str] = record.field(default_factory=list)
    code: str | None = None


class AclEngine:
    def __init__(self, runtime: Any) -> None:
        self.config = runtime.config
        self.lists = list_context(self.config)

    async def run(self, acl: str | None, ctx: AclContext) -> AclResult:
        if acl in ("accept", "deny"):
            return AclResult(acl)
        lines = self.config.acls.get(acl or "", [])
        statements: list[tuple[str, list[tuple[str, str]]]] = []
        for src in lines:
            text = src.text.strip()
            if not text or text.startswith("#"):
                continue
            first, _, rest = text.partition(" ")
            if first in ("accept", "deny", "require", "warn", "defer", "drop", "discard"):
                statements.append((first, []))
                text = rest.strip()
                if not text:
                    continue
            name, _, value = text.partition("=")
            statements[-1][1].append((name.strip(), value.strip()))
        for verb, conditions in statements:
            message = None
            ok = True
            for name, value in conditions:
                negate = name.startswith("!")
                name = name.lstrip("!").strip()
                if name == "message":
                    message = value
                    continue
                if name == "hosts":
                    hit = ctx.host_address is not None and match_host(ctx.host_address, None, value, self.lists).matched
                elif name == "domains":
                    domain = (ctx.recipient or "").rpartition("@")[2]
                    hit = match_domain(domain, value, self.lists).matched
                elif name == "authenticated":
                    hit = ctx.authenticated_id is not None
                else:
                    hit = True
                if hit == negate:
                    ok = False
                    break
            if verb == "require":
                if not ok:
                    return AclResult("deny", message)
                continue
            if ok:
                return AclResult(verb, message)
        return AclResult("deny")
