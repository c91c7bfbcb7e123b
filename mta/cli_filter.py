"""`mta -bf FILE` and `mta -bF FILE`: test a user's filter or the system filter, as `exim -bf`/`-bF`.

A message is read from the standard input (headers up to a blank line, a
lone "." unless -i, or the end; then the body), and the filter is obeyed in
test mode: each command prints what it would do, in exim's words, and
nothing is delivered, written or sent.  -bF and -bf together run the system
filter first; its headers changes and $n0..$n9 (as $sn0..$sn9) are seen by
the user's filter, as in a real delivery.

    Return-path copied from sender
    Sender      = alice@example.com
    Recipient   = bob@example.org
    Testing Exim filter file "/home/bob/.forward"

    Deliver message to: bob@elsewhere.example
    Filtering set up at least one significant delivery or other action.
    No other deliveries will occur.

The address is the caller's login at qualify_domain unless -bfl (local
part), -bfd (domain), -bfp (prefix), -bfs (suffix) say otherwise; -f sets
the sender (anyone may, for a test).  A file that does not start with
"# Exim filter" is shown as a .forward list would be read.  Exit status 1
when the filter has an error, as Exim.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TextIO

from mta.cli_args import Invocation
from mta.config.loader import Config
from mta.errors import MtaError
from mta.expand.context import ExpandContext, HeaderLines
from mta.expand.expander import expand
from mta.route.filter import FilterEnv, FilterResult, FilterStatus, run_filter
from mta.taint import Tainted

# Exim's default uucp_from_pattern: a "From " line whose address becomes the sender.
_UUCP_FROM = re.compile(
    r"^From\s+(\S+)\s+(?:[a-zA-Z]{3},?\s+)?(?:[a-zA-Z]{3}\s+\d?\d|\d?\d\s+[a-zA-Z]{3}\s+\d\d(?:\d\d)?)\s+\d\d?:\d\d?"
)
# rda_is_filter(): the first line says what the file is.
FILTER_LINE = re.compile(r"\s*#\s*(exim|sieve)\s+filter", re.IGNORECASE)


class FilterTestError(MtaError):
    """-bf/-bF cannot run (a file cannot be read); the message is printed on standard error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def run_filter_test(inv: Invocation, config: Config, stdin: BinaryIO | None = None, out: TextIO | None = None) -> int:
    from mta.config.caller import current_caller
    from mta.receive.local import read_header_block

    stdin = stdin if stdin is not None else sys.stdin.buffer
    out = out if out is not None else sys.stdout
    texts = {
        kind: _read_filter(path)
        for kind, path in (("system", inv.filter_system), ("user", inv.filter_user))
        if path is not None
    }
    caller = current_caller()
    block = read_header_block(stdin, config.main.header_maxsize, inv.dot_ends)
    write = out.write
    sender = f"{caller.login}@{config.qualify_domain}"
    if inv.sender is not None:
        sender = "" if inv.sender.strip() in ("", "<>") else inv.sender
    elif block.from_line is not None:
        m = _UUCP_FROM.match(block.from_line)
        if m is not None:
            sender = m.group(1) if "@" in m.group(1) else f"{m.group(1)}@{config.qualify_domain}"
            write('Sender taken from "From " line\n')
    if not block.lines:
        write("Warning: no message headers read\n")
    return_path: str | None = None
    for line in block.lines:
        if line[:12].lower() == "return-path:":
            value = line[12:].strip(" \t\n\r\f\v")
            return_path = value[1:-1] if value.startswith("<") and value.endswith(">") else value
            write('Return-path taken from "Return-path:" header line\n')
    if return_path is None:
        write("Return-path copied from sender\n")
        return_path = sender
    else:
        write(f"Return-path = {return_path or '<>'}\n")
    write(f"Sender      = {sender or '<>'}\n")
    local_part = inv.filter_local_part if inv.filter_local_part is not None else caller.login
    domain = inv.filter_domain if inv.filter_domain is not None else config.qualify_domain
    prefix, suffix = inv.filter_prefix or "", inv.filter_suffix or ""
    recipient = f"{prefix}{local_part}{suffix}@{domain}"
    write(f"Recipient   = {recipient}\n")
    if inv.filter_prefix is not None:
        write(f"Prefix    = {prefix}\n")
    if inv.filter_suffix is not None:
        write(f"Suffix    = {suffix}\n")
    body = _read_body(stdin, block.body_start, dot_ends=inv.dot_ends and not block.message_ended)
    headers = [Tainted(line) for line in block.lines if line[:12].lower() != "return-path:"]
    _add_missing_headers(headers, config, caller, sender)
    separated = not block.message_ended and not block.body_start  # a blank line ended the headers
    variables = _variables(
        config,
        block.lines,
        body,
        sender,
        return_path,
        local_part,
        domain,
        prefix,
        suffix,
        caller.home,
        block.from_line,
        separated,
    )
    sn = [0] * 10
    for kind, path in (("system", inv.filter_system), ("user", inv.filter_user)):
        if path is None:
            continue
        text = texts[kind]
        is_filter = kind == "system" or FILTER_LINE.match(text)
        write(f'Testing {"Exim filter" if is_filter else "forward file"} file "{path}"\n\n')
        if not is_filter:
            return _forward_file(text, domain, config, write)
        names = dict(variables)
        if kind == "system":
            names["recipients"] = recipient
        result = _run(
            text,
            kind == "system",
            names,
            headers,
            config,
            write,
            local_part,
            domain,
            prefix,
            suffix,
            sender,
            return_path,
            sn,
        )
        if result.status is FilterStatus.ERROR:
            return 1
        sn = result.n
    return 0


def _run(
    text: str,
    system: bool,
    variables: Mapping[str, Any],
    headers: list[str],
    config: Config,
    write: Callable[[str], object],
    local_part: str,
    domain: str,
    prefix: str,
    suffix: str,
    sender: str,
    return_path: str,
    sn: list[int],
) -> FilterResult:
    from mta.config.variables import expansion_settings, list_matcher

    settings = expansion_settings(config)
    matcher = list_matcher(config)
    header_view = HeaderLines(lambda: headers)

    def expand_for_filter(text: str, extra: Mapping[str, Any]) -> str:
        names = dict(variables)
        names.update(extra)
        ctx = ExpandContext(variables=names, headers=header_view, match_list=matcher, **settings)  # type: ignore[arg-type]
        return expand(text, ctx)

    env = FilterEnv(
        expand=expand_for_filter,
        headers=headers,
        local_part=local_part,
        domain=domain,
        prefix=prefix,
        suffix=suffix,
        sender=sender,
        return_path=return_path,
        qualify_domain=config.qualify_recipient,
        system=system,
        allowed=frozenset({"defer", "fail", "freeze"}) if system else frozenset(),
        test=True,
        output=write,
        sn=sn,
    )
    return run_filter(text, env)


def _read_filter(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise FilterTestError(f"failed to open {path}: {exc.strerror}") from None


def _read_body(stdin: BinaryIO, start: bytes, dot_ends: bool) -> bytes:
    """The rest of the message: to the end, or to a line "." when dots end it (no unstuffing, as Exim)."""
    data = start + stdin.read()
    if not dot_ends:
        return data
    at = 0 if data.startswith(b".\n") else data.find(b"\n.\n")
    if data.startswith(b".\n"):
        return b""
    return data if at < 0 else data[: at + 1]


def _add_missing_headers(headers: list[str], config: Config, caller: Any, sender: str) -> None:
    """Exim's fixups of a local message: Message-Id:, From: and Date: when missing."""
    from mta.expand.context import time_variables
    from mta.spool.ids import new_message_id

    names = {line.split(":", 1)[0].strip().lower() for line in headers}
    if "message-id" not in names:
        headers.append(f"Message-Id: <E{new_message_id()}@{config.primary_hostname}>\n")
    if "from" not in names:
        own = f"{caller.login}@{config.qualify_domain}"
        headers.append(f"From: {caller.gecos} <{own}>\n" if caller.gecos else f"From: {own}\n")
    if "date" not in names:
        headers.append(f"Date: {time_variables()['tod_full']}\n")


def _variables(
    config: Config,
    lines: list[str],
    body: bytes,
    sender: str,
    return_path: str,
    local_part: str,
    domain: str,
    prefix: str,
    suffix: str,
    home: str,
    from_line: str | None,
    separated: bool,
) -> dict[str, Any]:
    from mta.config.variables import config_variables
    from mta.expand.variables import body_variables
    from mta.spool.ids import new_message_id

    message_id = new_message_id()
    head_size = sum(len(line.encode("utf-8", "surrogateescape")) for line in lines)
    if from_line is not None:
        head_size += len(from_line.encode("utf-8", "surrogateescape")) + 1  # Exim counts what it read
    variables: dict[str, Any] = dict(config_variables(config))
    variables.update(
        {
            "message_id": message_id,
            "message_exim_id": message_id,
            "message_size": str(head_size + (1 if separated else 0) + len(body)),
            "message_linecount": str(sum(line.count("\n") for line in lines) + 1),
            "sender_address": sender,
            "return_path": return_path,
            "local_part": Tainted(local_part),
            "domain": Tainted(domain),
            "local_part_prefix": Tainted(prefix),
            "local_part_suffix": Tainted(suffix),
            "original_local_part": Tainted(local_part),
            "original_domain": Tainted(domain),
            "home": home,
            **body_variables(lambda: body),
        }
    )
    return variables


def _forward_file(text: str, domain: str, config: Config, write: Callable[[str], object]) -> int:
    """A .forward that is not a filter: the addresses, pipes and files it gives, as exim -bf lists them."""
    from mta.errors import DeferError, FailError
    from mta.route.redirect import parse_redirect_list

    try:
        parsed = parse_redirect_list(
            text,
            source="forward file",
            incoming_domain=domain,
            qualify_domain=config.qualify_recipient,
            allow_pipe=True,
            allow_file=True,
            allow_include=True,
            allow_fail=True,
            allow_defer=True,
            allow_blackhole=True,
        )
    except FailError:
        write('exim: forward file contains ":fail:"\n')
        return 0
    except DeferError as exc:
        write(f"exim: error in forward file: {exc.message}\n")
        return 1
    if parsed.blackhole:
        write('exim: forwardfile contains ":blackhole:"\n')
    if not parsed.items:
        write("exim: no addresses generated from forward file\n")
        return 0
    write("exim: forward file generated:\n")
    for entry in reversed(parsed.items):
        write(f"  {entry.value}\n")
    return 0
