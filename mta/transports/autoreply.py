"""autoreply transport: generate a new message (a vacation reply, an acknowledgement) instead of a copy.

The reply is described either by the address (`item.reply`, a ReplyItem a
filter's ``mail``/``vacation`` made: its values are used as they are, the
transport's own message options are then ignored, as Exim's autoreply.c
does) or by the transport's options, expanded for the address.  It is sent
as a new message with an empty envelope sender (like a bounce, so it can
never start a mail loop), with ``In-Reply-To:``, ``References:`` and
``Auto-Submitted: auto-replied``; recipients come from its To:, Cc: and Bcc:
(sendmail -t).  The new message is submitted exactly as the delivery's user
would submit it with ``sendmail`` (`DeliveryEnv.submit`): through the
daemon's submission socket or its drop directory when this process cannot
write the spool, so it gets that user's U= in the log and is on disk
(fsynced) before this delivery counts as done.

No reply is sent, and the address counts as delivered (Exim's "no
recipients" case), when:

* the message is itself automatic (RFC 3834): its envelope sender is empty
  (a bounce), it has ``Auto-Submitted:`` other than ``no``, ``Precedence:``
  bulk, list or junk, or a mailing-list header (``List-Id:``, ``List-Help:``,
  ``List-Subscribe:``, ``List-Unsubscribe:``, ``List-Post:``, ``List-Owner:``,
  ``List-Archive:``).  Exim leaves these tests to the filter (``personal``);
  mta makes them here too, so a router that uses this transport directly
  cannot answer a list or a bounce either.
* never_mail removed every recipient, or there were none.
* ``once`` says this To: was already answered (within ``once_repeat``).

Header values (from, reply_to, to, cc, bcc, subject) may carry data from
the message (``Re: $h_subject:``, ``$reply_address``): a line break in such
data becomes a fold (mta.message.headers.fold_message_data), so it can never
start a header line of its own; any other non-printing character fails the
delivery, as in Exim.  File names (file, once, log) must not come from the
message (tainted), and are opened as the delivery's user.

The ``once`` record is a plain text file of ``<time> <to>`` lines, locked
with fcntl while it is read, the reply sent and the record updated: two
deliveries at once can therefore not both answer (Exim's DBM file has no
such lock), and the user can read or edit it.  ``once_file_size`` bounds it:
the oldest lines go first.  It is updated only once the reply is on the
spool: a failed submission defers and tries again, where Exim would rather
miss a reply.

Runs in the delivery child, already as the delivery user (mta.deliver.local_exec).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile

from mta import record
from mta.config.lists import match_address
from mta.config.variables import list_context
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, ExpansionError, FailError
from mta.log import log_timestamp
from mta.message.address import AddressError, HeaderAddress, parse_header_addresses
from mta.message.headers import fold_message_data, reply_references
from mta.route.item import AddressItem, ReplyItem
from mta.taint import file_name_refused, is_tainted
from mta.transports import _local
from mta.transports.base import DeliveryEnv, LocalTransport, OutgoingMessage, TransportOptions
from mta.transports.write import WriteSpec, added_lines, header_edits, transport_return_path
from mta.values import parse_time

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, ClassVar

# The sendmail arguments of the reply: recipients from its headers, a lone "." does not end it,
# and an empty envelope sender (Exim's child_open_exim).
SUBMIT_ARGUMENTS = ["-t", "-oi", "-f", "<>"]
# Headers that mark a message as coming from a mailing list (RFC 2369, RFC 2919), as Exim's `personal`.
LIST_HEADERS = frozenset(
    {"list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post", "list-owner", "list-archive"}
)
# The header options, in the order the reply's header lines are written (Exim's).
_HEADER_FIELDS = (
    ("from_", "From"),
    ("reply_to", "Reply-To"),
    ("to", "To"),
    ("cc", "Cc"),
    ("bcc", "Bcc"),
    ("subject", "Subject"),
)
# Exim's transport_write_message stops copying the body in buffers of this size.
_DELIVER_IN_BUFFER_SIZE = 8192
_ONCE_LINE = re.compile(r"(\d+) (.*)")


@options_table
class AutoreplyOptions(TransportOptions):
    """Options of the autoreply transport."""

    # "from" is a Python keyword: the class namespace takes it by name.
    vars()["from"] = option(None, Kind.STRING, "The From: of the reply, when the transport describes it.", expand=True)
    reply_to: str | None = option(None, Kind.STRING, "The Reply-To: of the reply.", expand=True)
    to: str | None = option(
        None,
        Kind.STRING,
        "Recipients of the reply and its To: header (e.g. `$reply_address`), when the transport describes it.",
        expand=True,
    )
    cc: str | None = option(None, Kind.STRING, "Recipients of the reply and its Cc: header.", expand=True)
    bcc: str | None = option(None, Kind.STRING, "Blind-copy recipients of the reply (no header is sent).", expand=True)
    subject: str | None = option(
        None,
        Kind.STRING,
        "The Subject: of the reply; `Re: $h_subject:` is safe (a line break in it cannot start a header).",
        expand=True,
    )
    headers: str | None = option(
        None,
        Kind.STRING,
        "More header lines for the reply, separated by `\\n`; written after the others.",
        expand=True,
    )
    text: str | None = option(None, Kind.STRING, "The body of the reply (before the contents of `file`).", expand=True)
    file: str | None = option(
        None,
        Kind.STRING,
        "A file whose contents make the body of the reply (after `text`); opened as the delivery user, "
        "and its name must not come from the message.",
        expand=True,
    )
    file_expand: bool = option(False, Kind.BOOL, "Expand each line of `file` as it is copied.")
    file_optional: bool = option(False, Kind.BOOL, "A missing or unreadable `file` is no error (else defer).")
    log: str | None = option(
        None, Kind.STRING, "A file to which a record of each reply sent (or not sent) is appended.", expand=True
    )
    mode: int = option(0o600, Kind.OCTAL, "Mode of the `log` and `once` files when they are created.")
    never_mail: str | None = option(
        None,
        Kind.LIST,
        "Addresses never sent a reply: they are removed from To:, Cc: and Bcc:; with none left, no reply is sent.",
        expand=True,
    )
    once: str | None = option(
        None,
        Kind.STRING,
        "A file recording who was answered and when: a To: already in it is not answered again "
        "(see `once_repeat`). Unset or empty: always answer.",
        expand=True,
    )
    once_file_size: int = option(
        0, Kind.SIZE, "Largest size of the `once` file; the oldest records are dropped to keep under it. 0: no limit."
    )
    once_repeat: str = option(
        "0s",
        Kind.STRING,
        "After this time (expanded, e.g. `7d`) a To: in the `once` file is answered again; 0 means never.",
        expand=True,
    )
    return_message: bool = option(
        False,
        Kind.BOOL,
        "Append a copy of the original message to the reply (up to bounce_return_size_limit of its body); "
        "the generic headers_add, headers_remove, headers_only and body_only apply to that copy.",
    )


class AutoreplyTransport(LocalTransport):
    """Generate a new message in answer to the one being delivered (vacation, acknowledgement);
    the message itself goes nowhere.  See docs/transports.md.
    """

    options: AutoreplyOptions
    options_class: ClassVar[type[DriverOptions]] = AutoreplyOptions
    generates_messages: ClassVar[bool] = True

    def check(self, config: Any) -> None:
        o = self.options
        self._config = config

        def error(text: str) -> ConfigError:
            return ConfigError(f"autoreply transport {self.name}: {text}", *self.source)

        if o.once_repeat and "$" not in o.once_repeat:
            try:
                parse_time(o.once_repeat)
            except ValueError as exc:
                raise error(f'once_repeat: "{o.once_repeat}" is not a time ({exc})') from None
        names = (
            "from",
            "reply_to",
            "to",
            "cc",
            "bcc",
            "subject",
            "headers",
            "text",
            "file",
            "log",
            "once",
            "once_repeat",
            "never_mail",
            "headers_add",
            "headers_remove",
        )
        _local.check_expansions(((name, getattr(o, name)) for name in names), error)

    # -- delivery ---------------------------------------------------------------------------------

    def deliver(self, message: OutgoingMessage, item: AddressItem, env: DeliveryEnv) -> None:
        reply = item.reply if item.reply is not None else self._reply_from_options(item, env)
        reply = _checked_headers(reply, self.name)
        log = _file_name(reply.log, "logfile", self.name) if reply.log else None
        automatic = automatic_message(message)
        if automatic is not None:
            self._log(log, env, f"  not sent: the message {automatic}\n")
            return
        reply = self._without_never_mail(reply, item, env)
        if not (reply.to or reply.cc or reply.bcc):
            return  # nobody to send it to: Exim's "no recipients", not an error
        once = _file_name(reply.once, "once file", self.name) if reply.once and reply.to else None
        with _OnceFile.open(once, self.options.mode, self.name) as record:
            key = " ".join(reply.to.split()) if reply.to else ""
            if record is not None and record.answered(key, env.now, reply.once_repeat):
                self._log(log, env, f"  previously sent to {key[:200]}\n")
                return
            with self._body_file(reply) as body_file:
                self._send(message, item, env, reply, body_file)
            if record is not None:
                record.remember(key, env.now, self.options.once_file_size)
        self._log(log, env, "".join(f"  {name}: {value}\n" for name, value in _shown(reply)))

    def _reply_from_options(self, item: AddressItem, env: DeliveryEnv) -> ReplyItem:
        """The reply the transport's options describe, expanded for `item` (Exim: failure fails)."""
        o = self.options
        values: dict[str, Any] = {}
        for name in ("from", "reply_to", "to", "cc", "bcc", "subject", "headers", "text", "file", "log", "once"):
            text = getattr(o, name)
            values[name] = self._expand(name, text, item, env) if text is not None else None
        repeat = self._expand("once_repeat", o.once_repeat, item, env) if o.once_repeat else "0"
        try:
            seconds = parse_time(repeat) if repeat.strip() else 0
        except ValueError:
            raise FailError(f'Invalid time value "{repeat}" for "once_repeat" in {self.name} transport') from None
        return ReplyItem(
            to=values["to"],
            cc=values["cc"],
            bcc=values["bcc"],
            from_=values["from"],
            reply_to=values["reply_to"],
            subject=values["subject"],
            headers=values["headers"],
            text=values["text"],
            file=values["file"],
            file_expand=o.file_expand,
            return_message=o.return_message,
            once=values["once"],
            once_repeat=seconds,
            log=values["log"],
        )

    def _expand(self, name: str, text: str, item: AddressItem | None, env: DeliveryEnv) -> str:
        try:
            return env.expand(text, item)
        except ExpansionError as exc:
            raise FailError(f'Expansion of "{text}" failed in {self.name} transport: {exc.message}') from None

    def _without_never_mail(self, reply: ReplyItem, item: AddressItem, env: DeliveryEnv) -> ReplyItem:
        """never_mail: its addresses are dropped from To:, Cc: and Bcc: (None when none is left)."""
        text = self.options.never_mail
        if not text:
            return reply
        try:
            never = env.expand(text, item)
        except ExpansionError as exc:
            raise FailError(
                f'Failed to expand "{text}" for "never_mail" in {self.name} transport: {exc.message}'
            ) from None
        config = self._config if getattr(self, "_config", None) is not None else _runtime_config(env)
        context = list_context(config)

        def keep(address: HeaderAddress) -> bool:
            return not match_address(address.address, never, context).matched

        return record.replace(
            reply, to=_filtered(reply.to, keep), cc=_filtered(reply.cc, keep), bcc=_filtered(reply.bcc, keep)
        )

    def _body_file(self, reply: ReplyItem) -> _Optional:
        """The reply's `file`, open for reading as the delivery user (nothing if file_optional and unreadable)."""
        if not reply.file:
            return _Optional(None)
        path = _file_name(reply.file, "file", self.name)
        try:
            return _Optional(open(path, "rb"))
        except OSError as exc:
            if self.options.file_optional:
                return _Optional(None)
            raise DeferError(
                f"Failed to open file {path} when sending message from {self.name} transport: {exc.strerror}",
                errno=exc.errno or 0,
            ) from None

    # -- the new message --------------------------------------------------------------------------

    def _send(
        self,
        message: OutgoingMessage,
        item: AddressItem,
        env: DeliveryEnv,
        reply: ReplyItem,
        body_file: IO[bytes] | None,
    ) -> None:
        if env.submit is None:
            raise DeferError(f"{self.name} transport: no way to submit a new message from this delivery")
        with tempfile.SpooledTemporaryFile(max_size=1 << 20) as out:
            out.write(_local.encode(self._header_section(message, reply)))
            if reply.text:
                out.write(_local.encode(reply.text if reply.text.endswith("\n") else reply.text + "\n"))
            if body_file is not None:
                for line in body_file:
                    out.write(self._file_line(line, item, env) if reply.file_expand else line)
            if reply.return_message:
                self._write_copy(out, message, item, env)
            out.seek(0)
            outcome = env.submit(list(SUBMIT_ARGUMENTS), out)  # type: ignore[arg-type]
        if outcome.status != 0:
            raise DeferError(f"Failed to send message from {self.name} transport ({outcome.note or outcome.status})")
        if outcome.message_id:
            env.generated.append(outcome.message_id)

    def _header_section(self, message: OutgoingMessage, reply: ReplyItem) -> str:
        """From: ... Subject:, In-Reply-To:, References:, Auto-Submitted:, then `headers`, then the blank line."""
        lines = [f"{name}: {getattr(reply, field)}\n" for field, name in _HEADER_FIELDS if getattr(reply, field)]
        message_id = message.header_value("message-id")
        if message_id:
            lines.append(f"In-Reply-To: {' '.join(message_id.split())}\n")
        earlier = message.header_value("references") or message.header_value("in-reply-to")
        references = reply_references(message_id, earlier)
        if references:
            lines.append(f"References: {references}\n")
        lines.append("Auto-Submitted: auto-replied\n")
        if reply.headers:
            # Header lines only: a blank line or a non-header in them would start the body early.
            lines += added_lines(reply.headers, f"headers for the {self.name} transport")
        return "".join(lines) + "\n"

    def _file_line(self, line: bytes, item: AddressItem, env: DeliveryEnv) -> bytes:
        """A line of `file` with file_expand: expanded, or as it is if the expansion fails (Exim)."""
        text = line.decode("utf-8", "surrogateescape")
        try:
            return _local.encode(env.expand(text, item))
        except ExpansionError:
            return line

    def _write_copy(self, out: IO[bytes], message: OutgoingMessage, item: AddressItem, env: DeliveryEnv) -> None:
        """return_message: the rubric and the original message (its body cut at bounce_return_size_limit)."""
        o = self.options
        if o.headers_only:
            rubric = "------ This is a copy of the message's header lines.\n"
        elif o.body_only:
            rubric = "------ This is a copy of the body of the message, without the headers.\n"
        else:
            rubric = "------ This is a copy of the message, including all the headers.\n"
        limit = 0 if o.headers_only else _return_size_limit(env)
        body_size = _body_size(message)
        if limit > 0:
            shown = (limit // _DELIVER_IN_BUFFER_SIZE + 1) * _DELIVER_IN_BUFFER_SIZE
            if body_size > shown:
                rubric += (
                    f"------ The body of the message is {body_size} characters long; only the first\n"
                    f"------ {(shown // 1000) * 1000} or so are included here.\n"
                )
            else:
                limit = 0
        out.write(_local.encode(f"\n{rubric}\n"))
        return_path = transport_return_path(self, message, item, env)
        edits = header_edits(self, message, [item], env, return_path)
        spec = WriteSpec(headers_only=o.headers_only, body_only=o.body_only)
        written = 0
        for chunk in _local.spool_chunks(message, spec, edits):
            if limit and written + len(chunk) > limit:
                # Past the limit: the copy ends with the line that crosses it.
                end = chunk.find(b"\n", max(limit - written, 0))
                out.write(chunk if end < 0 else chunk[: end + 1])
                if end >= 0:
                    break
            else:
                out.write(chunk)
            written += len(chunk)

    def _log(self, path: str | None, env: DeliveryEnv, text: str) -> None:
        """Append a record to the `log` file, as the delivery user; a log that cannot be written is
        no reason to send the reply again (Exim ignores such failures too)."""
        if not path:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.options.mode)
        except OSError:
            return
        try:
            os.write(fd, _local.encode(f"{log_timestamp(env.now)}\n{text}"))
        except OSError:
            pass
        finally:
            os.close(fd)


# -- the message being answered -----------------------------------------------------------------------


def automatic_message(message: OutgoingMessage) -> str | None:
    """Why `message` must get no automatic reply (RFC 3834 section 2), or None."""
    if not message.sender_address:
        return "has an empty envelope sender (a bounce)"
    for header in message.headers:
        if header.flag == "*":
            continue
        name = header.name.lower()
        value = header.unfolded_value().lower()
        if name == "auto-submitted" and value.split(";")[0].strip() != "no":
            return f"is automatic (Auto-Submitted: {value[:40]})"
        if name == "precedence" and value.split(";")[0].strip() in ("bulk", "list", "junk"):
            return f"is bulk mail (Precedence: {value[:20]})"
        if name in LIST_HEADERS:
            return f"is from a mailing list ({header.name}:)"
    return None


def _body_size(message: OutgoingMessage) -> int:
    with message.open_body() as body:
        return os.fstat(body.fileno()).st_size - body.tell()


def _return_size_limit(env: DeliveryEnv) -> int:
    runtime = env.extra.get("runtime")
    return int(runtime.config.main.bounce_return_size_limit) if runtime is not None else 0


def _runtime_config(env: DeliveryEnv) -> Any:
    runtime = env.extra.get("runtime")
    if runtime is None:
        raise DeferError("never_mail needs the configuration, which this delivery does not have")
    return runtime.config


# -- the reply's values ---------------------------------------------------------------------------------


def _checked_headers(reply: ReplyItem, transport: str) -> ReplyItem:
    """The header values with message data unable to start a header line; a non-printing
    character left (from the configuration itself) fails, as Exim's checkexpand."""
    values = {}
    for field, name in _HEADER_FIELDS:
        value = getattr(reply, field)
        if value is None:
            continue
        value = fold_message_data(value)
        for index, char in enumerate(value):
            if char.isprintable() or char == "\t":
                continue
            if char == "\n" and value[index + 1 : index + 2] in (" ", "\t"):
                continue
            raise FailError(
                f"Expansion of the {name}: value in {transport} transport contains non-printing character {ord(char)}"
            )
        values[field] = value
    return record.replace(reply, **values)


def _file_name(path: str, what: str, transport: str) -> str:
    """A file name for the reply: never from the message (beyond one checked component), absolute."""
    if is_tainted(path) and file_name_refused(path):
        raise DeferError(f"Tainted '{path}' ({what} for {transport} transport) not permitted", errno=errno.EACCES)
    if not path.startswith("/") or "\0" in path:
        raise DeferError(f'{what} "{path}" for {transport} transport is not an absolute path')
    return path


def _filtered(value: str | None, keep: Any) -> str | None:
    """An address list without the addresses `keep` refuses; None when none is left."""
    if not value:
        return value
    try:
        addresses = parse_header_addresses(value)
    except AddressError:
        return value  # not an address list we can edit: left alone, as Exim gives up on a syntax error
    kept = [a for a in addresses if keep(a)]
    if len(kept) == len(addresses):
        return value
    return ", ".join(_mailbox(a) for a in kept) or None


def _mailbox(address: HeaderAddress) -> str:
    if not address.display_name:
        return address.address
    name = address.display_name
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+", name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address.address}>"


def _shown(reply: ReplyItem) -> list[tuple[str, str]]:
    """The log file's lines for a reply sent (Exim's order)."""
    shown = [(name, getattr(reply, field)) for field, name in _HEADER_FIELDS if name != "Reply-To"]
    return [(name, value) for name, value in shown if value]


# -- the once file -------------------------------------------------------------------------------------


class _Optional:
    """A context manager for a file that may be absent."""

    def __init__(self, file: IO[bytes] | None) -> None:
        self.file = file

    def __enter__(self) -> IO[bytes] | None:
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


class _OnceFile:
    """The `once` record: ``<unix time> <to>`` lines, locked (fcntl) from the check until the update."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path = fd, path
        self.entries: dict[str, int] = {}
        with os.fdopen(os.dup(fd), "rb") as stream:
            for raw in stream:
                match = _ONCE_LINE.fullmatch(raw.decode("utf-8", "surrogateescape").rstrip("\n"))
                if match is not None:  # a line cut short by a crash is forgotten, not an error
                    self.entries.pop(match.group(2), None)
                    self.entries[match.group(2)] = int(match.group(1))

    @classmethod
    def open(cls, path: str | None, mode: int, transport: str) -> Any:
        if path is None:
            return _Optional(None)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except OSError as exc:
            raise DeferError(
                f'Failed to open "once" file {path} when sending message from {transport} transport: {exc.strerror}',
                errno=exc.errno or 0,
            ) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            return _LockedOnce(cls(fd, path))
        except OSError as exc:
            os.close(fd)
            raise DeferError(f'error while reading "once" file {path}: {exc.strerror}', errno=exc.errno or 0) from None

    def answered(self, key: str, now: float, repeat: int) -> bool:
        then = self.entries.get(key)
        return then is not None and (repeat <= 0 or now - then < repeat)

    def remember(self, key: str, now: float, size_limit: int) -> None:
        """Record `key` as answered now; the whole file is rewritten in one write (it stays small)."""
        self.entries.pop(key, None)
        self.entries[key] = int(now)
        lines = [f"{then} {address}\n" for address, then in self.entries.items()]
        if size_limit > 0:
            while len(lines) > 1 and sum(len(_local.encode(line)) for line in lines) > size_limit:
                lines.pop(0)  # the oldest entry goes first
        data = _local.encode("".join(lines))
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            os.fsync(self.fd)
        except OSError:
            # The reply is sent; a record that cannot be written only means it may be sent again.
            return


class _LockedOnce:
    def __init__(self, record: _OnceFile) -> None:
        self.record = record

    def __enter__(self) -> _OnceFile:
        return self.record

    def __exit__(self, *exc: object) -> None:
        os.close(self.record.fd)  # closing releases the lock
