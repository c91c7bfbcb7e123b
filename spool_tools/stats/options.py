"""mta-stats' command line: eximstats' options, spelt as eximstats spells them.

eximstats takes single-dash words with the value glued on (``-t10``,
``-h2``, ``-q60,300``, ``-nr/pattern/``, ``-html=report.html``), so
argparse cannot read them; this is eximstats' own loop, option for option,
plus ``-json[=FILE]``, ``-C FILE`` (``--config FILE``) and ``--spool DIR``
(spool_tools.admin_command).  Options end at the first argument that does
not start with ``-``; ``-`` alone is standard input.  Time lists (``-q``,
``-show_dt``, ``-show_rt``) may use ``+ - * /`` as eximstats allows (it
evaluates them as Perl; here a small arithmetic reader does, and nothing
else is accepted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spool_tools.admin_command import UsageError

DEFAULT_QUEUE_TIMES = [60, 5 * 60, 15 * 60, 30 * 60, 60 * 60, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600]
SENDER_KINDS = ("Host", "Domain", "Email", "Edomain")

HELP = """\
Usage: mta-stats [output] [options] [mainlog ...]

Reads mta's (or Exim's) main logs, plain or compressed, and prints eximstats'
report.  With no log named, the configuration's main log is read; '-' reads
standard input.

Output (several may be given; the default is -txt to standard output):
  -txt[=FILE]      plain text, as eximstats
  -html[=FILE]     one self-contained HTML page, charts drawn in SVG
  -json[=FILE]     the figures as one JSON object

Options (eximstats'):
  -h<number>       histogram divisions per hour (1, 2, 3, 5, 10, 15, 20, 30, 60); -h0: none
  -ne              no error list
  -nr              no relaying information; -nr/pattern/ hides relays that match
  -nt              no transport table; -nt/pattern/ ignores transports that match
  -nvr             no volume rounding (bytes, not KB/MB/GB)
  -t<number>       top <number> tables (default 50; -t0: none)
  -tnl             no local senders/destinations tables
  -t_remote_users  also remote users in the sender/destination tables
  -q<list>         queue time buckets in seconds (e.g. -q60,300,3600); -q0: none
  -show_dt[<list>] delivery times (needs log_selector +deliver_time)
  -show_rt[<list>] receipt times (needs log_selector +queue_time_overall)
  -include_original_destination   original recipients in the destination tables
  -byhost -bydomain -byemail -byedomain -bylocaldomain   which sender tables
  -pattern DESCRIPTION /REGEX/     count the lines that match
  -emptyok         no error when no log line was read
  -utc             the logs' time stamps are in UTC
  -C FILE          mta's configuration (finds the main log); also --config FILE
  --spool DIR      the spool (its log/mainlog)
"""


@dataclass
class StatsOptions:
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (txt|html|json, file or "-")
    hist_opt: int = 1
    show_errors: bool = True
    show_relay: bool = True
    relay_pattern: re.Pattern[str] | None = None
    show_transport: bool = True
    transport_pattern: re.Pattern[str] | None = None
    topcount: int = 50
    local_league_table: bool = True
    include_remote_users: bool = False
    include_original_destination: bool = False
    do_local_domain: bool = False
    do_sender: dict[str, bool] = field(default_factory=dict)
    queue_times: list[int] = field(default_factory=lambda: list(DEFAULT_QUEUE_TIMES))
    delivery_times: list[int] = field(default_factory=list)
    rcpt_times: list[int] = field(default_factory=list)
    volume_rounding: bool = True
    emptyok: bool = False
    utc: bool = False
    user_patterns: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    config_file: str | None = None
    spool: str | None = None
    files: list[str] = field(default_factory=list)
    help: bool = False

    @property
    def hist_interval(self) -> int:
        """Minutes per histogram slot."""
        return 60 // self.hist_opt if self.hist_opt else 60

    @property
    def hist_number(self) -> int:
        return 24 * 60 // self.hist_interval


def time_list(text: str | None, default: list[int] | None = None) -> list[int]:
    """eximstats' parse_time_list: sorted seconds; "0" alone means none."""
    if text is None:
        return list(DEFAULT_QUEUE_TIMES if default is None else default)
    times = sorted(_arithmetic(item) for item in text.split(","))
    if times == [0]:
        return []
    return times


def _arithmetic(text: str) -> int:
    """An integer expression of digits and + - * / (Perl's `use integer`): no eval."""
    tokens = re.findall(r"\d+|[-+*/]", text)
    if "".join(tokens) != text or not tokens:
        raise UsageError(f"bad time {text!r} in a time list (seconds, optionally with + - * /)")
    pos = 0

    def number() -> int:
        nonlocal pos
        sign = 1
        while pos < len(tokens) and tokens[pos] in "+-":
            sign = -sign if tokens[pos] == "-" else sign
            pos += 1
        if pos >= len(tokens) or not tokens[pos].isdigit():
            raise UsageError(f"bad time {text!r} in a time list")
        pos += 1
        return sign * int(tokens[pos - 1])

    def term() -> int:
        nonlocal pos
        value = number()
        while pos < len(tokens) and tokens[pos] in "*/":
            op = tokens[pos]
            pos += 1
            right = number()
            if op == "*":
                value *= right
            elif right == 0:
                raise UsageError(f"division by zero in time {text!r}")
            else:
                value = int(value / right)  # truncates toward zero, as C
        return value

    value = term()
    while pos < len(tokens):
        op = tokens[pos]
        pos += 1
        right = term()
        value = value + right if op == "+" else value - right
    return value


def _pattern(text: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(text, re.ASCII)
    except re.error as exc:
        raise UsageError(f"bad {what} pattern {text!r}: {exc}") from None


_DELIMITED = re.compile(r"(.?)(.*)\1\Z", re.DOTALL)


def parse_args(argv: list[str]) -> StatsOptions:
    opts = StatsOptions()
    args = list(argv)
    seen_outputs: set[str] = set()
    while args and args[0].startswith("-") and args[0] != "-":
        arg = args.pop(0)
        if arg in ("-h", "-help", "--help", "--h", "-?"):
            opts.help = True
            return opts
        if m := re.fullmatch(r"-h(\d+)", arg):
            opts.hist_opt = int(m.group(1))
        elif arg == "-ne":
            opts.show_errors = False
        elif arg.startswith("-nr") and (m := _DELIMITED.match(arg[3:])):
            if m.group(1) == "":
                opts.show_relay = False
            else:
                opts.relay_pattern = _pattern(m.group(2), "-nr")
        elif arg.startswith("-nt") and (m := _DELIMITED.match(arg[3:])):
            if m.group(1) == "":
                opts.show_transport = False
            else:
                opts.transport_pattern = _pattern(m.group(2), "-nt")
        elif m := re.fullmatch(r"-q([,\d+\-*/]+)", arg):
            opts.queue_times = time_list(m.group(1))
        elif m := re.fullmatch(r"-t(\d+)", arg):
            opts.topcount = int(m.group(1))
        elif arg == "-tnl":
            opts.local_league_table = False
        elif arg == "-t_remote_users":
            opts.include_remote_users = True
        elif m := re.fullmatch(r"-(txt|html|json)(?:=(\S*))?", arg):
            target = m.group(2) or "-"
            if target in seen_outputs:
                raise UsageError(f"you can only output to '{target}' once")
            seen_outputs.add(target)
            opts.outputs.append((m.group(1), target))
        elif arg in ("-xls",) or arg.startswith("-xls="):
            raise UsageError("-xls is not supported: use -json for machine-readable output")
        elif arg == "-merge":
            raise UsageError("-merge is not supported: give mta-stats all the logs to report on at once")
        elif arg == "-charts":
            pass  # the HTML report always has its charts (drawn as SVG in the page)
        elif arg in ("-chartdir", "-chartrel"):
            if not args:
                raise UsageError(f"{arg} needs a directory")
            args.pop(0)  # no chart files are written: the charts are inside the page
        elif arg == "-include_original_destination":
            opts.include_original_destination = True
        elif arg == "-cache":
            pass  # eximstats accepts and ignores it too
        elif arg in ("-byhost", "-bydomain", "-byemail", "-byemaildomain", "-byedomain"):
            kind = {"-byhost": "Host", "-bydomain": "Domain", "-byemail": "Email"}.get(arg, "Edomain")
            opts.do_sender[kind] = True
        elif arg == "-bylocaldomain":
            opts.do_local_domain = True
        elif arg == "-emptyok":
            opts.emptyok = True
        elif arg == "-nvr":
            opts.volume_rounding = False
        elif m := re.fullmatch(r"-show_rt([,\d+\-*/]+)?", arg):
            opts.rcpt_times = time_list(m.group(1))
        elif m := re.fullmatch(r"-show_dt([,\d+\-*/]+)?", arg):
            opts.delivery_times = time_list(m.group(1))
        elif arg == "-pattern":
            if len(args) < 2:
                raise UsageError("-pattern needs a description and a /pattern/")
            description, pattern = args.pop(0), args.pop(0)
            if len(pattern) >= 2 and pattern[0] == "/" and pattern[-1] == "/":
                pattern = pattern[1:-1]
            opts.user_patterns.append((description, _pattern(pattern, "-pattern")))
        elif arg == "-utc":
            opts.utc = True
        elif arg in ("-C", "--config", "--spool") or arg.startswith(("--config=", "--spool=")):
            name, glued, value = arg.partition("=")
            if not glued:
                if not args:
                    raise UsageError(f"{name} needs a {'directory' if name == '--spool' else 'configuration file'}")
                value = args.pop(0)
            if name == "--spool":
                opts.spool = value
            else:
                opts.config_file = value
        elif arg == "--":
            break
        else:
            raise UsageError(f"unknown or malformed option {arg}")
    if opts.hist_opt > 60 or (opts.hist_opt and 60 % opts.hist_opt):
        raise UsageError("-h must specify a factor of 60")
    if not opts.outputs:
        opts.outputs.append(("txt", "-"))
    if not any(opts.do_sender.values()):
        opts.do_sender["Host"] = True
    opts.files = args
    return opts
