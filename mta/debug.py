"""Debug output on standard error: ``-d``, ``-d+selector-selector...`` and ``-v``, as Exim's.

    mta -bt -d+route user@example.com
    mta -be -d+expand+lookup '${lookup{x}lsearch{/etc/aliases}}'
    mta -v -odf user@example.org < message        (the SMTP dialogue only)

The process's setting lives here, in module globals set once by the
command line (`configure`), so that a daemon's children and a delivery's
forked processes inherit it.  `active` is the set of selectors that are on;
a caller tests it before it builds any text, which makes the cost of a
debug line, when debugging is off, one set look-up:

    from mta import debug
    ...
    if "route" in debug.active:
        debug.write(f"{driver.name} router: {verdict}")

or, for a line whose parts are cheap, ``debug.debug("route", "%s: %s", a, b)``
(the formatting happens only when the selector is on).

Selectors are Exim's names.  ``-d`` alone is Exim's default set (all but
expand, filter, interface, load, local_scan, memory, noutf8, pid and
timestamp); ``-d+expand`` adds to the default set, ``-d-all+acl`` starts from
nothing.  Names that mean nothing here are accepted and ignored; an unknown
name is an error (the command line reports it as a usage error).  Two
pseudo-selectors are internal: ``v`` (the SMTP dialogue of deliveries: ``-v``
sets it, and every ``-d`` set that has not removed ``all`` has it too, as
Exim's ``-d`` implies ``-v``) and ``any`` (lines Exim writes under D_any:
the configuration file read, the start-up line), on with any ``-d``.

``+pid`` prefixes each line with the process id (``%5d ``), ``+timestamp``
with ``HH:MM:SS.mmm `` (timestamp first, as Exim).

Security: lines go through mta.printable (no raw control characters reach
a terminal), and the values of options marked ``hide`` in the
configuration, and of the authenticators' secrets, are registered with
`register_secret`: an expansion whose input contains one is shown as
``<hidden>``, and so is everything it looks up (see `hidden`).
"""

from __future__ import annotations

import os
import sys

# Exim's debug selector names (4.9x).  Those with no effect in mta are accepted and ignored.
NAMES = frozenset(
    {
        "acl", "auth", "deliver", "dns", "dnsbl", "exec", "expand", "filter", "hints_lookup",
        "host_lookup", "ident", "interface", "lists", "load", "local_scan", "lookup", "memory",
        "noutf8", "pid", "process_info", "queue_run", "receive", "resolver", "retry", "rewrite",
        "route", "timestamp", "tls", "transport", "uid", "verify",
    }
)  # fmt: skip
# Names that print something in mta (the rest are accepted and ignored; docs/troubleshooting.md).
USED = frozenset(
    {"acl", "deliver", "expand", "lookup", "pid", "receive", "retry", "rewrite", "route", "timestamp", "transport"}
)
_ALL = NAMES | {"v"}
# Exim's D_default: everything but these.
DEFAULT = _ALL - {"expand", "filter", "interface", "load", "local_scan", "memory", "noutf8", "pid", "timestamp"}

# The process's setting.  Tested by callers before building a line: keep them module globals.
active: frozenset[str] = frozenset()
_stream = None  # where lines go; None: sys.stderr at the time of writing
_secrets: list[str] = []
_hidden_depth = 0


class SelectorError(ValueError):
    """An unknown or malformed debug selector."""


def parse(text: str) -> frozenset[str]:
    """The selectors of ``-d<text>``: "" is the default set; ``+name``/``-name`` change it."""
    selected = set(DEFAULT)
    rest = text
    while rest:
        sign = rest[0]
        if sign not in "+-":
            raise SelectorError(f'debug selector "{rest}" must start with + or - (e.g. -d+route+expand)')
        end = min((i for i in (rest.find("+", 1), rest.find("-", 1)) if i > 0), default=len(rest))
        name, rest = rest[1:end], rest[end:]
        if name == "all":
            names = _ALL
        elif name == "default":
            names = DEFAULT
        elif name in NAMES:
            names = frozenset({name})
        else:
            known = " ".join(sorted(NAMES | {"all", "default"}))
            raise SelectorError(f'unknown debug selector "{name}" (known: {known})')
        if sign == "+":
            selected |= names
        else:
            selected -= names
    if selected - {"v"}:
        selected.add("any")
    return frozenset(selected)


def configure(selectors: frozenset[str], verbose: bool = False, stream=None) -> None:  # type: ignore[no-untyped-def]
    """Set this process's debugging (-d selectors; -v adds the SMTP dialogue)."""
    global active, _stream
    active = frozenset(selectors | ({"v"} if verbose else set()))
    _stream = stream


def selector_text() -> str:
    """The setting as Exim's first debug line shows it (here as names, not a bit mask)."""
    names = sorted(active & NAMES)
    return "+" + "+".join(names) if names else "-all"


def debug(selector: str, text: str, *args: object) -> None:
    """Write `text` (``%`` formatted with `args`, only when on) if `selector` is on."""
    if selector in active:
        write(text % args if args else text)


def write(text: str) -> None:
    """Write one debug line (or several, separated by newlines), with the +timestamp/+pid prefix."""
    if _hidden_depth:
        return
    from mta.printable import printable

    prefix = ""
    if "timestamp" in active:
        import time

        now = time.time()
        prefix = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d} "
    if "pid" in active:
        prefix += f"{os.getpid():5d} "
    stream = _stream or sys.stderr
    try:
        for line in text.split("\n"):
            stream.write(prefix + printable(line) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # debugging never breaks the work (stderr closed, or a full disk)


def register_secret(text: str | None) -> None:
    """A value that must never be shown: expansions that contain it are shown as <hidden>."""
    if text and len(text) >= 2 and text not in _secrets:
        _secrets.append(text)


def is_secret(text: str) -> bool:
    return any(secret in text for secret in _secrets)


class hidden:
    """``with debug.hidden():`` nothing is written inside (a secret is being expanded)."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _hidden_depth
        _hidden_depth += 1

    def __exit__(self, *exc: object) -> None:
        global _hidden_depth
        _hidden_depth -= 1


def suppressed() -> bool:
    return _hidden_depth > 0
