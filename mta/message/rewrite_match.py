"""The matching half of address rewriting (mta.message.rewrite): patterns, $0..$n, and addresses in text.

    match_pattern(address, pattern, list_ctx) -> list[str] | None   # $0, $1 ... when it matches
    compile_regex(pattern) -> re.Pattern                             # PCRE-style leading (?i) allowed
    list_context(primary_hostname, named_list) -> ListContext

A rewriting pattern is one item of an address list (Exim's spec, "Rewriting
patterns"), matched as Exim's match_address_list does for rewriting: the
domain of the subject is lower-cased and its local part is not, and a
pattern's local part is compared case-sensitively (``^(?i)...`` for a
caseless regex).  The numeric variables are set as Exim sets them:

- ``^regex`` on the whole address: $1... are its captures;
- ``*suffix@domain``: $1 is the part of the local part the ``*`` matched;
  the domain half then sets the next ones: ``*suffix`` its wild part, a
  ``^regex`` its captures, a ``partial-TYPE;FILE`` lookup the wild and the
  fixed part of the domain (``foo@bar.baz.example`` against a key
  ``*.baz.example``: $2 ``bar``, $3 ``baz.example``);
- $0 is always the whole address as given.

Other items (``@@TYPE;FILE``, ``+named`` domain lists, ``@``, ``@[]``, whole
address lookups, negation) are matched by mta.config.lists and set no
numeric variables beyond $0.

All values are parts of the address, so they carry its taint.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from mta.config.list_lookups import lookup_item, lookup_keys
from mta.config.lists import ListContext, match_address, match_domain
from mta.errors import ConfigError
from mta.taint import Tainted, is_tainted

# A whole-address lookup: letters, digits, hyphens, then * or *@, then ; (Exim's check_address).
_ADDRESS_LOOKUP = re.compile(r"[A-Za-z0-9-]+\*?@?(?:,[^;]*)?;")
_PARTIAL_LOOKUP = re.compile(r"partial(\d*)-([A-Za-z0-9_]+)((?:,[^;]*)?;.*)$", re.S)
# PCRE accepts option settings anywhere; Python only at the very start of the pattern.
_LEADING_FLAGS = re.compile(r"\^\(\?([aiLmsux]+)\)")


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """A rewriting regex, case-sensitive as in Exim; ConfigError if it does not compile."""
    flags = _LEADING_FLAGS.match(pattern)
    if flags is not None:
        pattern = f"(?{flags.group(1)})^{pattern[flags.end() :]}"
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f'bad regular expression "{pattern}": {exc}') from None


def _like(source: str, values: list[str]) -> list[str]:
    """Parts of a tainted subject are tainted too."""
    return [Tainted(v) for v in values] if is_tainted(source) else values


def match_pattern(address: str, pattern: str, list_ctx: ListContext) -> list[str] | None:
    """$0, $1 ... if `address` (qualified, or "" for the null sender) matches `pattern`, else None."""
    at = address.rfind("@")
    subject = address[:at] + "@" + address[at + 1 :].lower() if at >= 0 else address
    if pattern.startswith("^"):
        m = compile_regex(pattern).search(subject)
        if m is None:
            return None
        return _like(address, [address, *(g or "" for g in m.groups())])
    if _ADDRESS_LOOKUP.match(pattern) is not None or pattern.startswith(("@@", "!", "/", "+")) or not pattern:
        # Whole-address lookups, @@ lists, negations, list files, named lists: no $1...
        found = match_address(address, pattern, list_ctx, caseful=True)
        return _like(address, [address]) if found.matched else None
    if not subject:
        return None
    nvars = [address]
    local, domain = (subject[:at], subject[at + 1 :]) if at >= 0 else ("", subject)
    pat_at = pattern.rfind("@")
    domain_pattern = pattern
    if pat_at >= 0:
        p_local, domain_pattern = pattern[:pat_at], pattern[pat_at + 1 :]
        if p_local.endswith("@") and (domain_pattern in ("", "[]") or domain_pattern.startswith("mx_")):
            p_local, domain_pattern = p_local[:-1], "@" + domain_pattern
        if p_local.startswith("*"):
            if not local.endswith(p_local[1:]):
                return None
            nvars.append(local[: len(local) - len(p_local) + 1])
        elif local != p_local:
            return None
    parts = _match_domain(domain, domain_pattern, list_ctx)
    return None if parts is None else _like(address, nvars + parts)


def _match_domain(domain: str, pattern: str, list_ctx: ListContext) -> list[str] | None:
    """The numeric variables the domain half of a pattern sets, or None if it does not match."""
    if pattern.startswith("^"):
        m = compile_regex(pattern).search(domain)
        return None if m is None else [g or "" for g in m.groups()]
    if pattern.startswith("*"):
        return [domain[: len(domain) - len(pattern) + 1]] if domain.endswith(pattern[1:]) else None
    partial = _PARTIAL_LOOKUP.match(pattern)
    if partial is not None:
        return _partial_lookup(domain, partial)
    if ";" in pattern or pattern.startswith(("@", "+", "!", "/")):
        return [] if match_domain(domain, pattern, list_ctx).matched else None
    return [] if domain == pattern else None


def _partial_lookup(domain: str, m: re.Match[str]) -> list[str] | None:
    """A partial-TYPE;FILE domain: (wild part, fixed part) of the key that was found, as Exim's search_find."""
    minimum = int(m.group(1)) if m.group(1) else 2
    item = m.group(2) + m.group(3)
    for key, wild, fixed in lookup_keys(domain, minimum):
        if lookup_item(item, key, partial_ok=False) is not None:
            return [domain[:wild], domain[len(domain) - fixed :] if fixed else ""]
    return None


def list_context(primary_hostname: str, named_list: Callable[[str, str], str | None] | None) -> ListContext:
    """The list context patterns are matched in (``@`` is the primary host name; ``+name`` lists)."""
    if named_list is None:
        return ListContext(primary_hostname=primary_hostname)
    return ListContext(primary_hostname=primary_hostname, named_list=named_list)
