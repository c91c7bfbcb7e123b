"""What an expansion can see: variables, headers, lists, and what it may run.

The caller (a router, a transport, the `-be` command) builds an
`ExpandContext`; the expander only reads it.  The set of variable names the
language knows is fixed (variables.py), so that a typo in a configuration
(``$local_prt``) is an error rather than a silently empty string.
"""

from __future__ import annotations

import time

from mta import record

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

# A variable's value: text (possibly Tainted), None for "unset" (Exim's
# empty/zero/"no" for that variable), or a zero-argument callable computed
# only when the variable is used (message_body, say).  Integers are
# accepted for convenience (message_size, recipients_count).
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    VariableValue = str | int | None | Callable[[], "str | int | None"]


class HeaderLines:
    """The header lines of a message, for $h_, $rh_, $bh_, $lh_, $message_headers.

    `lines()` returns every live header as received ("Subject: hi\\n", with
    its folding), in order.  Calling the object with a lower-case name keeps
    the older hook's contract: all values of that header joined by "\\n", or
    None.  Header text is message data; the expander taints it whatever this
    returns.
    """

    def __init__(self, lines: Callable[[], Sequence[str]]) -> None:
        self._lines = lines

    def lines(self) -> Sequence[str]:
        return self._lines()

    def __call__(self, name: str) -> str | None:
        values = [
            line.split(":", 1)[1].rstrip("\n")
            for line in self._lines()
            if ":" in line and line.split(":", 1)[0].rstrip().lower() == name
        ]
        return "\n".join(values) if values else None


@record.dataclass(frozen=True, slots=True)
class ExpandPolicy:
    """What ${run} and ${readsocket} may do (main options expansion_run_commands,
    expansion_read_sockets, expansion_run_timeout, expansion_socket_timeout).

    run_as is the (uid, gid) a command runs as when the expanding process is
    root (the mta user in a daemon); None runs it as the process is.
    forbid names other items a filter file may be denied (its director's
    forbid_filter_* options): "readfile", "lookup", "exists".
    Off by default: a context that no configuration made cannot run anything.
    """

    run: bool = False
    readsocket: bool = False
    run_timeout: float = 60.0
    socket_timeout: float = 5.0
    run_as: tuple[int, int] | None = None
    forbid: frozenset[str] = frozenset()


@record.dataclass
class ExpandContext:
    """Everything `expand()` may read.

    variables   name -> value (see VariableValue).  A name in this mapping is
                always usable, even if the language does not know it.
    headers     a HeaderLines, or (older callers) name -> raw values joined by
                "\\n"; None when there is no message.
    match_list  (kind, subject, list) -> bool for the match_domain,
                match_address, match_local_part and match_ip conditions
                (kind is "domain", "address", "localpart" or "host").
    named_list  (kind, name) -> list text, for ${listnamed:}; kind as for
                match_list.
    policy      what ${run} and ${readsocket} may do.
    environment what ${env} reads and ${run} commands get: Exim's cleaned
                environment (keep_environment, add_environment); empty by default.
    """

    variables: Mapping[str, VariableValue] = record.field(default_factory=dict)
    headers: Callable[[str], str | None] | None = None
    match_list: Callable[[str, str, str], bool] | None = None
    named_list: Callable[[str, str], str | None] | None = None
    policy: ExpandPolicy = record.field(default_factory=ExpandPolicy)
    environment: Mapping[str, str] = record.field(default_factory=dict)
    first_delivery: bool = False  # the first_delivery condition
    queue_running: bool = False  # the queue_running condition


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _zone(offset_seconds: int) -> str:
    sign = "-" if offset_seconds < 0 else "+"
    minutes = abs(offset_seconds) // 60
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def time_variables(now: float | None = None) -> dict[str, str]:
    """The $tod_* variables for the time `now` (default: the current time).

    Local time, with English day and month names whatever the locale, in
    the formats of Exim's tod.c:

    tod_log       2026-11-22 12:42:54
    tod_full      Sun, 22 Nov 2026 12:42:54 +0000   (Date: and Received: headers)
    tod_bsdinbox  Sun Nov 22 12:42:54 2026          (mbox "From " lines)
    tod_epoch     seconds since 1970
    tod_epoch_l   microseconds since 1970
    tod_logfile   20261122                          (datestamped log names)
    tod_zone      +0000
    tod_zulu      20261122124254Z                   (UTC)
    """
    if now is None:
        now = time.time()
    t = time.localtime(now)
    u = time.gmtime(now)
    day, month = _DAYS[t.tm_wday], _MONTHS[t.tm_mon - 1]
    hms = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    zone = _zone(t.tm_gmtoff)
    return {
        "tod_log": f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {hms}",
        "tod_full": f"{day}, {t.tm_mday:02d} {month} {t.tm_year:04d} {hms} {zone}",
        "tod_bsdinbox": f"{day} {month} {t.tm_mday:02d} {hms} {t.tm_year:04d}",
        "tod_epoch": str(int(now)),
        "tod_epoch_l": str(int(now * 1_000_000)),
        "tod_logfile": f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}",
        "tod_zone": zone,
        "tod_zulu": (f"{u.tm_year:04d}{u.tm_mon:02d}{u.tm_mday:02d}{u.tm_hour:02d}{u.tm_min:02d}{u.tm_sec:02d}Z"),
    }
