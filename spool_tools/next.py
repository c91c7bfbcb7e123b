"""mta-next: the retry records of an address, a domain or a message, as exinext shows them.

    mta-next [-C FILE] [--spool DIR] ADDRESS|DOMAIN|LOCALPART|MESSAGE-ID

    $ mta-next bob@example.net
    Transport: mx.example.net [192.0.2.5] error 111: Connection refused
      first failed: 22-Nov-2026 12:43:32
      last tried:   22-Nov-2026 12:43:53
      next try at:  22-Nov-2026 12:58:53
      past final cutoff time

As exinext: the address (``User@DOMAIN`` for a domain) is routed with the
configuration, as ``mta -bt`` would, to find the hosts mail for it goes to;
every retry record of those hosts is shown, whatever the port, and so is
every record whose key names the argument itself: the domain's or the
address's routing record (``Route:``), a local delivery's, an address's 4xx
at RCPT, or, for a message id, that message's own records on a host.  A
bare local part is qualified with qualify_recipient.  "past final cutoff
time" appears once the retry rules' last time has passed: the next failure
bounces.  Nothing found: ``No retry data found for ...`` (exit status 0, as
exinext).

Unlike exinext, the argument matches a key only as a whole part of it (after
``:``, ``@`` or ``[``, before ``:``, ``]`` or the end, ignoring case), not
anywhere as a regular expression: ``example.net`` finds
``R:bob@example.net`` but not ``T:mx.example.network:...``.

With ``--spool`` and no ``-C``, nothing is routed: only keys naming the
argument are found.  The retry database is read in one read transaction,
which no delivery waits for.
"""

from __future__ import annotations

import os
import sys

from mta.hints.db import HintsError
from mta.hints.retry_db import RETRY_DB, RetryDb, RetryRecord
from mta.spool.ids import is_message_id
from spool_tools.admin_command import ToolParser, UsageError, add_spool_options, load_configuration
from spool_tools.hints_databases import checked_spool, run_tool
from spool_tools.hints_records import HostKey, dump_time

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.config.loader import Config

PROG = "mta-next"
_BEFORE = frozenset(":@[")
_AFTER = frozenset(":]")


def build_parser() -> ToolParser:
    parser = ToolParser(PROG, "Show the retry records of an address, a domain or a message, as exinext does.",
                        epilog=__doc__.split("\n\n")[2], usage="%(prog)s [-C FILE] [--spool DIR] "
                        "ADDRESS|DOMAIN|LOCALPART|MESSAGE-ID")
    add_spool_options(parser, spool_help="the spool directory; without -C, nothing is routed")
    parser.add_argument("subject", metavar="ADDRESS|DOMAIN|LOCALPART|MESSAGE-ID")
    return parser


def route_hosts(config: Config, address: str, say: list[str]) -> list[tuple[str, str | None]]:
    """(host name, IP address) of each host the routers give `address`, as ``mta -bt`` routes it.

    A routing deferral is said as exinext repeats it from ``exim -bt``.
    """
    from mta.route.context import RoutingContext
    from mta.route.engine import RoutingEngine
    from mta.route.item import AddressItem
    from mta.runtime import build_runtime

    runtime = build_runtime(config)
    engine = RoutingEngine(runtime.directors, runtime.routers, config)
    ctx = RoutingContext(config, "", address_test=True, transports=runtime.transports)
    outcome = engine.route([AddressItem(address, original_index=0)], ctx)
    for item, error in outcome.deferred:
        say.append(f"{item.address} cannot be resolved at this time: {error.message}")
    return [(host.name.lower(), host.address) for item in outcome.accepted for host in item.hosts]


def names_subject(key: str, subject: str) -> bool:
    """Whether `subject` stands in `key` (after its ``R:``/``T:``) as a whole part of it."""
    body, wanted = key[2:].lower(), subject.lower()
    start = body.find(wanted)
    while start >= 0:
        end = start + len(wanted)
        if (start == 0 or body[start - 1] in _BEFORE) and (end == len(body) or body[end] in _AFTER):
            return True
        start = body.find(wanted, start + 1)
    return False


def on_host(key: str, hosts: list[tuple[str, str | None]]) -> bool:
    """Whether `key` is the retry record of one of `hosts` (on any port, as exinext)."""
    parsed = HostKey.parse(key)
    if parsed is None:
        return False
    return any(parsed.host.lower() == name and parsed.ip in (None, address) for name, address in hosts)


def record_lines(key: str, rec: RetryRecord) -> list[str]:
    """exinext's lines for one record."""
    error = f"error {rec.errno}: {rec.text}"
    parsed = HostKey.parse(key)
    if parsed is not None:
        where = parsed.host
        if parsed.ip is not None:
            where += f" [{parsed.ip}]"
        if parsed.port is not None:
            where += f":{parsed.port}"
        if parsed.message_id is not None:
            where += f" {parsed.message_id}"
        head = f"Transport: {where} {error}"
    else:
        kind = {"R": "Route: ", "T": "Transport: "}.get(key[:1], "")
        head = f"{kind}{key[2:]} {error}"
    lines = [
        head,
        f"  first failed: {dump_time(rec.first_failed)}",
        f"  last tried:   {dump_time(rec.last_try)}",
        f"  next try at:  {dump_time(rec.next_try)}",
    ]
    if rec.expired:
        lines.append("  past final cutoff time")
    return lines


def retry_data(spool: str, subject: str, config: Config | None) -> list[str]:
    """Everything mta-next prints for `subject`."""
    say: list[str] = []
    names: list[str] = []  # what a key must name, besides the hosts
    hosts: list[tuple[str, str | None]] = []
    local_part = "@" not in subject and "." not in subject
    if is_message_id(subject):
        names.append(subject)
    elif config is not None:
        if local_part:
            names.append(f"{subject}@{config.qualify_recipient}")
            address = names[-1]
        elif "@" in subject:
            local, _, domain = subject.rpartition("@")
            address = f"{local}@{domain.lower()}"
        else:
            address = f"User@{subject.lower()}"
        hosts = route_hosts(config, address, say)
        if not hosts and not local_part:
            say.append(f"No remote hosts found for {subject}")
    names.append(subject)
    path = os.path.join(spool, "db", RETRY_DB)
    records = RetryDb.for_spool(spool).dump() if os.path.isfile(path) else []
    found = False
    for key, rec in records:
        if on_host(key, hosts) or any(names_subject(key, name) for name in names):
            say += record_lines(key, rec)
            found = True
    if not found:
        say.append(f"No retry data found for {subject}")
    return say


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        subject = args.subject.strip()
        if not subject or any(ch.isspace() for ch in subject):
            raise UsageError(f"{args.subject!r} is not an address, a domain or a message id")
        config = load_configuration(args.config) if args.config is not None or args.spool is None else None
        spool = checked_spool(args.spool if args.spool is not None else config.main.spool_directory)  # type: ignore[union-attr]
        try:
            lines = retry_data(spool, subject, config)
        except HintsError as exc:
            raise HintsError(f"cannot read the retry database: {exc}") from None
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
