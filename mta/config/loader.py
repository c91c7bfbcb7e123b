"""Reading the configuration file.

Syntax (Exim's): main options first, then sections opened by ``begin NAME``.
Lines ending in a backslash continue on the next line (its leading white
space dropped; comment lines in between are skipped); lines whose first
non-blank character is ``#`` are comments.  ``NAME = value`` with a capital
first letter defines a macro, substituted (as a whole word) in every later
line; ``-D NAME=value`` on the command line overrides a definition in the
file, and ``NAME == value`` redefines one.  ``.include FILE``,
``.include_if_exists FILE``, ``.ifdef NAME`` / ``.ifndef NAME`` /
``.elifdef`` / ``.else`` / ``.endif`` are directives.

Every error raises ConfigError naming the file and line.
"""

from __future__ import annotations

import os

from mta import debug as _debug
from mta import record
from mta.config.main import MainOptions
from mta.config.options import OptionSetting, build_options
from mta.errors import ConfigError
from mta.lazy_pattern import lazy_compile

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Iterator

SECTIONS = ("acl", "directors", "routers", "transports", "retry", "rewrite", "authenticators", "local_scan")
DRIVER_SECTIONS = ("directors", "routers", "transports", "authenticators")

_MACRO_DEF = lazy_compile(r"([A-Z][A-Za-z0-9_]*)\s*(==?)\s*(.*)$", 16)  # re.S
_MACRO_NAME = lazy_compile(r"[A-Z][A-Za-z0-9_]*")
# A macro name used: a whole word, and not inside a longer identifier such as $h_X.
_MACRO_USE = lazy_compile(r"(?<![A-Za-z0-9_$])[A-Z][A-Za-z0-9_]*")
_MAX_INCLUDE_DEPTH = 20

# The lines of a configuration are told apart with str methods, not regular expressions: compiling
# those cost every command 1-1.5 ms before it read a line (a sendmail -t is some 30 ms in all).
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_WORD = frozenset(_LOWER + _LOWER.upper() + "0123456789_")
_SECTION_NAME = frozenset(_LOWER + _LOWER.upper() + "_")
_OPTION_NAME = frozenset(_LOWER + "0123456789_")
_INSTANCE_NAME = _WORD | frozenset(".-")
_LIST_KINDS = frozenset({"domainlist", "hostlist", "addresslist", "localpartlist"})


def _begun_section(stripped: str) -> str | None:
    """NAME from a ``begin NAME`` line (either word in any case), else None."""
    words = stripped.split()
    if len(words) != 2 or words[0].lower() != "begin" or not _SECTION_NAME.issuperset(words[1]):
        return None
    return words[1]


def _named_list(stripped: str) -> tuple[str, str, str] | None:
    """(kind, name, value) of ``domainlist NAME = value`` (hostlist ..., a _cache suffix allowed)."""
    words = stripped.split(None, 1)
    if len(words) != 2 or words[0].removesuffix("_cache") not in _LIST_KINDS:
        return None
    name, equals, value = words[1].partition("=")
    name = name.rstrip()
    if not equals or not name or not _WORD.issuperset(name):
        return None
    return words[0].removesuffix("_cache"), name, value


def _instance(stripped: str) -> tuple[str, str] | None:
    """(name, rest) of a ``name:`` line that starts a driver or an ACL (rest: what follows the colon)."""
    name, colon, rest = stripped.partition(":")
    name = name.rstrip()
    if not colon or not name or name[0] not in _WORD or not _INSTANCE_NAME.issuperset(name):
        return None
    return name, rest


def _option(text: str) -> tuple[bool, str, str | None] | None:
    """(hidden, name, value or None) of ``[hide] name [= value]``."""
    head, equals, value = text.partition("=")
    words = head.split()
    hidden = len(words) == 2 and words[0] == "hide"
    if hidden:
        del words[0]
    if len(words) != 1 or words[0][0] not in _LOWER or not _OPTION_NAME.issuperset(words[0]):
        return None
    return hidden, words[0], value if equals else None


@record.dataclass(frozen=True, slots=True)
class SourceLine:
    text: str
    path: str
    line: int


@record.dataclass(slots=True)
class NamedList:
    list_type: str  # domainlist, hostlist, addresslist, localpartlist
    name: str
    value: str
    path: str
    line: int


@record.dataclass(slots=True)
class DriverSpec:
    """A driver instance as written: its name, where, and its option lines."""

    section: str
    name: str
    path: str
    line: int
    settings: list[OptionSetting] = record.field(default_factory=list)

    @property
    def driver(self) -> str | None:
        for s in self.settings:
            if s.name == "driver":
                return (s.value or "").strip()
        return None


@record.dataclass(slots=True)
class Config:
    """A parsed configuration file.

    `main` holds the main options; `named_lists`, `acls`, `retry_rules`,
    `rewrite_rules` and `drivers` hold the rest as read, for the modules that
    own those parts to interpret.
    """

    path: str
    main: MainOptions
    main_hidden: set[str]
    macros: dict[str, str]
    named_lists: dict[str, NamedList]
    acls: dict[str, list[SourceLine]]
    retry_rules: list[SourceLine]
    rewrite_rules: list[SourceLine]
    drivers: dict[str, list[DriverSpec]]
    primary_hostname: str = ""
    qualify_domain: str = ""
    qualify_recipient: str = ""

    @property
    def spool_directory(self) -> str:
        return self.main.spool_directory

    def named_list(self, list_type: str, name: str) -> str | None:
        entry = self.named_lists.get(name)
        if entry is None or entry.list_type != list_type:
            return None
        return entry.value

    @property
    def local_domains(self) -> str:
        named = self.named_list("domainlist", "local_domains")
        return named if named is not None else self.main.local_domains


def unquote_value(text: str) -> str:
    """Remove surrounding double quotes and process backslash escapes inside them."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return _process_escapes(text[1:-1])
    return text


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "\\$", "{": "\\{", "}": "\\}"}


def _process_escapes(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out.append(c)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "01234567":
            j = i + 1
            while j < len(s) and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(chr(int(s[i + 1 : j], 8)))
            i = j
        elif nxt == "x" and i + 2 < len(s) and s[i + 2] in "0123456789abcdefABCDEF":
            j = i + 2
            while j < len(s) and j < i + 4 and s[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(chr(int(s[i + 2 : j], 16)))
            i = j
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


class _Reader:
    """Produces logical lines: includes spliced, conditionals applied, macros substituted."""

    def __init__(self, cli_macros: dict[str, str]) -> None:
        self.macros: dict[str, str] = dict(cli_macros)
        self.cli_macros = set(cli_macros)
        self.stack_depth = 0

    def read(self, path: str) -> Iterator[SourceLine]:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                physical = f.read().split("\n")
        except FileNotFoundError:
            raise ConfigError("configuration file not found", path) from None
        except IsADirectoryError:
            raise ConfigError("configuration file is a directory", path) from None
        except PermissionError:
            raise ConfigError("configuration file is not readable (permission denied)", path) from None
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file: {exc.strerror}", path) from None
        if "any" in _debug.active and (path, self.stack_depth) not in _announced:
            _announced.add((path, self.stack_depth))  # once per process, though loaded again
            _debug.write(f"reading included file {path}" if self.stack_depth else f"configuration file is {path}")
        yield from self._logical(physical, path)

    def _logical(self, physical: list[str], path: str) -> Iterator[SourceLine]:
        # Conditional stack: each entry is (active, any_branch_taken, line of its .ifdef);
        # the line is kept so that an unterminated .ifdef is reported where it starts.
        conds: list[tuple[bool, bool, int]] = []
        i = 0
        n = len(physical)
        while i < n:
            start = i
            text = physical[i].rstrip("\r")
            i += 1
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            # Continuation lines.
            while text.rstrip().endswith("\\") and i < n:
                text = text.rstrip()[:-1]
                nxt = physical[i].rstrip("\r")
                i += 1
                if nxt.strip().startswith("#"):
                    text += "\\"  # comment in the middle: keep continuing
                    continue
                text += nxt.lstrip()
            if text.rstrip().endswith("\\"):
                text = text.rstrip()[:-1]
            line_no = start + 1
            stripped = text.strip()
            active = all(c[0] for c in conds)
            if stripped.startswith("."):
                word, _, arg = stripped.partition(" ")
                arg = arg.strip()
                if word in (".ifdef", ".ifndef"):
                    cond = (arg in self.macros) == (word == ".ifdef")
                    conds.append((cond, cond, line_no))
                    continue
                if word in (".elifdef", ".elifndef"):
                    if not conds:
                        raise ConfigError(f"{word} without .ifdef", path, line_no)
                    _cur, taken, opened = conds[-1]
                    cond = not taken and ((arg in self.macros) == (word == ".elifdef"))
                    conds[-1] = (cond, taken or cond, opened)
                    continue
                if word == ".else":
                    if not conds:
                        raise ConfigError(".else without .ifdef", path, line_no)
                    _cur, taken, opened = conds[-1]
                    conds[-1] = (not taken, True, opened)
                    continue
                if word == ".endif":
                    if not conds:
                        raise ConfigError(".endif without .ifdef", path, line_no)
                    conds.pop()
                    continue
                if not active:
                    continue
                if word in (".include", ".include_if_exists"):
                    yield from self._include(word, self.substitute(arg), path, line_no)
                    continue
                raise ConfigError(f'unknown directive "{word}"', path, line_no)
            if not active:
                continue
            m = _MACRO_DEF.match(stripped) if "A" <= stripped[0] <= "Z" else None
            if m:
                self._define(m.group(1), m.group(2), m.group(3).strip(), path, line_no)
                continue
            yield SourceLine(self.substitute(text), path, line_no)
        if conds:
            raise ConfigError(".ifdef without .endif", path, conds[-1][2])

    def _include(self, word: str, target: str, path: str, line_no: int) -> Iterator[SourceLine]:
        target = unquote_value(target)
        if not target:
            raise ConfigError(f"{word} needs a file name", path, line_no)
        if not os.path.isabs(target):
            target = os.path.join(os.path.dirname(os.path.abspath(path)), target)
        if word == ".include_if_exists" and not os.path.exists(target):
            return
        if self.stack_depth >= _MAX_INCLUDE_DEPTH:
            raise ConfigError(".include nested too deeply (loop?)", path, line_no)
        if not os.path.exists(target):
            raise ConfigError(f"included file {target} does not exist", path, line_no)
        self.stack_depth += 1
        try:
            yield from self.read(target)
        finally:
            self.stack_depth -= 1

    def _define(self, name: str, op: str, value: str, path: str, line_no: int) -> None:
        if name in self.cli_macros:
            return  # -D on the command line wins over the file
        if name in self.macros and op == "=":
            raise ConfigError(f'macro "{name}" is already defined (use == to redefine)', path, line_no)
        self.macros[name] = self.substitute(value)

    def substitute(self, text: str) -> str:
        return substitute_macros(text, self.macros)


def substitute_macros(text: str, macros: dict[str, str]) -> str:
    """Replace macro names in `text` (also used for `mta -be` lines, as Exim does)."""
    if not macros or not any(c.isupper() for c in text):
        return text

    def repl(m: re.Match[str]) -> str:
        return macros.get(m.group(0), m.group(0))

    return _MACRO_USE.sub(repl, text)


def parse_macro_definition(line: str) -> tuple[str, str, str] | None:
    """(name, "=" or "==", value) of a ``NAME = value`` line, or None if it is not one."""
    m = _MACRO_DEF.match(line.strip())
    return (m.group(1), m.group(2), m.group(3).strip()) if m else None


DEFAULT_CONFIG_PATH = "/etc/mta/mta.conf"


def default_config_path() -> str:
    """The configuration file when no -C is given: $MTA_CONFIG for ordinary users, else
    /etc/mta/mta.conf.

    Root never takes it from the environment: `sudo -E sendmail`, or a root
    process started with a user's environment, must not run under a
    configuration someone else chose (its pipes, files and expansions run with
    root's power).  Root names another file with -C, which is visible on the
    command line.
    """
    requested = os.environ.get("MTA_CONFIG")
    if not requested:
        return DEFAULT_CONFIG_PATH
    if os.getuid() == 0 or os.geteuid() == 0:
        import sys

        sys.stderr.write(f"mta: MTA_CONFIG is ignored when running as root (use -C {requested})\n")
        return DEFAULT_CONFIG_PATH
    return requested


def parse_macro_override(text: str) -> tuple[str, str]:
    """Parse a ``-D NAME=value`` argument (value may be omitted: empty)."""
    name, _, value = text.partition("=")
    name = name.strip()
    if not _MACRO_NAME.fullmatch(name):
        raise ConfigError(f"-D{text}: macro names start with a capital letter and contain only letters, digits and _")
    return name, value


def load_config(path: str | None = None, macros: dict[str, str] | None = None) -> Config:
    """Read and check the configuration file at `path`; raise ConfigError on any problem."""
    path = path or default_config_path()
    reader = _Reader(macros or {})
    section = "main"
    main_settings: list[OptionSetting] = []
    named_lists: dict[str, NamedList] = {}
    acls: dict[str, list[SourceLine]] = {}
    current_acl: list[SourceLine] | None = None
    retry_rules: list[SourceLine] = []
    rewrite_rules: list[SourceLine] = []
    drivers: dict[str, list[DriverSpec]] = {s: [] for s in DRIVER_SECTIONS}
    current_driver: DriverSpec | None = None
    seen_sections: set[str] = set()

    for src in reader.read(path):
        stripped = src.text.strip()
        begin = _begun_section(stripped)
        if begin is not None:
            name = begin.lower()
            if name not in SECTIONS:
                raise ConfigError(f'unknown section "begin {begin}"', src.path, src.line)
            if name in seen_sections:
                raise ConfigError(f'section "{name}" appears twice', src.path, src.line)
            seen_sections.add(name)
            section = name
            current_driver = None
            current_acl = None
            continue
        if section == "main":
            named = _named_list(stripped)
            if named is not None:
                list_type, list_name, value = named[0], named[1], unquote_value(named[2].strip())
                if list_name in named_lists:
                    raise ConfigError(f'named list "{list_name}" is defined twice', src.path, src.line)
                named_lists[list_name] = NamedList(list_type, list_name, value, src.path, src.line)
                continue
            main_settings.append(_option_setting(stripped, src))
        elif section in DRIVER_SECTIONS:
            instance = _instance(stripped)
            if instance is not None:
                name = instance[0]
                if any(d.name == name for d in drivers[section]):
                    raise ConfigError(f'{section[:-1]} "{name}" is defined twice', src.path, src.line)
                current_driver = DriverSpec(section, name, src.path, src.line)
                drivers[section].append(current_driver)
                rest = instance[1].strip()
                if rest:
                    current_driver.settings.append(_option_setting(rest, src))
                continue
            if current_driver is None:
                raise ConfigError(
                    f'option line before the first {section[:-1]} name (expected "name:")', src.path, src.line
                )
            current_driver.settings.append(_option_setting(stripped, src))
        elif section == "acl":
            instance = _instance(stripped)
            if instance is not None and not instance[1].strip():
                name = instance[0]
                if name in acls:
                    raise ConfigError(f'ACL "{name}" is defined twice', src.path, src.line)
                current_acl = acls[name] = []
                continue
            if current_acl is None:
                raise ConfigError('ACL statement before the first ACL name (expected "name:")', src.path, src.line)
            current_acl.append(src)
        elif section == "retry":
            retry_rules.append(src)
        elif section == "rewrite":
            rewrite_rules.append(src)
        # begin local_scan: options of a local_scan function we do not have; ignored as Exim does
        # when none is compiled in.

    for spec in (d for section_drivers in drivers.values() for d in section_drivers):
        if not spec.driver:
            raise ConfigError(f'{spec.section[:-1]} "{spec.name}" has no "driver =" option', spec.path, spec.line)

    main, hidden = build_options(MainOptions, main_settings, "the main section")
    if "local_domains" in named_lists and any(s.name == "local_domains" for s in main_settings):
        nl = named_lists["local_domains"]
        raise ConfigError("local_domains is set both as a main option and as a named domainlist", nl.path, nl.line)
    config = Config(
        path=path,
        main=main,
        main_hidden=hidden,
        macros=reader.macros,
        named_lists=named_lists,
        acls=acls,
        retry_rules=retry_rules,
        rewrite_rules=rewrite_rules,
        drivers=drivers,
    )
    config.primary_hostname = main.primary_hostname or default_primary_hostname()
    config.qualify_domain = main.qualify_domain or config.primary_hostname
    config.qualify_recipient = main.qualify_recipient or config.qualify_domain
    if not os.path.isabs(main.spool_directory):
        raise ConfigError(f"spool_directory must be an absolute path, not {main.spool_directory!r}", path)
    return config


def default_primary_hostname() -> str:
    name = os.uname().nodename
    if "." not in name:
        # Only ask the resolver when the node name is not qualified; it may be slow.
        import socket  # here: 3 ms of start-up that a configuration naming its host never needs

        try:
            fqdn = socket.getfqdn(name)
        except OSError:
            fqdn = name
        if "." in fqdn and not fqdn.startswith("localhost"):
            return fqdn.lower()
    return name.lower()


def _option_setting(text: str, src: SourceLine) -> OptionSetting:
    parsed = _option(text.strip())
    if parsed is None:
        raise ConfigError(f'cannot understand "{_shorten(text.strip())}" (expected "name = value")', src.path, src.line)
    hidden, name, value = parsed
    if value is not None:
        value = unquote_value(value.strip())
    if _debug.active and (hidden or name in _SECRET_OPTIONS):
        _debug.register_secret(value)  # never shown by -d (expansions of it print <hidden>)
    return OptionSetting(name, value, src.path, src.line, hidden=hidden)


# Options whose values are secrets whether marked "hide" or not: -d never shows them.
_SECRET_OPTIONS = frozenset({"client_send", "client_secret", "client_password", "server_secret", "server_condition"})
_announced: set[tuple[str, int]] = set()


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
