"""Splitting a main log line the way eximstats does, for both message-id forms.

eximstats (4.96) finds the parts of a line by fixed offsets after the time
stamp: the id is the 16 characters at offset 20, the flag the 2 at offset
37, the text starts at 40.  A 23-character id (mta, Exim 4.97+) is
recognised here and moves the flag and text 7 characters on; every other
line is cut exactly where eximstats cuts it, quirks included (a line whose
text has "refused" where the flag should be is a "rejection"), so that the
counts agree with eximstats run on the same log with its ids shortened.

The line keeps its newline, as Perl's ``$_`` does: the patterns below are
eximstats' own, and ``$`` and ``\\s`` treat a final newline the same way in
Python as in Perl.  All patterns are ASCII (Perl's, on bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_A = re.ASCII

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d\s(\d\d):(\d\d):\d\d)(\.\d+)?(\s[-+]\d\d\d\d)?(\s\[\d+\])?", _A)
_SYSLOG = re.compile(r"^.*? (?:exim|mta)\b.*?: ", _A)
_ID23 = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{11}-[0-9A-Za-z]{4} ", _A)
_FLAG = re.compile(r"([<>=*-]+|SA)\n?\Z", _A)
_REJECTISH = re.compile(r"rejected|refused|dropped", _A)
_ID_CHARS = re.compile(r"[-0-9a-zA-Z]+\n?\Z", _A)
WANTED_FLAG = re.compile(r"<=|=>|->|==|\*\*|Co|SA|Re", _A)

_IP_H = re.compile(r"\bH=(?:|.*? )(\[[^]]+\])", _A)
_IP_CONNECTION = re.compile(r"Connection from (\[\S+\])", _A)
_IP_SMTP_CALL = re.compile(r"SMTP call from .*?(\[\S+\])", _A)
_HOST = re.compile(r"\bH=(\S+)", _A)
_DOMAIN_FROM_HOST = re.compile(r"^(\(?)[^.]+\.([^.]+\..*)", _A)
_EMAIL_ORIG = re.compile(r"^(\S+ (<[^@>]+@?[^>]*>)?)", _A)
_FIRST_WORD = re.compile(r"^(\S+)", _A)
_IP_ONLY = re.compile(r"[\d.]+", _A)
_EDOMAIN_SPECIAL = re.compile(r"^(<>|blackhole)", _A)
_EDOMAIN_ORIG = re.compile(r"^(\S+ (<\S*?@(\S+?)>)?)", _A)
_EDOMAIN = re.compile(r"^\S*?@(\S+)", _A)
_EDOMAIN_AT = re.compile(r"@(\S+?)>", _A)


@dataclass(slots=True)
class LogLine:
    """One line eximstats would look at: its parts, and the host fields it derives."""

    tod: str  # "YYYY-MM-DD HH:MM:SS" (+ " +hhmm" when logged with a zone)
    hour: int
    minute: int
    message_id: str  # or "reject:N" for a rejection without an id, as eximstats names them
    flag: str  # "<=", "=>", "->", "==", "**", "Co", "SA", "Re" (first two characters of the text)
    text: str  # after the flag, with the line's newline
    whole: str  # the whole line (user patterns match it)


def ascii_lower(text: str) -> str:
    """Perl's lc on a byte string: only A-Z change."""
    return text.translate(_LOWER)


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class LineSplitter:
    """Cuts lines as eximstats' generated parser; numbers rejections without an id."""

    def __init__(self) -> None:
        self.rejects_without_id = 0

    def split(self, line: str, user_patterns: list[re.Pattern[str]] | None = None) -> tuple[LogLine | None, str]:
        """(the line's parts or None when eximstats would skip it, the line as matched).

        The second value is the line after syslog prefix removal, for -pattern counting
        which eximstats does before it looks at the flag."""
        if not line[:4].isdigit():
            stripped = _SYSLOG.sub("", line, count=1)
            if stripped == line:
                return None, line
            line = stripped
        length = len(line)
        if length < 38:
            return None, line
        m = _STAMP.match(line)
        if m is None:
            return None, line
        tod = m.group(1) + m.group(5) if m.group(5) else m.group(1)
        extra = 6 if m.group(5) else 0
        if m.group(5) and length < 44:
            return None, line
        # A 23-character id makes the line 7 characters longer than eximstats expects: count
        # the length checks as if it were the 16-character form, and move the offsets on.
        long_id = _ID23.match(line, 20 + extra + (len(m.group(4) or "")) + (len(m.group(6) or "")))
        shift = 7 if long_id else 0
        if m.group(4):
            extra += len(m.group(4))
            if length - shift < 38 + extra:
                return None, line
        if m.group(6):
            extra += len(m.group(6))
            if length - shift < 38 + extra:
                return None, line
        message_id = line[20 + extra : 20 + extra + 16 + shift]
        extra += shift
        flag = line[37 + extra : 39 + extra]
        if not _FLAG.match(flag) and _REJECTISH.search(line):
            flag = "Re"
            extra -= 3
        if flag == "Re" and not _ID_CHARS.match(message_id):
            self.rejects_without_id += 1
            message_id = f"reject:{self.rejects_without_id}"
            extra -= 17
        return (
            LogLine(
                tod=tod,
                hour=int(m.group(2)),
                minute=int(m.group(3)),
                message_id=message_id,
                flag=flag,
                text=line[40 + extra :],
                whole=line,
            ),
            line,
        )


@dataclass(slots=True)
class Origin:
    """The host fields eximstats derives from a line's text (H= is the sending host of an
    arrival, the destination of a delivery)."""

    ip: str
    host: str
    domain: str
    email: str
    edomain: str


def origin(text: str, do_domain: bool, do_email: bool, do_edomain: bool, original_destination: bool) -> Origin:
    m = _IP_H.search(text) or _IP_CONNECTION.search(text) or _IP_SMTP_CALL.search(text)
    ip = m.group(1) if m else "local"
    h = _HOST.search(text)
    host = h.group(1) if h else "local"
    domain = "localdomain"
    if do_domain:
        if host.startswith("[") or _IP_ONLY.fullmatch(host):
            domain = host
        else:
            d = _DOMAIN_FROM_HOST.match(host)
            if d:
                domain = ascii_lower(f"{d.group(1)}.{d.group(2)}")
                if domain.startswith("."):
                    domain = domain[1:]
    email = ""
    if do_email:
        e = (_EMAIL_ORIG if original_destination else _FIRST_WORD).match(text)
        email = e.group(1).rstrip("\n") if e else ""
    edomain = ""
    if do_edomain:
        if s := _EDOMAIN_SPECIAL.match(text):
            edomain = s.group(1)
        elif original_destination and (o := _EDOMAIN_ORIG.match(text)):
            edomain = _EDOMAIN_AT.sub(lambda x: "@" + ascii_lower(x.group(1)) + ">", o.group(1).rstrip("\n"), count=1)
        elif not original_destination and (p := _EDOMAIN.match(text)):
            edomain = ascii_lower(p.group(1))
    return Origin(ip, host, domain, email, edomain)


# -- rejections ----------------------------------------------------------------------------
# eximstats' classification of rejection lines, in its order: the first pattern that matches
# names the reason (with its first letter upper-cased, Perl's \u).

_TEMP_REJECTED = re.compile(r"(temporarily rejected [A-Z]*) .*?(: .*?)(:|\s*$)", _A)
_TEMP_REFUSED = re.compile(r"(temporarily refused connection)", _A)
_REJECT_ONE = [
    re.compile(p, _A)
    for p in (
        r"(listed at [^ ]+)",
        r"(Forged IP detected in HELO)",
        r"(Invalid domain or IP given in HELO/EHLO)",
        r"(unqualified recipient rejected)",
        r"(closed connection (after|in response) .*?)\s*$",
        r"(sender rejected)",
        r" rejected after DATA: (.*)",
        r" (rejected DATA: .*)",
        r".DATA ACL discarded recipients.: (.*)",
        r"rejected after DATA: (unqualified address not permitted)",
        r"(VRFY rejected)",
        r"(too many recipients)",
        r"(refused relay.*?) to",
        r"(rejected by non-SMTP ACL: .*)",
        r"(rejected by local_scan.*)",
        r"(dropped: too many ((nonmail|unrecognized) commands|syntax or protocol errors))",
        r"(local_scan.. function .* - message temporarily rejected)",
        r"(SMTP protocol .*?(error|violation))",
        r"(message too big)",
    )
]
_REJECT_HELO = re.compile(r"rejected [HE][HE]LO from [^:]*: syntactically invalid argument", _A)
_REJECT_RCPT_RESPONSE = re.compile(r'response to "RCPT TO.*? was: (.*)', _A)
_REJECT_TWO = [
    re.compile(p, _A)
    for p in (
        r"(lookup of host )\S+ (failed)",
        r"(rejected [A-Z]*) .*?(: .*?)(:|\s*$)",
        r"(refused connection )from.*? (\(.*)",
        r"(error from remote mailer after .*?:).*(: .*?)(:|\s*$)",
        r'rejected after DATA: ("." or "." expected).*?(: failing address in .*? header)',
        r"(Connection )from.*? (refused: load average)",
        r"([Cc]onnection )from.*? (refused.*)",
        r": (Connection refused)()",
    )
]
_TEMP_REJECTED_CONNECTION = re.compile(r"(temporarily rejected connection in .*?ACL:?.*)", _A)
_HELO_IP = re.compile(r"^rejected [HE][HE]LO from .*?(\[.+?\]):", _A)


def _ucfirst(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].isascii() else text


def classify_rejection(text: str, ip: str) -> tuple[bool, str, str]:
    """(temporary?, reason, ip) of a rejection line's text, as eximstats counts it."""
    if ip == "local" and (h := _HELO_IP.match(text)):
        ip = h.group(1)
    if "SpamAssassin" in text:
        return False, "Rejected by SpamAssassin", ip
    if m := _TEMP_REJECTED.search(text):
        return True, _ucfirst(m.group(1) + m.group(2)), ip
    if m := _TEMP_REFUSED.search(text):
        return True, _ucfirst(m.group(1)), ip
    for pattern in _REJECT_ONE:
        if m := pattern.search(text):
            return False, _ucfirst(m.group(1)), ip
    if _REJECT_HELO.search(text):
        return False, "Rejected HELO/EHLO: syntactically invalid argument", ip
    if m := _REJECT_RCPT_RESPONSE.search(text):
        return False, f"Response to RCPT TO was: {m.group(1)}", ip
    for pattern in _REJECT_TWO:
        if m := pattern.search(text):
            return False, _ucfirst(m.group(1) + m.group(2)), ip
    if m := _TEMP_REJECTED_CONNECTION.search(text):
        return True, _ucfirst(m.group(1)), ip
    return False, "Unknown", ip
