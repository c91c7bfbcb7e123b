"""newaliases (`mta -bi`): compile alias files into the LMDB databases that aliasfile directors read.

Which files: every aliasfile director whose `search_type` is lmdb (with or
without a `*` or `*@` suffix) names its database in `file`; the text source
is that name without its `.lmdb` suffix (`file = /etc/aliases.lmdb` is
compiled from `/etc/aliases`).  A `file` that is expanded per address (it
holds a `$`) cannot be compiled ahead and is left alone, with a note.

The source is checked before anything is written, and one error anywhere
leaves every database as it was: each problem is reported as
``file:line: reason``.  The checks are those of an alias file: every entry
is `name: value` (the colon is required, as sendmail's newaliases requires
it; lsearch would take a blank), a line starting with white space continues
an entry, and each value must parse as an alias list (addresses, `|pipe`,
`/file`, `:include:/path`, `:fail:` ...), as the director would parse it at
delivery.  A name given twice is reported as a warning (the first wins, as
in lookups).

Durability: the database is written to `target.tmp`, synced, given the
source's mode (and owner, as root), renamed over `target` and the directory
synced (mta.expand.lookups.lmdb.build_from_entries), so a reader sees the
old database or the new one, never a mix.
"""

from __future__ import annotations

import os

from mta import record
from mta.errors import ConfigError, DeferError, ExpansionError, FailError
from mta.expand.escapes import dequote
from mta.expand.lookups import parse_search_type
from mta.expand.lookups._common import decode

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.config.loader import Config

_WHITE = " \t\n\r\f\v"


@record.dataclass(frozen=True, slots=True)
class AliasDatabase:
    director: str
    source: str
    target: str
    check_values: bool  # False with `expand`: values are only known after expansion


@record.dataclass(slots=True)
class Findings:
    errors: list[str] = record.field(default_factory=list)
    warnings: list[str] = record.field(default_factory=list)


def alias_databases(config: Config) -> tuple[list[AliasDatabase], list[str]]:
    """The databases to build (one per target file), and notes about directors left alone."""
    from mta.runtime import build_driver

    found: dict[str, AliasDatabase] = {}
    notes: list[str] = []
    for spec in config.drivers["directors"]:
        if spec.driver != "aliasfile":
            continue
        options = build_driver(spec)[0].options
        try:
            base = parse_search_type(options.search_type).base
        except ExpansionError:
            continue  # -bV reports it
        if base != "lmdb" or not options.file:
            continue
        target = options.file.strip()
        if "$" in target:
            notes.append(f'director "{spec.name}": file {target} is expanded per address: not compiled')
            continue
        if not target.endswith(".lmdb") or len(target) <= len(".lmdb"):
            raise ConfigError(
                f'director "{spec.name}": cannot tell which text file to compile into {target}: '
                "name the database after it, with .lmdb added (file = /etc/aliases.lmdb)",
                spec.path, spec.line,
            )
        found.setdefault(target, AliasDatabase(spec.name, target[: -len(".lmdb")], target, not options.expand))
    return list(found.values()), notes


def check_alias_text(text: str, source: str, check_values: bool = True) -> Findings:
    """Every problem of alias file text, as "source:line: reason"."""
    findings = Findings()
    first_seen: dict[str, int] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip(_WHITE)
        number = i + 1
        i += 1
        if not line or line[0] == "#":
            continue
        if line[0] in _WHITE:
            findings.errors.append(f"{source}:{number}: a continuation line (starting with white space) "
                                   "with no alias name before it")
            continue
        problem, name, rest = _split_entry(line)
        value = [rest]
        while i < len(lines):
            more = lines[i].rstrip(_WHITE)
            if more and more[0] != "#" and more[0] not in _WHITE:
                break
            if more and more[0] in _WHITE:
                value.append(" " + more.lstrip(_WHITE))
            i += 1
        if problem:
            findings.errors.append(f"{source}:{number}: {problem}")
            continue
        key = name.lower()
        if key in first_seen:
            findings.warnings.append(
                f'{source}:{number}: alias "{name}" given again (line {first_seen[key]} is the one used)'
            )
            continue
        first_seen[key] = number
        if check_values:
            reason = _value_problem("".join(value), source, name)
            if reason:
                findings.errors.append(f"{source}:{number}: {reason}")
    return findings


def _split_entry(line: str) -> tuple[str | None, str, str]:
    """(problem or None, alias name, value) of an entry's first line."""
    if line.startswith('"'):
        try:
            name, end = dequote(line, 0)
        except ExpansionError:
            return "unterminated quoted alias name", "", ""
        if end > len(line) or (end == len(line) and not line.endswith('"')):
            return "unterminated quoted alias name", "", ""
    else:
        end = 0
        while end < len(line) and line[end] != ":" and line[end] not in _WHITE:
            end += 1
        name = line[:end]
    if not name:
        return "an entry with no alias name before the colon", "", ""
    rest = line[end:].lstrip(_WHITE)
    if not rest.startswith(":"):
        return f'missing colon after the alias name "{name}"', name, ""
    return None, name, rest[1:].lstrip(_WHITE)


def _value_problem(value: str, source: str, name: str) -> str | None:
    """Why an alias value would not parse at delivery, or None.  :include: files are read then,
    not now: only their names are checked here."""
    from mta.route.redirect import RedirectSyntaxError, parse_redirect_list

    def not_read_now(path: str, what: str) -> tuple[str, os.stat_result]:
        return "", os.stat("/")

    try:
        parse_redirect_list(
            value, source=f'alias "{name}"', incoming_domain="localhost", qualify_domain="localhost",
            allow_pipe=True, allow_file=True, allow_include=True, allow_fail=True, allow_defer=True,
            allow_blackhole=True, include_reader=not_read_now,
        )
    except RedirectSyntaxError as exc:
        return exc.message
    except (FailError, DeferError):
        return None  # :fail: / :defer: items: what they do is for delivery time
    return None


def compile_database(db: AliasDatabase) -> tuple[int | None, Findings]:
    """Check and build one database: (number of aliases or None when nothing was written, findings)."""
    from mta.expand.lookups.lmdb import build_from_entries
    from mta.expand.lookups.lsearch import parse_lsearch

    try:
        with open(db.source, "rb") as f:
            like = os.fstat(f.fileno())
            text = decode(f.read())
    except OSError as exc:
        return None, Findings([f"cannot read {db.source}: {exc.strerror}"])
    findings = check_alias_text(text, db.source, db.check_values)
    if findings.errors:
        return None, findings
    try:
        count = build_from_entries(parse_lsearch(text), db.source, db.target, like)
    except (ExpansionError, DeferError) as exc:
        findings.errors.append(str(getattr(exc, "message", exc)))
        return None, findings
    return count, findings
