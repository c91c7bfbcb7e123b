"""Address rewriting: the rules of ``begin rewrite`` and of a transport's ``headers_rewrite``.

    rules = parse_rules(config.rewrite_rules)                 # ConfigError naming file:line
    rewriter = Rewriter(rules, env)                           # env: RewriteEnv (expansion, lists, logs)
    rewriter.rewrite_address(address, recipient=True)         # an envelope address (E, F, T)
    rewriter.rewrite_headers(headers, qualify=True)           # From:, To: ... (h, s, f, t, c, b, r)
    rewriter.rewrite_smtp(data, sender=False)                 # a MAIL/RCPT argument (S), or None
    rewriter.test(address)                                    # the lines of `mta -brw`

A rule is ``pattern replacement flags`` (docs/rewrite.md; Exim's spec,
chapter "Address rewriting", and rewrite.c, whose semantics this follows):
the rules are tried in order on an address of the kind the flags name; a
rule whose pattern matches has its replacement expanded, with $local_part,
$domain and $0, $1 ... set from the address, and the result (which must be
a qualified address, or a local part with Q) replaces the address and is
what later rules see.  ``*`` as the replacement, or q after a rule that
matched, ends the scan; a forced failure skips the rule; R repeats a rule
that rewrote, up to ten more times.  A result that is not an address, any
other expansion failure, and an unqualified result without Q leave the
address as it was (logged to the main and panic logs), as Exim does.

The address is message data: it reaches the replacement only as the value
of variables, never as part of the template.

In a header, only the working part of an address is replaced (the phrase
and comments stay) unless the rule has w; groups and lists of addresses are
handled one address at a time.  A header that changes is kept in -H marked
deleted (``*``) and the new one follows it, as Exim marks them; at
reception an envelope address that changes leaves an ``X-rewrote-sender:``
or ``X-rewrote-original-recipient:`` header, deleted too, for debugging.
"""

from __future__ import annotations

from mta import debug, record
from mta.errors import AddressError, ConfigError, ExpansionError
from mta.log import escape
from mta.message.address import qualify
from mta.message.address_text import Extracted, extract_address, header_items, top_level_text
from mta.message.headers import FLAG_DELETED, Header
from mta.taint import taint
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# Which addresses a rule applies to (Exim's rewrite_* bits, in the order -brw prints them).
SENDER, FROM, TO, CC, BCC, REPLY_TO, ENV_FROM, ENV_TO = (1 << i for i in range(8))
ALL_HEADERS = SENDER | FROM | TO | CC | BCC | REPLY_TO
ALL_ENVELOPE = ENV_FROM | ENV_TO
ALL = ALL_HEADERS | ALL_ENVELOPE
SMTP = 0x100
SMTP_SENDER = 0x200  # with SMTP: the MAIL command's address (may become <>)
# How a rule works.
QUALIFY, QUIT, REPEAT, WHOLE = 0x400, 0x800, 0x1000, 0x2000

_LETTERS = {
    "E": ALL_ENVELOPE, "F": ENV_FROM, "T": ENV_TO,
    "h": ALL_HEADERS, "s": SENDER, "f": FROM, "t": TO, "c": CC, "b": BCC, "r": REPLY_TO,
    "S": SMTP, "Q": QUALIFY, "q": QUIT, "R": REPEAT, "w": WHOLE,
}  # fmt: skip
# The -H flag of a header -> the rule bit for its addresses.
HEADER_BITS = {"S": SENDER, "F": FROM, "T": TO, "C": CC, "B": BCC, "R": REPLY_TO}
# How the log and debug lines name the place an address came from (Exim's where_list).
_WHERE = {
    SENDER: "sender:", FROM: "from:", TO: "to:", CC: "cc:", BCC: "bcc:", REPLY_TO: "reply-to:",
    ENV_FROM: "env-from", ENV_TO: "env-to", SMTP: "smtp recipient", SMTP | SMTP_SENDER: "smtp sender",
}  # fmt: skip
# The field names of -brw, right-aligned as Exim prints them.
_TEST_NAMES = ("  sender", "    from", "      to", "      cc", "     bcc", "reply-to", "env-from", "  env-to")
MAX_REPEAT = 10


@record.dataclass(frozen=True, slots=True)
class RewriteRule:
    """One rule as configured: `key` the pattern and `replacement` as written (both expanded at use)."""

    key: str
    replacement: str
    flags: int
    number: int  # 1-based, as log lines count them
    path: str = ""
    line: int = 0


# -- reading rules -------------------------------------------------------------------------------

_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _dequote(text: str, pos: int) -> tuple[str, int]:
    """One field of a rule (Exim's string_dequote): up to white space, or a quoted string with
    backslash escapes (``\\n``, octal, ``\\x``; any other escaped character stands for itself)."""
    n = len(text)
    if pos >= n or text[pos] != '"':
        end = pos
        while end < n and not text[end].isspace():
            end += 1
        return text[pos:end], end
    out: list[str] = []
    i = pos + 1
    while i < n and text[i] != '"':
        c = text[i]
        if c == "\\" and i + 1 < n:
            i += 1
            c = text[i]
            if c in "01234567":
                digits = c
                while len(digits) < 3 and i + 1 < n and text[i + 1] in "01234567":
                    i += 1
                    digits += text[i]
                c = chr(int(digits, 8))
            elif c == "x":
                digits = ""
                while len(digits) < 2 and i + 1 < n and text[i + 1] in "0123456789abcdefABCDEF":
                    i += 1
                    digits += text[i]
                c = chr(int(digits, 16)) if digits else "\0"
            else:
                c = _ESCAPES.get(c, c)
        out.append(c)
        i += 1
    if i >= n:
        raise ValueError("missing closing quote")
    return "".join(out), i + 1


def parse_rule(text: str, number: int, transport: bool = False, path: str = "", line: int = 0) -> RewriteRule:
    """One rule from its text; ValueError with the reason if it is malformed."""
    pos = len(text) - len(text.lstrip())
    key, pos = _dequote(text, pos)
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        raise ValueError("missing rewrite replacement string")
    replacement, pos = _dequote(text, pos)
    flags = 0
    for c in text[pos:]:
        if c in " \t":
            continue
        bit = _LETTERS.get(c)
        if bit is None:
            raise ValueError(f"unknown rewrite flag character '{c}' (could be missing quotes round replacement item)")
        flags |= bit
    if flags & SMTP and not (key.startswith("^") or key.startswith("\\N^")):
        raise ValueError("rewrite rule has the S flag but is not a regular expression")
    if not flags & (ALL | SMTP):
        flags |= ALL_HEADERS if transport else ALL
    if transport and flags & (ALL_ENVELOPE | SMTP):
        raise ValueError("rewrite rule specifies a non-header rewrite - not allowed at transport time -")
    _check_pattern(key)
    _check_expansion(replacement, "replacement")
    return RewriteRule(key, replacement, flags, number, path, line)


def _check_expansion(text: str, what: str) -> None:
    from mta.expand.expander import check  # here: only a configuration with rewrite rules checks any

    try:
        check(text)
    except ExpansionError as exc:
        raise ValueError(f'bad {what} "{text}": {exc.message}') from None


def _check_pattern(key: str) -> None:
    """A pattern that could never work stops start-up (Exim finds out only when a message comes)."""
    _check_expansion(key, "pattern")
    if key.startswith("\\N^") and key.endswith("\\N"):
        key = key[2:-2]
    elif "$" in key or "\\" in key:
        return  # made at each use: checked when it is expanded
    if key.startswith("^"):
        from mta.message.rewrite_match import compile_regex  # (with list matching: only when there are rules)

        try:
            compile_regex(key)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None


def parse_rules(lines: Iterable[object]) -> list[RewriteRule]:
    """The rules of ``begin rewrite`` (SourceLine objects: text, path, line); ConfigError for a bad one."""
    rules = []
    for number, src in enumerate(lines, 1):
        text, path, line = src.text, src.path, src.line  # type: ignore[attr-defined]
        try:
            rules.append(parse_rule(text, number, path=path, line=line))
        except ValueError as exc:
            raise ConfigError(str(exc), path, line) from None
    return rules


def parse_headers_rewrite(text: str) -> list[RewriteRule]:
    """A transport's ``headers_rewrite``: a colon-separated list of rules, header flags only;
    ValueError naming the bad rule."""
    rules = []
    for number, item in enumerate(split_list(text), 1):
        try:
            rules.append(parse_rule(item, number, transport=True))
        except ValueError as exc:
            raise ValueError(f'rule {number} "{item}": {exc}') from None
    return rules


# -- applying rules ------------------------------------------------------------------------------


@record.dataclass(slots=True)
class RewriteEnv:
    """What rewriting needs from the configuration and the process.

    `expand(template, variables)` expands configuration text with extra
    variables (raising ExpansionError); `log` writes an ``address_rewrite``
    line (None when that selector is off), `panic` a main+panic log line.
    `primary_hostname` and `named_list` (kind, name) -> list text are for
    the list items of patterns (``@``, ``+name``).
    """

    expand: Callable[[str, dict[str, str]], str]
    primary_hostname: str
    qualify_domain: str
    qualify_recipient: str
    panic: Callable[[str], None]
    log: Callable[[str], None] | None = None
    named_list: Callable[[str, str], str | None] | None = None


class _Stop(Exception):
    """No more rules for this address (``*``, q after a forced failure, an error)."""


class Rewriter:
    """A list of rules, ready to apply."""

    def __init__(self, rules: list[RewriteRule], env: RewriteEnv) -> None:
        self.rules = rules
        self.env = env
        self.exist = 0
        for rule in rules:
            self.exist |= rule.flags

    def applies(self, bits: int) -> bool:
        return bool(self.exist & bits)

    # -- one address ---------------------------------------------------------------------------
    def rewrite_one(
        self, address: str, flag: int, whole: bool = False, added: list[Header] | None = None, name: str = ""
    ) -> tuple[str, bool]:
        """Apply the rules for `flag` to `address`: (result, whether a w rule replaced the whole item).

        The result is `address` itself when nothing changed.  With `whole`
        (a header), a w rule's result is returned entire (``Name <a@b>``).
        With `added`, each change leaves an ``X-rewrote-<name>:`` header there.
        """
        result = subject = address
        whole_done = False
        span = (0, 0)  # where the working part is in `result`, once a w rule has rewritten
        for rule in self.rules:
            if not rule.flags & flag:
                continue
            rewrote = False
            try:
                for _ in range(MAX_REPEAT + 1):
                    new = self._apply(rule, subject, flag)
                    if new is None:
                        break
                    text, found = new
                    rewrote = True
                    self._note(result, flag, rule, text)
                    if added is not None:
                        added.append(Header(f"X-rewrote-{name}", f"X-rewrote-{name}: {subject}\n", FLAG_DELETED))
                    if whole and flag & ALL_HEADERS and (rule.flags & WHOLE or whole_done):
                        if rule.flags & WHOLE:
                            result, span, whole_done = text, (found.start, found.end), True
                        else:  # keep the phrase an earlier w rule gave
                            result = result[: span[0]] + found.address + result[span[1] :]
                            span = (span[0], span[0] + len(found.address))
                    else:
                        result = found.address
                    subject = found.address
                    if not rule.flags & REPEAT:
                        break
                else:
                    self.env.panic(f"rewrite rule repeat ignored after {MAX_REPEAT} times")
            except _Stop:
                break
            if rule.flags & QUIT and rewrote:
                break
        return result, whole_done

    def _apply(self, rule: RewriteRule, subject: str, flag: int) -> tuple[str, Extracted] | None:
        """The rule's result for `subject`: (text, its address), or None if the rule does not apply.
        Raises _Stop when no later rule may be tried."""
        from mta.message.rewrite_match import compile_regex, list_context, match_pattern

        on = "rewrite" in debug.active
        if flag & SMTP:
            key = self._expand_key(rule)
            m = compile_regex(key).search(subject) if key is not None else None
            if m is None:
                if on:
                    debug.write(f"rewrite rule {rule.number}: {escape(subject)} does not match {key}")
                return None
            variables = {str(i): taint(v or "") for i, v in enumerate((subject, *m.groups()))}
        else:
            key = self._expand_key(rule)
            lists = list_context(self.env.primary_hostname, self.env.named_list)
            nvars = match_pattern(subject, key, lists) if key is not None else None
            if nvars is None:
                if on:
                    debug.write(f"rewrite rule {rule.number}: {escape(subject)} does not match {key}")
                return None
            if rule.replacement == "*":
                if on:
                    debug.write(f"rewrite rule {rule.number}: {escape(subject)} matches; replacement * (no rewrite)")
                raise _Stop
            at = subject.rfind("@")
            # The address is message data: tainted, whatever the caller handed in.
            variables = {str(i): taint(v) for i, v in enumerate(nvars)}
            variables["local_part"] = taint(nvars[0][:at])
            variables["domain"] = taint(nvars[0][at + 1 :])
        try:
            text = self.env.expand(rule.replacement, variables)
        except ExpansionError as exc:
            if exc.forced:
                if on:
                    debug.write(f"rewrite rule {rule.number}: {escape(subject)} matches; forced failure: no rewrite")
                if rule.flags & QUIT:
                    raise _Stop from None
                return None
            self.env.panic(f"Expansion of {rule.replacement} failed while rewriting: {exc.message}")
            raise _Stop from None
        return self._check_result(rule, subject, flag, text)

    def _expand_key(self, rule: RewriteRule) -> str | None:
        """The pattern, expanded as Exim expands a list; None (logged) if that fails."""
        if "$" not in rule.key and "\\" not in rule.key:
            return rule.key
        try:
            return self.env.expand(rule.key, {})
        except ExpansionError as exc:
            if not exc.forced:
                self.env.panic(f'failed to expand "{rule.key}" while checking a list: {exc.message}')
            return None

    def _check_result(self, rule: RewriteRule, subject: str, flag: int, text: str) -> tuple[str, Extracted]:
        """The expanded replacement must be one address, qualified unless Q (then qualified here)."""
        sender = flag in (ENV_FROM, SMTP | SMTP_SENDER)
        try:
            found = extract_address(text, allow_empty=sender)
        except AddressError as exc:
            self.env.panic(
                f"Rewrite of {escape(subject)} yielded unparseable address: {exc.message} in address {escape(text)}"
            )
            raise _Stop from None
        if not found.qualified and (found.address or not sender):
            if not rule.flags & QUALIFY:
                self.env.panic(f'Rewrite of {escape(subject)} yielded unqualified address "{escape(text)}"')
                raise _Stop
            address = qualify(found.address, self.env.qualify_recipient)
            text = text[: found.start] + address + text[found.end :]
            found = Extracted(address, found.start, found.start + len(address))
        if "rewrite" in debug.active:
            debug.write(f"rewrite rule {rule.number}: {escape(subject)} matches; rewritten as {escape(text)}")
        return text, found

    def _note(self, before: str, flag: int, rule: RewriteRule, new: str) -> None:
        if self.env.log is not None:
            how = "as" if rule.flags & WHOLE or "<" not in new else "with (address part of)"
            self.env.log(
                f'"{escape(before)}" from {_WHERE.get(flag, "?")} rewritten {how} "{escape(new)}" by rule {rule.number}'
            )

    # -- the places addresses are ----------------------------------------------------------------
    def rewrite_address(self, address: str, recipient: bool, added: list[Header] | None = None) -> str:
        """An envelope address (qualified already; "" the null sender, left alone)."""
        flag = ENV_TO if recipient else ENV_FROM
        if not address or not self.exist & flag:
            return address
        name = "original-recipient" if recipient else "sender"
        return self.rewrite_one(address, flag, added=added, name=name)[0]

    def rewrite_smtp(self, data: str, sender: bool) -> str | None:
        """The address text of a MAIL (`sender`) or RCPT command after the S rules, or None if unchanged."""
        if not self.exist & SMTP:
            return None
        flag = SMTP | SMTP_SENDER if sender else SMTP
        result, _ = self.rewrite_one(data, flag)
        return None if result is data else result

    def rewrite_header(self, header: Header, qualify_unqualified: bool) -> Header | None:
        """The header with its addresses qualified (if allowed) and rewritten, or None if unchanged."""
        flag = HEADER_BITS.get(header.flag)
        if flag is None:
            return None
        rules = bool(self.exist & flag)
        if not rules and not qualify_unqualified:
            return None
        recipient = not flag & (SENDER | FROM | REPLY_TO)
        domain = self.env.qualify_recipient if recipient else self.env.qualify_domain
        text = header.text
        value_at = text.index(":") + 1
        out: list[str] = [text[:value_at]]
        pos = value_at
        folded_at = 0  # where the last fold this function added is in the output
        changed = False
        items = header_items(text, value_at)
        for index, (start, end) in enumerate(items):
            mailbox = text[start:end]
            try:
                found = extract_address(mailbox)
            except AddressError:
                continue  # left as written, as Exim does
            address = found.address
            if not found.qualified:
                if not qualify_unqualified:
                    continue
                address = qualify(address, domain)
            new, whole = self.rewrite_one(address, flag, whole=True) if rules else (address, False)
            if new == found.address and not whole:
                continue
            changed = True
            cut = (start, end) if whole else (start + found.start, start + found.end)
            out.append(text[pos : cut[0]] + new)
            pos = cut[1]
            if len(new) > cut[1] - cut[0] and index + 1 < len(items):
                # A longer address: fold after it if the line is getting long (Exim's rule).
                gap = text[pos : items[index + 1][0]]
                length = sum(map(len, out)) + len(gap)
                if "\n" not in gap and length - folded_at > 40:
                    out.append(gap + "\n\t")
                    pos = items[index + 1][0]
                    folded_at = length
        if not changed:
            return None
        out.append(text[pos:])
        new_header = Header(header.name, "".join(out), header.flag)
        if "rewrite" in debug.active:
            debug.write(f"rewritten header: {escape(new_header.text.rstrip())}")
        return new_header

    def rewrite_headers(self, headers: list[Header], qualify_unqualified: bool) -> None:
        """Rewrite the address headers in place: each changed one is marked deleted, the new one follows."""
        index = 0
        while index < len(headers):
            header = headers[index]
            if header.flag != FLAG_DELETED:
                new = self.rewrite_header(header, qualify_unqualified)
                if new is not None:
                    header.flag = FLAG_DELETED
                    headers.insert(index + 1, new)
                    index += 1
            index += 1

    # -- mta -brw ----------------------------------------------------------------------------------
    def test(self, address: str) -> list[str]:
        """What each kind of rule makes of `address`: the lines ``exim -brw`` prints."""
        if not self.exist:
            return ["No rewrite rules are defined"]
        lines: list[str] = []
        done_smtp = False
        if self.exist & SMTP:
            new = self.rewrite_smtp(address, sender=True)
            if new is not None:
                lines.append(f"    SMTP: {new or '<>'}")
                done_smtp = True
        if not self.exist & ~SMTP:
            return lines
        qualified = address
        if "@" not in top_level_text(address):
            qualified = f"{address}@{self.env.qualify_recipient}"
        try:
            found = extract_address(qualified)
        except AddressError as exc:
            if not done_smtp:
                lines += [f"Syntax error in {qualified}", exc.message[:1].upper() + exc.message[1:]]
            return lines
        for index, name in enumerate(_TEST_NAMES):
            flag = 1 << index
            new, whole = self.rewrite_one(found.address, flag, whole=True)
            if not new:
                lines.append(f"{name}: <>")
            elif whole or not flag & ALL_HEADERS:
                lines.append(f"{name}: {new}")
            else:
                lines.append(f"{name}: {qualified[: found.start]}{new}{qualified[found.end :]}")
        return lines
