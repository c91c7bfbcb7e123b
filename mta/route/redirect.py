"""Alias and forward lists: the item language shared by aliasfile and forwardfile.

Public API
----------
parse_redirect_list(text, *, source, incoming_domain, qualify_domain,
                    allow_pipe, allow_file, allow_include, allow_fail,
                    allow_defer, allow_blackhole, qualify_preserve_domain=False,
                    skip_syntax_errors=False, include_check=None,
                    include_reader=None, include_depth=0) -> RedirectParse
    Parse the value of an alias or the contents of a .forward file.
read_list_file(path, what) -> (text, os.stat_result)
    Read a regular file of at most MAX_LIST_FILE_SIZE bytes; DeferError if
    it cannot be read.  Used for :include: files and by forwardfile.
ItemKind, RedirectItem, RedirectParse
    The result: new addresses, pipes, files and directories, in list order.
RedirectSyntaxError
    A DeferError naming the source and the bad item.
NO_REDIRECT
    Key of ``AddressItem.extra`` set on the child of a ``\\user`` item.

The language (Exim's parse_forward_list)
----------------------------------------
Items are separated by commas or newlines; white space around them is
ignored.  A ``#`` where an item would start begins a comment that runs to
the end of the line.  An item entirely in double quotes loses the quotes
(``"|/bin/prog a,b"``: commas inside quotes do not separate items).

  user, user@domain    a new address.  An unqualified one gets
                       `qualify_domain` (the incoming domain with
                       ``qualify_preserve_domain``).  ``Name <a@b>`` and
                       comments are accepted; an item that is only a
                       comment is ignored.
  \\user               user@<incoming domain>, marked so that aliasfile,
                       forwardfile and smartuser decline it (Exim 3: "not
                       redirected again"); localuser delivers it.
  |command             a pipe, unless the item parses as an address with a
                       domain (``|x@example.com`` is an address).
  /path                a file; ``/path/`` (trailing slash) a directory.
                       Likewise only if it is not an address with a domain.
  /dev/null            discard this one item (no transport is needed).
  :include:/abs/path   the items of that file, spliced in (not expanded).
  :blackhole:          discard the whole list: nothing is delivered.
  :fail: text          the whole original address fails with `text`.
  :defer: text         the whole original address is deferred with `text`.
  :unknown:            ignored (an old way to write "no data").

``:fail:`` and ``:defer:`` take the rest of their line as the text, commas
included; a leading ``5xx x.y.z`` (or ``4xx`` for ``:defer:``) sets the
SMTP code and enhanced status code.

Decisions
---------
- Every error in a list is a DeferError (RedirectSyntaxError), as Exim
  defers a message whose .forward or alias entry is broken: the fault is
  local and fixable, so no mail is bounced because of it.  With
  `skip_syntax_errors`, an item that is not a valid address is skipped and
  its message is kept in `RedirectParse.syntax_errors`; items that are not
  permitted (a pipe with allow_pipe false, say) are never skipped.
- An item that is not permitted is an error, never silently dropped.
- A `text` that is Tainted (an expansion that used $local_part, say) may
  give addresses only: a pipe, file, directory, /dev/null or :include: item
  in it is refused, so no remote input can become a command or a path.
- /dev/null is governed by `allow_blackhole`, not `allow_file`: it writes
  nothing and needs no transport.
- ``pipe_command`` keeps the leading ``|`` (Exim's address text, shown as
  such in the delivery log line); the pipe transport removes it.
"""

from __future__ import annotations

import enum
import os
import re
import stat
from collections.abc import Callable

from mta import record
from mta.errors import AddressError, DeferError, FailError
from mta.message.address import parse_header_addresses, qualify
from mta.taint import is_tainted

NO_REDIRECT = "no_redirect"
MAX_INCLUDE_DEPTH = 10
MAX_LIST_FILE_SIZE = 4 * 1024 * 1024
DEV_NULL = "/dev/null"

_SMTP_CODE = re.compile(r"([45]\d\d)(?:\s+([45]\.\d{1,3}\.\d{1,3}))?(?:\s+|$)")

_QUOTED_ITEM_SUFFIX = re.compile(r""" in (?:'.*'|".*")$""", re.S)

IncludeCheck = Callable[[str, os.stat_result], None]
IncludeReader = Callable[[str, str], "tuple[str, os.stat_result]"]


class ItemKind(enum.Enum):
    ADDRESS = "address"
    PIPE = "pipe"
    FILE = "file"
    DIRECTORY = "directory"


@record.dataclass(frozen=True, slots=True)
class RedirectItem:
    """One delivery target from a list.

    `value` is the qualified address, the pipe item with its leading ``|``,
    or the absolute path (a directory keeps its trailing ``/``).
    `no_redirect` is set for ``\\user`` items.
    """

    kind: ItemKind
    value: str
    no_redirect: bool = False


@record.dataclass(slots=True)
class RedirectParse:
    """What a list asks for.

    `items` is empty and `blackhole` false and `discarded` 0 when the list
    had no data: the director then declines.  `discarded` counts /dev/null
    items; a list made only of them discards the address.
    """

    items: list[RedirectItem] = record.field(default_factory=list)
    blackhole: bool = False
    discarded: int = 0
    syntax_errors: list[str] = record.field(default_factory=list)

    def _of(self, kind: ItemKind) -> list[str]:
        return [item.value for item in self.items if item.kind is kind]

    @property
    def addresses(self) -> list[str]:
        return self._of(ItemKind.ADDRESS)

    @property
    def pipes(self) -> list[str]:
        return self._of(ItemKind.PIPE)

    @property
    def files(self) -> list[str]:
        return self._of(ItemKind.FILE)

    @property
    def directories(self) -> list[str]:
        return self._of(ItemKind.DIRECTORY)

    @property
    def empty(self) -> bool:
        """True when the list generated nothing at all (the director declines)."""
        return not self.items and not self.blackhole and not self.discarded


class RedirectSyntaxError(DeferError):
    """An alias or forward list cannot be used; the address is deferred.

    `source` says where the list came from, `item` is the offending item
    (None when the problem is not one item, e.g. an unreadable :include:).
    """

    def __init__(self, source: str, reason: str, item: str | None = None, errno: int = 0) -> None:
        self.source = source
        self.reason = reason
        self.item = item
        where = f' in "{_shorten(item)}"' if item is not None else ""
        super().__init__(f"{source}: {reason}{where}", errno=errno)


@record.dataclass(frozen=True, slots=True)
class _Rules:
    source: str
    incoming_domain: str
    qualify_domain: str
    allow_pipe: bool
    allow_file: bool
    allow_include: bool
    allow_fail: bool
    allow_defer: bool
    allow_blackhole: bool
    qualify_preserve_domain: bool
    skip_syntax_errors: bool
    include_check: IncludeCheck | None
    tainted: bool
    include_reader: IncludeReader | None = None


def parse_redirect_list(
    text: str,
    *,
    source: str,
    incoming_domain: str,
    qualify_domain: str,
    allow_pipe: bool,
    allow_file: bool,
    allow_include: bool,
    allow_fail: bool,
    allow_defer: bool,
    allow_blackhole: bool,
    qualify_preserve_domain: bool = False,
    skip_syntax_errors: bool = False,
    include_check: IncludeCheck | None = None,
    include_reader: IncludeReader | None = None,
    include_depth: int = 0,
) -> RedirectParse:
    """Parse an alias value or a forward file; see the module docstring.

    `source` names where `text` came from, for messages (``alias file
    /etc/aliases, entry "sales"``).  `include_check(path, stat)` is called
    for every :include: file before it is used and may raise DeferError (a
    forward file uses it to stop a user including files they cannot read).
    `include_reader(path, what)` reads an :include: file instead of
    read_list_file (a forward file's are read as its user); it raises as
    read_list_file does.

    Raises FailError for ``:fail:``, DeferError for ``:defer:``, and
    RedirectSyntaxError (a DeferError) for any error in the list.
    """
    rules = _Rules(
        source, incoming_domain, qualify_domain, allow_pipe, allow_file, allow_include, allow_fail,
        allow_defer, allow_blackhole, qualify_preserve_domain, skip_syntax_errors, include_check,
        is_tainted(text), include_reader,
    )
    result = RedirectParse()
    _parse_into(str(text), rules, result, include_depth, ())
    return result


def read_list_file(path: str, what: str) -> tuple[str, os.stat_result]:
    """Read a list file (an :include: file, a .forward) as text.

    Opened without blocking, so a FIFO planted in its place cannot hang the
    delivery; it must then be a regular file of at most MAX_LIST_FILE_SIZE
    bytes.  Undecodable bytes become U+FFFD rather than making every
    message to the address defer.  Raises FileNotFoundError and
    NotADirectoryError as they are (the caller decides whether a missing
    file matters) and DeferError for every other problem.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise DeferError(f"cannot open {what} {path}: {exc.strerror}", errno=exc.errno or 0) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DeferError(f"{what} {path} is not a regular file")
        if st.st_size > MAX_LIST_FILE_SIZE:
            raise DeferError(f"{what} {path} is too big ({st.st_size} bytes; at most {MAX_LIST_FILE_SIZE})")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_LIST_FILE_SIZE:
                # It grew after the fstat: still refuse rather than read without bound.
                raise DeferError(f"{what} {path} is too big (more than {MAX_LIST_FILE_SIZE} bytes)")
            chunks.append(chunk)
    except OSError as exc:
        raise DeferError(f"cannot read {what} {path}: {exc.strerror}", errno=exc.errno or 0) from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace"), st


# -- the parser ----------------------------------------------------------------


def _parse_into(s: str, rules: _Rules, out: RedirectParse, depth: int, stack: tuple[str, ...]) -> None:
    """Append the items of `s` to `out`; returns early (out.blackhole set) at :blackhole:."""
    n = len(s)
    i = 0
    while True:
        # Separators, then a comment if one starts where an item would.
        while True:
            while i < n and (s[i].isspace() or s[i] == ","):
                i += 1
            if i < n and s[i] == "#":
                newline = s.find("\n", i)
                i = n if newline < 0 else newline
            else:
                break
        if i >= n:
            return
        end = _item_end(s, i)
        item = s[i:end].rstrip()
        inquote = False
        if len(item) >= 2 and item[0] == '"' and item[-1] == '"':
            item, inquote = item[1:-1].strip(), True
        line = item
        if item.startswith(":") and not inquote:
            # Exim takes the text of :fail:/:defer: to the end of the line, commas and all.
            line_end = s.find("\n", i)
            line = s[i : n if line_end < 0 else line_end].rstrip()
        i = end
        if not item or item == ":unknown:":
            continue
        if item.startswith(":") and _special(item, line, rules, out):
            return
        if item.startswith(":include:"):
            _include(item, rules, out, depth, stack)
            if out.blackhole:
                return
            continue
        _ordinary(item, inquote, rules, out)


def _item_end(s: str, i: int) -> int:
    """Index just past the item starting at s[i]: at a comma or newline outside quotes,
    comments and angle brackets (Exim's parse_find_address_end with nl_ends)."""
    n = len(s)
    source_routing = s[i] == "@"
    no_term = 1 if source_routing else 0
    while i < n and (s[i] != "," or no_term > 0) and s[i] != "\n":
        c = s[i]
        if c == "\\" and i + 1 < n:
            i += 2
        elif c == '"':
            i += 1
            while i < n and s[i] != "\n":
                if s[i] == "\\" and i + 1 < n:
                    i += 2
                    continue
                i += 1
                if s[i - 1] == '"':
                    break  # i is just past the closing quote
        elif c == "(":
            level = 1
            i += 1
            while i < n and s[i] != "\n":
                if s[i] == "\\" and i + 1 < n:
                    i += 2
                    continue
                if s[i] == "(":
                    level += 1
                elif s[i] == ")":
                    level -= 1
                    if level <= 0:
                        i += 1
                        break
                i += 1
        else:
            if c == "<":
                source_routing = s[i + 1 : i + 2] == "@"
                no_term = 2 if source_routing else 1
            elif c == ">" or (source_routing and c == ":"):
                no_term -= 1
            i += 1
    return i


def _special(item: str, line: str, rules: _Rules, out: RedirectParse) -> bool:
    """Handle :blackhole:, :fail: and :defer:; True when the list ends here."""
    if item.startswith(":blackhole:"):
        if not rules.allow_blackhole:
            raise RedirectSyntaxError(rules.source, '":blackhole:" is not permitted here (allow_blackhole is false)')
        out.blackhole = True
        return True
    for keyword, allowed, option in ((":fail:", rules.allow_fail, "allow_fail"),
                                     (":defer:", rules.allow_defer, "allow_defer")):
        if not item.startswith(keyword):
            continue
        if not allowed:
            raise RedirectSyntaxError(rules.source, f'"{keyword}" is not permitted here ({option} is not set)')
        text = line[len(keyword):].strip()
        if keyword == ":fail:":
            message, code, esc = _with_code(text, "5", "Unrouteable address")
            raise FailError(message, code=code, esc=esc)
        message, code, esc = _with_code(text, "4", "Deferred by an alias or forward list (:defer:)")
        raise DeferError(message, code=code, esc=esc)
    return False


def _with_code(text: str, klass: str, default: str) -> tuple[str, int | None, str | None]:
    """Split an optional leading ``5xx x.y.z`` from a :fail:/:defer: text."""
    m = _SMTP_CODE.match(text)
    if m and m.group(1).startswith(klass) and (m.group(2) is None or m.group(2).startswith(klass)):
        rest = text[m.end():].strip()
        return rest or default, int(m.group(1)), m.group(2)
    return text or default, None, None


def _include(item: str, rules: _Rules, out: RedirectParse, depth: int, stack: tuple[str, ...]) -> None:
    path = item[len(":include:"):].strip()
    if rules.tainted:
        raise RedirectSyntaxError(rules.source, "an :include: item cannot come from tainted data", item)
    if not rules.allow_include:
        raise RedirectSyntaxError(rules.source, ":include: is not permitted here (allow_include is false)", item)
    if not path:
        raise RedirectSyntaxError(rules.source, "file name missing after :include:", item)
    if not path.startswith("/"):
        raise RedirectSyntaxError(rules.source, f'included file "{path}" is not an absolute path', item)
    if depth + 1 > MAX_INCLUDE_DEPTH:
        raise RedirectSyntaxError(rules.source, f"more than {MAX_INCLUDE_DEPTH} levels of :include:", item)
    if path in stack:
        raise RedirectSyntaxError(rules.source, f"included file {path} includes itself", item)
    try:
        text, st = (rules.include_reader or read_list_file)(path, "included file")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise RedirectSyntaxError(
            rules.source, f"cannot open included file {path}: {exc.strerror}", errno=exc.errno or 0
        ) from None
    except DeferError as exc:
        raise RedirectSyntaxError(rules.source, exc.message, errno=exc.errno) from None
    if rules.include_check is not None:
        rules.include_check(path, st)
    inner = record.replace(rules, source=f"included file {path}")
    _parse_into(text, inner, out, depth + 1, (*stack, path))


def _ordinary(item: str, inquote: bool, rules: _Rules, out: RedirectParse) -> None:
    """An address, pipe, file or directory item."""
    if item.startswith("\\"):
        local_part, domain, error = _parse_address(item[1:])
        if local_part is None or domain is not None:
            reason = error or "a \\ item must be a local part without a domain"
            _syntax(rules, out, reason, item)
            return
        out.items.append(RedirectItem(ItemKind.ADDRESS, f"{local_part}@{rules.incoming_domain}", no_redirect=True))
        return
    address, domain, error = _parse_address(item)
    if item[0] in "|/" and (address is None or domain is None):
        _pipe_or_file(item, inquote, rules, out)
        return
    if address is None:
        if error is None:
            return  # only a comment: Exim ignores "empty address" items
        _syntax(rules, out, error, item)
        return
    if domain is None:
        address = qualify(address, rules.incoming_domain if rules.qualify_preserve_domain else rules.qualify_domain)
    out.items.append(RedirectItem(ItemKind.ADDRESS, address))


def _parse_address(text: str) -> tuple[str | None, str | None, str | None]:
    """(address in internal form, its domain or None, error); (None, None, None) for a comment alone."""
    try:
        found = parse_header_addresses(text)
    except AddressError as exc:
        # The header parser names the item itself (" in '...'"); RedirectSyntaxError adds it once.
        return None, None, _QUOTED_ITEM_SUFFIX.sub("", exc.message)
    if not found:
        return None, None, None
    if len(found) > 1 or found[0].group is not None:
        return None, None, "one address expected"
    address = found[0].address
    at = _last_at(address)
    return address, (address[at + 1:] if at >= 0 else None), None


def _last_at(address: str) -> int:
    # The internal form quotes any local part containing "@", so the last @ is the separator.
    return address.rfind("@") if not address.endswith('"') else -1


def _pipe_or_file(item: str, inquote: bool, rules: _Rules, out: RedirectParse) -> None:
    value = re.sub(r"\\(.)", r"\1", item) if inquote else item
    is_pipe = value.startswith("|")
    what = "pipe" if is_pipe else "file"
    if rules.tainted:
        raise RedirectSyntaxError(rules.source, f"a {what} item cannot come from tainted data", item)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RedirectSyntaxError(rules.source, f"control character in {what} item", item)
    if is_pipe:
        if not value[1:].strip():
            raise RedirectSyntaxError(rules.source, "empty pipe command", item)
        if not rules.allow_pipe:
            raise RedirectSyntaxError(rules.source, "pipes are not permitted here (allow_pipe is false)", item)
        out.items.append(RedirectItem(ItemKind.PIPE, value))
        return
    if value == DEV_NULL:
        if not rules.allow_blackhole:
            raise RedirectSyntaxError(
                rules.source, "/dev/null is not permitted here (allow_blackhole is false)", item
            )
        out.discarded += 1
        return
    if not rules.allow_file:
        raise RedirectSyntaxError(rules.source, "files are not permitted here (allow_file is false)", item)
    kind = ItemKind.DIRECTORY if value.endswith("/") else ItemKind.FILE
    out.items.append(RedirectItem(kind, value))


def _syntax(rules: _Rules, out: RedirectParse, reason: str, item: str) -> None:
    error = RedirectSyntaxError(rules.source, reason, item)
    if not rules.skip_syntax_errors:
        raise error
    out.syntax_errors.append(error.message)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
