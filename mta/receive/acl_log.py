"""Log lines and SMTP replies for ACL decisions, in Exim's shapes.

    host_and_ident(ctx, selectors)          'H=(helo) [192.0.2.1]' or 'U=alice'
    rejection_log_lines(result, ctx, ...)   the main-log line(s) of a rejection
    reject_log_details(ctx)                 what the reject log adds at DATA: envelope and headers
    rejection_reply(result, stage)          ('550', ['relay not permitted']) for the SMTP reply
    log_rejection(logger, result, ctx)      all of the above written where log_reject_target says

The line of a rejected RCPT, as Exim writes it to the main and reject logs::

    H=(client.example.org) [127.0.0.1] F=<carol@example.org> rejected RCPT <bob@example.net>: relay not permitted

Security: every field a client supplied (HELO, host name, sender, the
command's argument, the log message which may quote them) passes through
`mta.log.escape`, so a CR or LF can never start a forged log line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from mta.log import Logger, escape
from mta.message.headers import flag_for
from mta.receive.acl_types import AclContext, AclResult, AclStage

_DEFAULT_REJECT_TEXT = "Administrative prohibition"
_DEFAULT_DEFER_TEXT = "Temporary local problem - please try later"
_MAX_ENVELOPE_TO = 5


def same_ip(helo: str, address: str) -> bool:
    """Is the HELO an IP literal of the client's own address ([1.2.3.4], [IPv6:...])?"""
    if not (helo.startswith("[") and helo.endswith("]")):
        return False
    inner = helo[1:-1]
    if inner[:5].lower() in ("ipv6:", "ipv4:"):
        inner = inner[5:]
    try:
        return ipaddress.ip_address(inner) == ipaddress.ip_address(address)
    except ValueError:
        return False


def sender_fullhost(ctx: AclContext, selectors: frozenset[str] = frozenset()) -> str | None:
    """Exim's $sender_fullhost: ``name (helo) [ip]``; the HELO is left out when it says
    nothing new (it equals the verified name, or is the client's own IP literal).
    None for a local (non-TCP) session."""
    if ctx.host_address is None:
        return None
    address = f"[{ctx.host_address}]"
    if "incoming_port" in selectors and ctx.host_port is not None:
        address += f":{ctx.host_port}"
    helo = ctx.helo_name
    if helo is not None and same_ip(helo, ctx.host_address):
        helo = None
    name = ctx.host_name
    if name is not None and helo is not None and helo.lower() == name.lower():
        helo = None
    parts = [escape(name)] if name else []
    if helo is not None:
        parts.append(f"({escape(helo)})")
    parts.append(address)
    return " ".join(parts)


def host_and_ident(ctx: AclContext, selectors: frozenset[str] = frozenset()) -> str:
    """``H=<fullhost> [I=[iface]:port] [U=ident]``, or ``U=ident`` / ``U=unknown`` with no host."""
    fullhost = sender_fullhost(ctx, selectors)
    if fullhost is None:
        return "U=" + escape(ctx.ident or "unknown")
    text = "H=" + fullhost
    if "incoming_interface" in selectors and ctx.interface_address:
        text += f" I=[{ctx.interface_address}]"
        if ctx.interface_port is not None:
            text += f":{ctx.interface_port}"
    if ctx.ident:
        text += " U=" + escape(ctx.ident)
    return text


def _command_argument(ctx: AclContext) -> str:
    """What Exim logs after the command name: ``<address>`` for MAIL and RCPT, else the argument."""
    command = ctx.smtp_command or ""
    word, _, rest = command.strip().partition(" ")
    upper = command.upper()
    if upper.startswith(("MAIL FROM:", "RCPT TO:")):
        rest = command.split(":", 1)[1].strip()
        if rest.startswith("<") and ">" in rest:
            rest = rest[: rest.index(">") + 1]
        else:
            rest = rest.split(" ", 1)[0]
    elif ctx.stage is AclStage.AUTH:
        rest = rest.strip().split(" ", 1)[0]  # the mechanism only: never log credentials
    elif not word:
        rest = ""
    return rest.strip()[:100]


def _what(ctx: AclContext) -> str:
    stage = ctx.stage
    if stage is AclStage.PREDATA:
        return "DATA"
    if stage is AclStage.DATA:
        return "after DATA"
    if stage is AclStage.MIME:
        return "during MIME ACL checks"
    if stage is AclStage.NOT_SMTP:
        return "by non-SMTP ACL"
    if stage is AclStage.CONNECT or not ctx.smtp_command:
        return f'{stage.where_name} in "connect" ACL' if stage is AclStage.CONNECT else stage.where_name
    return f"{stage.where_name} {escape(_command_argument(ctx))}"


def rejection_log_lines(
    result: AclResult, ctx: AclContext, selectors: frozenset[str] = frozenset({"tls_cipher", "sender_verify_fail"})
) -> list[str]:
    """The main-log line(s) for a rejection (deny, drop or defer), Exim's smtp_handle_acl_fail.

    A failed sender verification first gets its own line
    (``... sender verify fail for <a@b>: Unknown user``) unless the
    sender_verify_fail selector is off (it is always written for a defer).
    """
    temporary = result.verb == "defer"
    lines: list[str] = []
    who = host_and_ident(ctx, selectors)
    failure = result.sender_verify_failure
    if failure is not None and (failure[2] or temporary or "sender_verify_fail" in selectors):
        address, reason, deferred = failure
        detail = f": {escape(reason)}" if reason else ""
        lines.append(f"{who} sender verify {'defer' if deferred else 'fail'} for <{escape(address)}>{detail}")
    tls = ""
    if ctx.tls_cipher and "tls_cipher" in selectors:
        tls = f" X={escape(ctx.tls_cipher)}"
        if "tls_certificate_verified" in selectors:
            tls += f" CV={'yes' if ctx.tls_certificate_verified else 'no'}"
    sender = ""
    if ctx.stage in (AclStage.RCPT, AclStage.DATA, AclStage.MIME, AclStage.NOT_SMTP):
        sender = f" F=<{escape(ctx.sender_address or '')}>"
        if ctx.authenticator:
            sender += f" A={escape(ctx.authenticator)}"
            if ctx.authenticated_id:
                sender += f":{escape(ctx.authenticated_id)}"
    reason = result.log_message
    # Only the first line of a multi-line message is logged (Exim).
    tail = f": {escape(reason.split(chr(10), 1)[0])}" if reason else ""
    if ctx.stage is AclStage.NOT_SMTP:
        lines.append(f"F=<{escape(ctx.sender_address or '')}> rejected by non-SMTP ACL{tail}")
        return lines
    lines.append(f"{who}{tls}{sender} {'temporarily ' if temporary else ''}rejected {_what(ctx)}{tail}")
    return lines


def reject_log_details(ctx: AclContext) -> list[str]:
    """What the reject log adds after a rejection once headers were read (DATA, MIME, non-SMTP):
    the envelope (up to five recipients) and every header line with its spool flag."""
    if ctx.header_lines is None:
        return []
    details: list[str] = []
    if ctx.recipients:
        details.append(f"Envelope-from: <{escape(ctx.sender_address or '')}>")
        details.append(f"Envelope-to: <{escape(ctx.recipients[0])}>")
        details += [f"    <{escape(r)}>" for r in ctx.recipients[1:_MAX_ENVELOPE_TO]]
        if len(ctx.recipients) > _MAX_ENVELOPE_TO:
            details.append("    ...")
    for line in ctx.header_lines():
        name = line.split(":", 1)[0]
        # A folded header is one detail line per physical line, each escaped on its own.
        first, *folds = line.rstrip("\n").split("\n")
        details.append(f"{flag_for(name)} {escape(first)}")
        details += [escape(fold) for fold in folds]
    return details


def rejection_reply(result: AclResult, stage: AclStage) -> tuple[str, list[str]]:
    """(code, text lines) for the reply to a deny, drop or defer.

    The code is the stage's (550, or 252 for VRFY, 458 for ETRN, 503 for
    AUTH; 451 for a defer) unless ``message =`` gave one of the same class,
    which may carry an enhanced status code ("550 5.7.1").  A defer's reason
    is shown only when a ``defer`` verb gave it (Exim's acl_temp_details).
    """
    temporary = result.verb == "defer"
    code = result.code or ("451" if temporary else stage.reject_code)
    if result.user_message:
        text = result.user_message
    else:
        text = _DEFAULT_DEFER_TEXT if temporary else _DEFAULT_REJECT_TEXT
    return code, text.split("\n")


def log_rejection(logger: Logger, result: AclResult, ctx: AclContext, selectors: frozenset[str] | None = None) -> None:
    """Write a rejection to the logs `result.log_reject_target` names (main and reject by default);
    at DATA the reject log also gets the envelope and the headers."""
    targets = result.log_reject_target
    if not targets:
        return
    lines = rejection_log_lines(result, ctx, selectors if selectors is not None else logger.selectors)
    details: Iterable[str] = ()
    if "rejected_header" in logger.selectors:
        details = reject_log_details(ctx)
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        if "reject" in targets:
            logger.reject(line, details if last else (), main="main" in targets)
        elif "main" in targets:
            logger.main(line)
        if "panic" in targets:
            logger.panic(line)
