"""Parsing what an SMTP client says: the verb, MAIL/RCPT paths and their ESMTP parameters.

Everything returned is network data and is marked Tainted where it can
reach an expansion (addresses, HELO names, parameters).  A malformed
command raises `CommandError` with the reply the session sends (501, 555)
and the session goes on.

RFC 5321 §4.1.2 (paths), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 3030
(BDAT), RFC 6531 (SMTPUTF8), RFC 3461 (DSN: RET, ENVID, NOTIFY, ORCPT),
RFC 4954 (AUTH=).
"""

from __future__ import annotations

from collections.abc import Callable

from mta import record
from mta.errors import AddressError
from mta.log import escape
from mta.message.address import parse_envelope_address
from mta.taint import Tainted, taint

# Exim's dsn_flags bits for NOTIFY (rcpt_dsn_* in the -H recipient line).
DSN_NOTIFY_SUCCESS = 0x01
DSN_NOTIFY_FAILURE = 0x02
DSN_NOTIFY_DELAY = 0x04
DSN_NOTIFY_NEVER = 0x08
DSN_HAS_NOTIFY = 0x10  # NOTIFY was given (so "not given" differs from defaults)
DSN_RET_FULL = 1  # Exim's dsn_ret values
DSN_RET_HDRS = 2

_NOTIFY_BITS = {"SUCCESS": DSN_NOTIFY_SUCCESS, "FAILURE": DSN_NOTIFY_FAILURE, "DELAY": DSN_NOTIFY_DELAY}


# The S rewriting rules: (address text as given, is the sender) -> the new address or None.
SmtpRewrite = Callable[[str, bool], "str | None"]


class CommandError(Exception):
    """A syntax error in a command: the reply to send (the session carries on)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


@record.dataclass(slots=True)
class MailCommand:
    sender: str  # "" for <>
    size: int | None = None
    body: str | None = None  # 7BIT or 8BITMIME
    smtputf8: bool = False
    ret: int | None = None  # DSN_RET_FULL / DSN_RET_HDRS
    envid: str | None = None
    auth: str | None = None  # AUTH=<mailbox>, xtext-decoded ("<>" for none)


@record.dataclass(slots=True)
class RcptCommand:
    recipient: str
    notify: int = 0  # DSN_* bits
    orcpt: str = ""  # "rfc822;address" as given


def split_verb(line: str) -> tuple[str, str]:
    """("MAIL", "FROM:<a@b> SIZE=10") from a command line without its line end."""
    verb, _, rest = line.partition(" ")
    return verb.upper(), rest.strip(" ")


def xtext_decode(text: str) -> str:
    """RFC 3461 xtext: "+XX" is the byte XX; anything else outside 33..126 is an error.

    A "+XX" that decodes to a control character (C0, DEL, C1) is an error too:
    ENVID is printable ASCII (RFC 3461 §4.4), ORCPT and AUTH= are addresses,
    and each goes on into the -H file, the log and the headers of a bounce,
    where a decoded CR or LF would start a line of the client's making.
    Refused here, at MAIL or RCPT, with 501, and not left to the spool writer,
    which would refuse it only after the whole message had been sent (451,
    which a client retries for days).
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "+":
            hexa = text[i + 1 : i + 3]
            if len(hexa) != 2 or any(h not in "0123456789ABCDEF" for h in hexa):
                raise CommandError(501, f'invalid xtext "+{hexa}"')
            code = int(hexa, 16)
            if code < 0x20 or 0x7F <= code <= 0x9F:
                raise CommandError(501, f'invalid xtext "+{hexa}": a control character')
            out.append(chr(code))
            i += 3
            continue
        if not ("!" <= c <= "~") or c == "=":
            raise CommandError(501, "invalid character in xtext")
        out.append(c)
        i += 1
    return "".join(out)


def _path_and_params(argument: str, keyword: str) -> tuple[str, list[str]]:
    """"FROM:<path> P1 P2" -> ("<path>", ["P1", "P2"])."""
    if not argument[: len(keyword)].upper() == keyword:
        raise CommandError(501, f"{keyword.rstrip(':')} must be followed by a colon and an address")
    rest = argument[len(keyword) :].lstrip(" ")
    if not rest:
        raise CommandError(501, "missing address")
    if rest.startswith("<"):
        # The path runs to the ">" that closes it, quotes respected.
        if '"' not in rest and "\\" not in rest:
            index = rest.find(">")
            if index >= 0:
                return rest[: index + 1], rest[index + 1 :].split()
        quoted = False
        escaped = False
        for index, c in enumerate(rest):
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = not quoted
            elif c == ">" and not quoted:
                return rest[: index + 1], rest[index + 1 :].split()
        raise CommandError(501, "missing > at the end of the address")
    path, _, params = rest.partition(" ")
    return path, params.split()


def _address(path: str, what: str) -> str:
    try:
        return parse_envelope_address(path)
    except AddressError as exc:
        raise CommandError(501, f"{escape(path)}: {exc.message}") from None


def _params(words: list[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for word in words:
        name, equals, value = word.partition("=")
        key = name.upper()
        if not key or key in params:
            raise CommandError(555, f"duplicate or empty parameter {name!r}")
        params[key] = value if equals else None
    return params


def parse_mail(argument: str, extensions: set[str], rewrite: SmtpRewrite | None = None) -> MailCommand:
    """MAIL FROM:<sender> [params]; parameters only for the extensions advertised.

    `rewrite` applies the S rewriting rules to the address as given (before
    it is parsed): it returns the new address, or None to keep the old."""
    path, words = _path_and_params(argument, "FROM:")
    rewritten = rewrite(path, True) if rewrite is not None else None
    sender = _address(path, "sender") if rewritten is None else rewritten
    mail = MailCommand(sender=taint(sender) if sender else "")
    for key, value in _params(words).items():
        if key == "SIZE" and "SIZE" in extensions:
            # ASCII digits only: str.isdigit() is also true of "²", which int() refuses.
            if value is None or not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise CommandError(501, "invalid SIZE value")
            mail.size = int(value)
        elif key == "BODY" and "8BITMIME" in extensions:
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise CommandError(501, "BODY must be 7BIT or 8BITMIME")
            mail.body = value.upper()
        elif key == "SMTPUTF8" and "SMTPUTF8" in extensions and value is None:
            mail.smtputf8 = True
        elif key == "RET" and "DSN" in extensions:
            if value is None or value.upper() not in ("FULL", "HDRS") or mail.ret is not None:
                raise CommandError(501, "RET must be FULL or HDRS")
            mail.ret = DSN_RET_FULL if value.upper() == "FULL" else DSN_RET_HDRS
        elif key == "ENVID" and "DSN" in extensions:
            if value is None or len(value) > 100:
                raise CommandError(501, "invalid ENVID value")
            mail.envid = taint(xtext_decode(value))
        elif key == "AUTH" and "AUTH" in extensions:
            if value is None:
                raise CommandError(501, "AUTH= needs a value")
            mail.auth = taint(xtext_decode(value))
        else:
            raise CommandError(555, f"unsupported parameter {key}")
    if not mail.smtputf8 and not sender.isascii():
        raise CommandError(553, "non-ASCII address without SMTPUTF8")
    return mail


def parse_rcpt(
    argument: str, extensions: set[str], smtputf8: bool, rewrite: SmtpRewrite | None = None
) -> RcptCommand:
    """RCPT TO:<recipient> [NOTIFY=...] [ORCPT=...]; `rewrite` as for parse_mail."""
    path, words = _path_and_params(argument, "TO:")
    rewritten = rewrite(path, False) if rewrite is not None else None
    if rewritten is not None:
        path = f"<{rewritten}>"
    if path.strip() in ("<>", ""):
        raise CommandError(501, "an empty address cannot be a recipient")
    if rewritten is not None:
        recipient = rewritten
    elif path.upper().startswith(("<POSTMASTER>",)) and "@" not in path:
        recipient = "postmaster"  # RFC 5321 §4.1.1.3: <Postmaster> without a domain
    else:
        recipient = _address(path, "recipient")
    if not smtputf8 and not recipient.isascii():
        raise CommandError(553, "non-ASCII address without SMTPUTF8")
    rcpt = RcptCommand(recipient=taint(recipient))
    for key, value in _params(words).items():
        if key == "NOTIFY" and "DSN" in extensions:
            rcpt.notify = _notify(value)
        elif key == "ORCPT" and "DSN" in extensions:
            if value is None or ";" not in value or len(value) > 500:
                raise CommandError(501, "ORCPT must be addr-type;xtext")
            kind, _, text = value.partition(";")
            rcpt.orcpt = Tainted(f"{kind};{xtext_decode(text)}")
        else:
            raise CommandError(555, f"unsupported parameter {key}")
    return rcpt


def parse_bdat(argument: str) -> tuple[int, bool]:
    """BDAT size [LAST] -> (size, last)."""
    words = argument.split()
    if not words or not (words[0].isascii() and words[0].isdigit()) or len(words[0]) > 18 or len(words) > 2 \
            or (len(words) == 2 and words[1].upper() != "LAST"):
        raise CommandError(501, "BDAT needs a size and, optionally, LAST")
    return int(words[0]), len(words) == 2


def _notify(value: str | None) -> int:
    if not value:
        raise CommandError(501, "NOTIFY needs a value")
    words = [w.upper() for w in value.split(",")]
    if words == ["NEVER"]:
        return DSN_HAS_NOTIFY | DSN_NOTIFY_NEVER
    bits = DSN_HAS_NOTIFY
    for word in words:
        bit = _NOTIFY_BITS.get(word)
        if bit is None:
            raise CommandError(501, "NOTIFY must be NEVER, or a list of SUCCESS, FAILURE and DELAY")
        bits |= bit
    return bits


def is_valid_helo(name: str) -> bool:
    """A HELO/EHLO argument as Exim's helo_accept_junk is off: a domain or an address literal."""
    if not name or len(name) > 255:
        return False
    if name.startswith("[") and name.endswith("]"):
        return all(c in "0123456789abcdefABCDEF.:IPv" for c in name[1:-1])
    return all(c.isalnum() or c in "-._" for c in name)
