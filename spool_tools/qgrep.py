"""`mta-qgrep`: select messages on the queue, as Exim's exiqgrep and exipick do.

    mta-qgrep -f '^<>$' -i | xargs mta -Mrm          every bounce, by id
    mta-qgrep -r '@example\\.net$' -o 3600            older than an hour, for example.net
    mta-qgrep -zc                                     how many are frozen
    mta-qgrep '$message_size > 1M' '$warning_count >= 2'
    mta-qgrep --or '$sender_host_address eq 127.0.0.1' '$received_protocol eq local'

exiqgrep's options select (-f sender, -r recipient, -s size, -y/-o age, -z
frozen, -x not frozen) and choose the output (long as -bp, -i ids, -b brief,
-c count, -R reverse, -a all recipients); exipick's conditions
(spool_tools.qgrep_conditions) select on any message variable
(spool_tools.qgrep_vars), joined by --and (the default) or --or, negated one
by one with a leading ! or all at once with --not.  Message ids among the
arguments (either form: mta's 23 characters or Exim 4.96's 16) restrict the
selection to those messages.

Reading.  The -H files are read as they are, without the lock a delivery
takes (Exim's rule for listings: -H is only ever replaced by a rename, so
a reader sees the old file or the new one).  A message delivered and removed
while we read is skipped; one whose -H cannot be read is reported on
standard error and skipped, as exipick does.

Output goes through mta.printable: a sender or header holding escape
sequences cannot repaint the terminal.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from mta.errors import SpoolError
from mta.spool.files import NoSuchMessage
from mta.spool.ids import is_message_id
from spool_tools.admin_command import (
    ToolError,
    ToolParser,
    UsageError,
    add_spool_options,
    caller_is_admin,
    load_spool,
    run_tool,
)
from spool_tools.qgrep_conditions import ConditionError, Criterion, compile_regex, matches, parse_condition
from spool_tools.qgrep_vars import MessageVariables, as_text, variable_type

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool

PROG = "mta-qgrep"

EPILOG = """\
conditions (exipick's, one per argument; quote them for the shell):
  $message_size > 10K       numeric: < <= > >= == !=, with d h m s K M B suffixes
  $sender_address eq a@b    text: eq ne;  regular expressions: =~ /re/i  !~ /re/  = re
  $deliver_freeze           boolean;  !$deliver_freeze negates any condition
  $each_recipients = \\.org$ the test on every recipient (also each_recipients_undel, _del)
variables: message_id message_size message_age received_time warning_count
  deliver_freeze first_delivery sender_address(_domain, _local_part) recipients(_del, _undel)
  recipients(_del, _undel)_count received_protocol sender_host_address sender_helo_name
  authenticated_id h_NAME: ... (docs/admin.md lists them all)
"""


def build_parser() -> ToolParser:
    parser = ToolParser(PROG, "Select messages on the mta queue (as Exim's exiqgrep and exipick).", EPILOG)
    add_spool_options(parser)
    select = parser.add_argument_group("selection (exiqgrep)")
    select.add_argument("-f", metavar="REGEX", dest="sender", help="sender matches (against <sender>; no case)")
    select.add_argument("-r", metavar="REGEX", dest="recipient", help="a recipient matches (no case)")
    select.add_argument("-s", metavar="REGEX", dest="size", help="the size as -bp shows it (1.5K) matches")
    select.add_argument("-y", metavar="SECONDS", dest="younger", help="younger than (also 90m, 2h, 1d)")
    select.add_argument("-o", metavar="SECONDS", dest="older", help="older than (also 90m, 2h, 1d)")
    select.add_argument("-z", action="store_true", dest="frozen", help="frozen messages only")
    select.add_argument("-x", action="store_true", dest="not_frozen", help="messages not frozen only")
    select.add_argument("-G", metavar="QUEUE", dest="named_queue", help=argparse.SUPPRESS)
    combine = parser.add_argument_group("conditions (exipick)")
    combine.add_argument("--and", action="store_true", dest="all_of", help="every condition must hold (the default)")
    combine.add_argument("--or", action="store_true", dest="any_of", help="one condition is enough")
    combine.add_argument("--not", action="store_true", dest="negate_all", help="negate every condition")
    combine.add_argument("--caseful", action="store_true", help="the = operator respects case")
    show = parser.add_argument_group("output")
    show.add_argument("-c", action="store_true", dest="count", help='"N matches out of M messages"')
    show.add_argument("-l", action="store_true", dest="long", help="as -bp (the default)")
    show.add_argument("-i", action="store_true", dest="ids", help="message ids only (for xargs mta -Mrm)")
    show.add_argument("-b", action="store_true", dest="brief", help="one line: id, sender, recipients")
    show.add_argument("-a", action="store_true", dest="all_recipients", help="delivered recipients too")
    show.add_argument("-R", "--reverse", action="store_true", help="newest first")
    show.add_argument("--unsorted", action="store_true", help="in the order the spool directory gives")
    show.add_argument("--show-vars", metavar="VAR,...", help="also print these variables of each message")
    parser.add_argument("words", nargs="*", metavar="CONDITION|ID", help="exipick conditions and message ids")
    return parser


def criteria_from(args: argparse.Namespace) -> tuple[list[Criterion], set[str]]:
    """The criteria the options and arguments ask for, and the message ids given."""
    criteria: list[Criterion] = []
    ids: set[str] = set()
    if args.named_queue is not None:
        raise UsageError("-G: mta has no named queues")
    if args.sender is not None:
        # exiqgrep matches "<sender>", so that -f '^<>$' finds the bounces.
        criteria.append(Criterion(f"-f {args.sender}", "sender_address", "=~", compile_regex("-f", args.sender),
                                  bracketed=True))
    if args.recipient is not None:
        listed = "recipients" if args.all_recipients else "recipients_undel"
        criteria.append(Criterion(f"-r {args.recipient}", listed, "=~", compile_regex("-r", args.recipient),
                                  each="any"))
    if args.size is not None:
        criteria.append(Criterion(f"-s {args.size}", "shown_message_size", "=~", compile_regex("-s", args.size, 0)))
    for option, value, operator in (("-y", args.younger, "<"), ("-o", args.older, ">")):
        if value is not None:
            criteria.append(Criterion(f"{option} {value}", "message_age", operator, float(_seconds(option, value))))
    if args.frozen:
        criteria.append(Criterion("-z", "deliver_freeze", None, None))
    if args.not_frozen:
        criteria.append(Criterion("-x", "deliver_freeze", None, None, negate=True))
    for word in args.words:
        if word.lstrip().startswith(("$", "!")):
            criteria.append(parse_condition(word, caseful=args.caseful))
        elif is_message_id(word):
            ids.add(word)
        elif re.fullmatch(r"[0-9A-Za-z]+(?:-[0-9A-Za-z]+)*", word):
            raise UsageError(f'"{word}" is not a message id (23 characters as mta makes them, '
                             "or Exim 4.96's 16, such as 1xV6uq-0005Vj-1t)")
        else:
            raise ConditionError(f'condition "{word}" did not parse: it must start with a $variable')
    return criteria, ids


def _seconds(option: str, text: str) -> int:
    from mta.values import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(f'{option}: "{text}" is not a number of seconds (or a time such as 90m, 2h, 1d)') from None


def show_variables(args: argparse.Namespace) -> list[str]:
    names = [name.strip().lstrip("$").rstrip(":").lower() for name in (args.show_vars or "").split(",")]
    names = [name for name in names if name]
    for name in names:
        if variable_type(name) is None:
            raise UsageError(f"--show-vars: unknown variable ${name}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_tool(PROG, lambda: select(parser.parse_args(sys.argv[1:] if argv is None else argv), sys.stdout))


def select(args: argparse.Namespace, out: TextIO) -> int:
    if args.ids + args.brief + args.count > 1:
        raise UsageError("choose one of -i, -b and -c")
    if args.all_of and args.any_of:
        raise UsageError("choose --and or --or, not both")
    criteria, wanted = criteria_from(args)
    shown = show_variables(args)
    config, spool = load_spool(args)
    if config is not None and config.main.queue_list_requires_admin and not caller_is_admin(config):
        raise ToolError("permission denied: only administrators may list the queue")
    try:
        message_ids = spool.list_message_ids(ordered=not args.unsorted)
    except SpoolError as exc:
        raise ToolError(f"cannot list the queue: {exc}") from None
    if wanted:
        message_ids = [i for i in message_ids if i in wanted]
    if args.reverse:
        message_ids.reverse()
    now = time.time()
    total = chosen = 0
    for message_id in message_ids:
        read = _read(spool, message_id)
        if read is None:
            continue
        envelope, journal = read
        total += 1
        variables = MessageVariables(spool, envelope, now, journal)
        if not matches(criteria, variables, any_of=args.any_of, negate_all=args.negate_all):
            continue
        chosen += 1
        if not args.count:
            out.write(_format(args, variables, shown))
    if args.count:
        out.write(f"{chosen} matches out of {total} messages\n")
    return 0


def _read(spool: Spool, message_id: str) -> tuple[Envelope, list[str]] | None:
    """The message's envelope and journal, or None (gone meanwhile, or unreadable: said on stderr)."""
    try:
        return spool.read_envelope(message_id), spool.read_journal(message_id)
    except NoSuchMessage:
        return None  # delivered and removed while we read
    except SpoolError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{PROG}: cannot read message {message_id}: {exc}\n")
        return None


def _format(args: argparse.Namespace, variables: MessageVariables, shown: list[str]) -> str:
    envelope = variables.envelope
    values = [(name, as_text(variables.value(name))) for name in shown]
    if args.ids:
        return envelope.message_id + "".join(f" {name}='{value}'" for name, value in values) + "\n"
    if args.brief:
        listed = variables.addresses("recipients" if args.all_recipients else "recipients_undel")
        line = f"{envelope.message_id} From: <{envelope.sender_address}> To: {';'.join(listed)}"
        if values:
            line += " Vars: " + ";".join(f"{name}='{value}'" for name, value in values)
        return line + "\n"
    from spool_tools.queue_list import format_message

    # exiqgrep lists what exim -bpu does (pending recipients), -a what exim -bp does.
    extra = [f"  {name:>25} = '{value}'" for name, value in values]
    return format_message(envelope, variables.size, variables.delivered, variables.now,
                          undelivered_only=not args.all_recipients, extra_lines=extra)


if __name__ == "__main__":
    sys.exit(main())
