"""The utf8_* operators: domains and local parts to and from A-labels (punycode).

Exim uses libidn2 (IDNA 2008); mta uses Python's IDNA 2003 codec for
domains, which agrees for ordinary names (letters of any script, digits,
hyphens) and differs on the characters the two standards treat
differently (ß, ς, joiners) - see docs/expansion.md.  Local parts are
plain punycode with an "xn--" prefix, as in Exim.
"""

from __future__ import annotations

from mta.expand.textcodecs import string_printing


def _is_utf8(text: str) -> bool:
    return any(ord(ch) >= 0x80 for ch in text)


def _punycode_label(label: str) -> str:
    return "xn--" + label.encode("punycode").decode("ascii")


def _from_alabel(label: str) -> str:
    if not label.lower().startswith("xn--"):
        return label
    try:
        return label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        raise ValueError("bad punycode") from None


def convert(name: str, text: str) -> str:
    try:
        if name == "utf8_domain_to_alabel":
            if not _is_utf8(text):
                return text
            return text.encode("idna").decode("ascii")
        if name == "utf8_domain_from_alabel":
            return ".".join(_from_alabel(label) for label in text.split("."))
        if name == "utf8_localpart_to_alabel":
            return _punycode_label(text) if _is_utf8(text) else text
        return _from_alabel(text)
    except (UnicodeError, ValueError) as exc:
        direction = "utf8 ({}) to alabel" if name.endswith("to_alabel") else "alabel ({}) to utf8"
        raise ValueError(f"error converting {direction.format(string_printing(text))}: {exc}") from None
