"""Local submission: `mta -bm addr...`, `mta -t`, i.e. `sendmail` as cron and MUAs use it.

Reads a message on stdin (LF or CRLF line ends, 8-bit allowed), decides the
envelope sender by the caller's trust, qualifies unqualified addresses, adds
the headers a local message lacks (From:, Date:, Message-ID:, and Sender:
for an untrusted caller who claims another From:), and puts the message on
the spool.

Security: the caller is trusted only if root, mta_user, or in
trusted_users/trusted_groups; an untrusted -f is honoured only when
`untrusted_set_sender` allows it, otherwise the caller's own address is the
sender and a Sender: header records who really sent the message.

Diagnostics: every refusal is a SubmissionError with a one-line reason;
nothing is left on the spool after a refusal.
"""

from __future__ import annotations

from mta import record
from mta.config.caller import Caller, is_trusted
from mta.errors import AddressError, SubmissionError
from mta.log import escape
from mta.message.address import parse_envelope_address, parse_header_addresses, qualify, split_address
from mta.message.headers import (
    Header,
    HeaderSyntaxError,
    find,
    is_header_line,
    make_header,
    parse_header_block,
)
from mta.receive.body import CHUNK_SIZE, BodyStats, LocalBodyWriter
from mta.receive.reception import Arrival, Received, Reception

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

if TYPE_CHECKING:
    from mta.cli_args import Invocation
    from mta.config.loader import Config
    from mta.runtime import Runtime

# The characters of a display name that needs no quotes (RFC 5322 atext and spaces); a str test, not a
# pattern: cron's mail has no From:, and `re` would cost a `sendmail -t` milliseconds of imports.
_PLAIN_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~ -"


def is_mbox_from_line(line: bytes) -> bool:
    """Does `line` start with an mbox "From " line's "From " and a character that is not white
    space?  (str methods, for the pattern ``From \\S``: no `re` for a short command.)"""
    return line.startswith(b"From ") and bool(line[5:6].strip())  # (b"".strip() is empty)


@record.dataclass(slots=True)
class HeaderBlock:
    lines: list[str]  # header lines as text, each ending "\n"
    body_start: bytes  # first bytes of the body already read (a non-header line)
    message_ended: bool  # a lone dot (or EOF) ended the message within the headers
    from_line: str | None  # a leading mbox "From " line, removed


def read_header_block(stream: BinaryIO, header_maxsize: int, dot_ends: bool) -> HeaderBlock:
    """Read header lines from stdin until a blank line, a non-header line, or the end.

    Memory is bounded by header_maxsize; a header block that does not end
    within it is refused (usually a message with no blank line after
    binary data in its "headers").
    """
    lines: list[str] = []
    used = 0
    from_line: str | None = None
    first = True
    while True:
        raw = stream.readline(header_maxsize - used + 1)
        if not raw:
            return HeaderBlock(lines, b"", True, from_line)
        used += len(raw)
        if used > header_maxsize:
            raise SubmissionError(
                f"header section is larger than header_maxsize ({header_maxsize} bytes): "
                "is the blank line after the headers missing?"
            )
        line = raw[:-2] + b"\n" if raw.endswith(b"\r\n") else raw
        if first and is_mbox_from_line(line) and b":" not in line.split(b" ", 1)[0]:
            first = False
            from_line = line.decode("utf-8", "surrogateescape").rstrip("\n")
            continue
        first = False
        if line in (b"\n",):
            return HeaderBlock(lines, b"", False, from_line)
        if dot_ends and line in (b".\n", b"."):
            return HeaderBlock(lines, b"", True, from_line)
        if b"\0" in line:
            raise SubmissionError(f"NUL character in header line {len(lines) + 1}")
        text = line.decode("utf-8", "surrogateescape")
        if not text.endswith("\n"):
            text += "\n"  # the input ended in the middle of a line
        if is_header_line(text) or (lines and text[0] in " \t"):
            lines.append(text)
            if not line.endswith(b"\n"):
                return HeaderBlock(lines, b"", True, from_line)
            continue
        # Not a header: the body starts here, without a blank line (Exim does the same).
        return HeaderBlock(lines, raw, False, from_line)


def _body_chunks(stream: BinaryIO) -> Iterator[bytes]:
    read = getattr(stream, "read1", stream.read)
    while True:
        chunk = read(CHUNK_SIZE)
        if not chunk:
            return
        yield chunk


def parse_recipient_arguments(args: list[str], qualify_domain: str) -> list[str]:
    """Command-line recipients, as Exim reads them: each argument is an RFC 5322 address
    list, so ``a@b, c@d``, ``Some User <user@host>``, ``a(comment)@host`` and a source route
    ``@a:user@host`` (dropped) are all accepted."""
    result: list[str] = []
    for arg in args:
        if "\r" in arg or "\n" in arg or "\0" in arg:
            raise SubmissionError(f'bad recipient address "{escape(arg)}": it contains CR, LF or NUL')
        if arg.strip() in ("<>", ""):
            if arg.strip():
                raise SubmissionError("bad recipient address <>: an empty address cannot be a recipient")
            continue
        try:
            found = parse_header_addresses(arg)
        except AddressError as exc:
            raise SubmissionError(f'bad recipient address "{escape(arg.strip())}": {escape(exc.message)}') from None
        for entry in found:
            if not entry.address:
                raise SubmissionError("bad recipient address <>: an empty address cannot be a recipient")
            result.append(qualify(entry.address, qualify_domain))
    return result


def extract_recipients(headers: list[Header], qualify_domain: str) -> list[str]:
    """-t: recipients from To:, Cc:, Bcc: (or the Resent- ones if any exist); Bcc: is removed."""
    live = [h for h in headers if h.flag != "*"]
    resent = any(h.name.lower().startswith("resent-") for h in live)
    names = ("resent-to", "resent-cc", "resent-bcc") if resent else ("to", "cc", "bcc")
    recipients: list[str] = []
    for h in live:
        lname = h.name.lower()
        if lname not in names:
            continue
        value = h.text.split(":", 1)[1]
        try:
            found = parse_header_addresses(value)
        except AddressError as exc:
            raise SubmissionError(f"bad address in {h.name}: header: {exc.message}") from None
        for entry in found:
            if entry.address:
                recipients.append(qualify(entry.address, qualify_domain))
        if lname.endswith("bcc"):
            h.flag = "*"
    return recipients


@record.dataclass(slots=True)
class SenderDecision:
    sender_address: str
    set_untrusted: bool  # an untrusted caller's -f was honoured (untrusted_set_sender)


def decide_sender(requested: str | None, caller: Caller, trusted: bool, config: Config) -> SenderDecision:
    own = qualify(caller.login, config.qualify_domain)
    if requested is None:
        return SenderDecision(own, False)
    text = requested.strip()
    try:
        address = parse_envelope_address(text) if text not in ("", "<>") else ""
    except AddressError as exc:
        raise SubmissionError(f'bad sender address "{text}": {exc.message}') from None
    address = qualify(address, config.qualify_domain) if address else ""
    if trusted or address == "":
        return SenderDecision(address, False)
    allowed = config.main.untrusted_set_sender
    if allowed:
        from mta.config.lists import match_address
        from mta.config.variables import list_context

        if match_address(address, allowed, list_context(config)).matched:
            return SenderDecision(address, True)
    return SenderDecision(own, False)


def fix_local_headers(
    headers: list[Header], caller: Caller, trusted: bool, sender: str, sender_name: str | None, config: Config
) -> None:
    own = qualify(caller.login, config.qualify_domain)
    froms = find(headers, "from")
    if not froms:
        name = sender_name if sender_name is not None else caller.gecos
        address = sender if (trusted and sender) else own
        headers.append(make_header("From", f"{_display(name)} <{address}>" if name else address))
        return
    if trusted or not config.main.local_from_check:
        return
    for h in find(headers, "sender"):
        h.flag = "*"  # an untrusted caller's own Sender: is not believed
    try:
        value = froms[0].text.split(":", 1)[1]
        addresses = [qualify(e.address, config.qualify_domain) for e in parse_header_addresses(value)]
    except AddressError:
        addresses = []
    if [a.lower() for a in addresses] != [own.lower()]:
        name = sender_name if sender_name is not None else caller.gecos
        headers.append(make_header("Sender", f"{_display(name)} <{own}>" if name else own))


def _display(name: str) -> str:
    """A display name, quoted when it holds RFC 5322 specials."""
    # "." is an RFC 5322 special too: "Joe Q. Public" must be quoted.
    if name and not name.strip(_PLAIN_NAME_CHARS):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@record.dataclass(slots=True)
class LocalMessage:
    """A locally submitted message read from stdin: its body already written out."""

    arrival: Arrival
    headers: list[Header]
    body: BodyStats


def read_local_message(
    config: Config,
    stream: BinaryIO,
    body_out: BinaryIO,
    *,
    caller: Caller,
    trusted: bool,
    recipients: list[str],
    extract: bool,
    dot_ends: bool,
    sender: SenderDecision,
    sender_name: str | None,
    protocol: str = "local",
) -> LocalMessage:
    """Read one message from `stream`, the body into `body_out`; work out its envelope.

    Raises SubmissionError for anything that makes the message unacceptable.
    The caller owns `body_out` (the spool's -D file, or mua_wrapper's
    in-memory file) and removes it on error.
    """
    block = read_header_block(stream, config.main.header_maxsize, dot_ends)
    own = qualify(caller.login, config.qualify_domain)
    if block.from_line is not None and trusted and sender.sender_address == own:
        # A trusted caller's mbox-style "From sender date" line sets the sender (Exim does this).
        parts = block.from_line.split()
        if len(parts) > 1:
            try:
                sender = SenderDecision(qualify(parse_envelope_address(parts[1]), config.qualify_domain), False)
            except AddressError:
                pass  # not an address: keep the sender we had, as Exim does
    try:
        return _read_rest(
            config,
            stream,
            body_out,
            block,
            caller,
            trusted,
            recipients,
            extract,
            dot_ends,
            sender,
            sender_name,
            protocol,
        )
    except SubmissionError as exc:
        # What the sender wrote, for the copy in an error report (-oem).
        exc.header_text = "".join(block.lines)  # type: ignore[attr-defined]
        raise


def _read_rest(
    config: Config,
    stream: BinaryIO,
    body_out: BinaryIO,
    block: HeaderBlock,
    caller: Caller,
    trusted: bool,
    recipients: list[str],
    extract: bool,
    dot_ends: bool,
    sender: SenderDecision,
    sender_name: str | None,
    protocol: str,
) -> LocalMessage:
    own = qualify(caller.login, config.qualify_domain)
    try:
        headers = parse_header_block("".join(block.lines)) if block.lines else []
    except HeaderSyntaxError as exc:
        # The sender's mistake like any other refusal: reported by -oem/-oew mail too.
        raise SubmissionError(f"malformed header section: {exc}") from None
    line_limit = config.main.header_line_maxsize
    if line_limit and any(len(h.text) > line_limit for h in headers):
        raise SubmissionError(f"a header line is longer than header_line_maxsize ({line_limit})")
    writer = LocalBodyWriter(body_out, config.main.message_size_limit, dot_ends)
    if block.body_start:
        writer.feed(block.body_start)
    if not block.message_ended:
        for chunk in _body_chunks(stream):
            writer.feed(chunk)
            if writer.ended:
                break
    stats = writer.finish()
    if stats.zero_count and config.main.message_reject_nul:
        raise SubmissionError(
            f"message body contains {stats.zero_count} NUL byte(s); refused (message_reject_nul is set)"
        )
    all_recipients = list(recipients)
    if extract:
        found = extract_recipients(headers, config.qualify_recipient)
        if config.main.extract_addresses_remove_arguments and recipients:
            removed = {r.lower() for r in recipients}
            all_recipients = [r for r in found if r.lower() not in removed]
        else:
            all_recipients = found + all_recipients
        if not all_recipients:
            raise SubmissionError("no recipients found in To:, Cc: or Bcc: (with -t)")
    if not all_recipients:
        raise SubmissionError("no recipients given")
    limit = config.main.recipients_max
    if limit and len(all_recipients) > limit:
        raise SubmissionError(f"too many recipients ({len(all_recipients)}; recipients_max is {limit})")
    # The addresses in the headers are qualified with the envelope's rewriting (mta.receive.reception).
    fix_local_headers(headers, caller, trusted, sender.sender_address, sender_name, config)
    arrival = Arrival(
        sender_address=sender.sender_address,
        recipients=_dedupe(all_recipients),
        received_protocol=protocol,
        caller_login=caller.login,
        caller_uid=caller.uid,
        caller_gid=caller.gid,
        ident=caller.login,
        # Exim sets $authenticated_id / $authenticated_sender for every local submission
        # (-auth_id / -auth_sender in -H): the caller's login and its qualified address.
        auth_id=caller.login,
        auth_sender=own,
        local=True,
        sender_set_untrusted=sender.set_untrusted,
        allow_unqualified=True,
    )
    return LocalMessage(arrival, headers, stats)


def receive_local(
    runtime: Runtime,
    stream: BinaryIO,
    *,
    keep_lock: bool = False,
    **reading: Any,
) -> Received:
    """Read one message from `stream` and spool it; raise SubmissionError on refusal.

    `reading` holds the keyword arguments of read_local_message.  With
    `keep_lock`, the message's lock is handed over in `Received.lock` (for
    an immediate delivery); otherwise it is released.
    """
    reception = Reception(runtime)
    try:
        message = read_local_message(runtime.config, stream, reception.data_file, **reading)
        if runtime.config.main.acl_not_smtp:
            _check_not_smtp(runtime, message)
        received = reception.accept(message.arrival, message.headers, message.body)
    except SubmissionError as exc:
        # Keep what was read for an error report to the sender (-oem), then forget it.
        header_text = getattr(exc, "header_text", "").encode("utf-8", "surrogateescape")
        exc.copy = header_text + b"\n" + _read_back(reception)  # type: ignore[attr-defined]
        reception.abort()
        raise
    except BaseException:
        reception.abort()
        raise
    if keep_lock:
        received.lock = reception.release()
    else:
        reception.close()
    return received


def _read_back(reception: Reception, limit: int = 1024 * 1024) -> bytes:
    """The body written so far (up to `limit` bytes), for a copy in an error report."""
    data_file = reception.data_file
    data_file.flush()
    data_file.seek(0)
    data_file.readline()  # the "ID-D" line
    body = data_file.read(limit)
    data_file.seek(0, 2)
    return body


def _dedupe(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for address in addresses:
        local, domain = split_address(address)
        key = f"{local}@{domain.lower()}"
        if key not in seen:
            seen.add(key)
            result.append(address)
    return result


def submission_envelope(inv: Invocation, caller: Caller, config: Config) -> tuple[bool, list[str], SenderDecision]:
    """From a -bm/-t command line and its caller: (trusted, command-line recipients, sender)."""
    m = config.main
    trusted = is_trusted(caller, m.trusted_users, m.trusted_groups, m.mta_user)
    recipients = parse_recipient_arguments(inv.args, config.qualify_recipient)
    if not inv.extract_recipients and not recipients:
        raise SubmissionError("no recipients given on the command line (use -t to take them from the headers)")
    return trusted, recipients, decide_sender(inv.sender, caller, trusted, config)


def _check_not_smtp(runtime: Runtime, message: LocalMessage) -> None:
    """acl_not_smtp: the ACL for messages that do not come by SMTP, run once the message is read.
    Anything but accept refuses the submission (Exim: there is no "try later" outside SMTP).
    asyncio is imported only here: a sendmail without this ACL never pays for it."""
    import asyncio

    from mta.message.headers import header_lookup
    from mta.receive.acl import AclContext, AclEngine, AclStage
    from mta.receive.acl_log import log_rejection

    arrival = message.arrival
    texts = [h.text for h in message.headers if h.flag != "*"]
    ctx = AclContext(
        stage=AclStage.NOT_SMTP,
        sender_address=arrival.sender_address,
        recipients=list(arrival.recipients),
        received_protocol=arrival.received_protocol,
        ident=arrival.caller_login,
        headers=header_lookup(message.headers),
        header_lines=lambda: texts,
        message_size=message.body.size,
    )
    result = asyncio.run(AclEngine(runtime).check(ctx))
    if result.verb in ("accept", "discard"):
        return
    log_rejection(runtime.logger, result, ctx)
    raise SubmissionError(result.user_message or "message rejected by the local policy (acl_not_smtp)")
