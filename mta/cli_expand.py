"""`mta -be`, `mta -bem FILE` and `mta -be -Mset ID`: expansion testing, as Exim's -be.

Each string (the arguments, or else lines read from the standard input)
is expanded and its result printed on its own line; a failure prints
``Failed: <message>``, also on the standard output, and the exit status is
0 either way, exactly as Exim does.  Reading the standard input, a prompt
``> `` comes before each line, a line ending in a backslash continues on
the next (whose leading white space is dropped), and end of input prints a
newline.  Output is the bytes of the result, unchanged.

As in Exim, a string is first macro-substituted with the configuration's
macros (administrators only), and a line starting with a capital letter
defines a macro (``NAME = value``, ``NAME == value`` to redefine), which
later lines can use.

-bem FILE reads a message from FILE, as received from the command line, so
that $h_..., $message_body, $message_size and the like have values.
-Mset ID (administrators only) gives the variables of message ID on the
spool: envelope, headers and body.

Security: the strings come from the person running the command and are
configuration text for this purpose; the message's own data (from -bem or
the spool) is tainted as always.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from mta.cli_args import Invocation
from mta.config.loader import Config, parse_macro_definition
from mta.errors import ExpansionError, MtaError
from mta.expand.context import ExpandContext, HeaderLines
from mta.expand.expander import expand
from mta.expand.textcodecs import to_bytes
from mta.taint import Tainted


class ExpansionTestError(MtaError):
    """A -be run that cannot go on (bad macro definition, unreadable -bem file)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def run_expansion_test(inv: Invocation, config: Config, admin: bool, out: BinaryIO | None = None) -> int:
    out = out if out is not None else sys.stdout.buffer
    session = ExpansionTest(config, inv, admin)
    if inv.args:
        for text in inv.args:
            out.write(session.line(text))
            out.flush()
        return 0
    for text in _stdin_lines(out):
        out.write(session.line(text))
        out.flush()
    return 0


def _stdin_lines(out: BinaryIO) -> Iterator[str]:
    """Exim's get_stdinput() without readline: prompt, continuation lines, newline at the end."""
    stdin = sys.stdin.buffer
    while True:
        out.write(b"> ")
        out.flush()
        pieces: list[str] = []
        had_input = False
        first = True
        while True:
            raw = stdin.readline()
            if not raw:
                break
            had_input = True
            text = raw.decode("utf-8", "surrogateescape").rstrip(" \t\n\r\f\v")
            if not first:
                text = text.lstrip(" \t\n\r\f\v")
            first = False
            pieces.append(text)
            if not text or not text.endswith("\\"):
                break
            pieces[-1] = text[:-1]
        if not had_input:
            out.write(b"\n")
            return
        yield "".join(pieces)


class ExpansionTest:
    """One -be session: the context, and the macros defined so far."""

    def __init__(self, config: Config, inv: Invocation, admin: bool) -> None:
        self.config = config
        # Only administrators may see the configuration's macros this way (Exim's rule).
        self.macros: dict[str, str] = dict(config.macros) if admin else {}
        self.ctx = build_context(config, inv, admin)

    def line(self, text: str) -> bytes:
        text = macros_expand(text, self.macros)
        if text[:1].isupper() and text[:1].isascii():
            return self.define(text)
        try:
            result = expand(text, self.ctx)
        except ExpansionError as exc:
            return b"Failed: " + to_bytes(exc.message) + b"\n"
        return to_bytes(result) + b"\n"

    def define(self, text: str) -> bytes:
        definition = parse_macro_definition(text)
        if definition is None:
            raise ExpansionTestError("malformed macro definition")
        name, op, value = definition
        if name in self.macros and op == "=":
            raise ExpansionTestError(f'macro "{name}" is already defined (use "==" if you want to redefine it)')
        self.macros[name] = value
        return f"Defined macro '{name}'\n".encode()


def _candidate(text: str, i: int) -> int:
    """The next place a macro name could start: a capital, or "_" before one."""
    n = len(text)
    while i < n and not ("A" <= text[i] <= "Z" or (text[i] == "_" and "A" <= text[i + 1 : i + 2] <= "Z")):
        i += 1
    return i


def macros_expand(text: str, macros: dict[str, str]) -> str:
    """Exim's macros_expand() for a -be line, exactly: every occurrence of each macro
    name is replaced (it need not be a whole word), macros in the order they were
    defined, not in the name of a ``NAME = value`` definition, never rescanning a
    replacement for the same macro."""
    start = 0
    if text[:1].isascii() and text[:1].isupper():
        end = 0
        while end < len(text) and ((text[end].isascii() and text[end].isalnum()) or text[end] == "_"):
            end += 1
        while end < len(text) and text[end] in " \t\n\r\f\v":
            end += 1
        if text[end : end + 1] == "=":
            start = end
    start = _candidate(text, start)
    for name, value in macros.items():
        start = _candidate(text, start)
        if start >= len(text):
            break
        at = text.find(name, start)
        while at >= 0:
            text = text[:at] + value + text[at + len(name) :]
            at = text.find(name, _candidate(text, at + len(value)))
    return text


def build_context(config: Config, inv: Invocation, admin: bool) -> ExpandContext:
    from mta.config.caller import current_caller
    from mta.config.variables import config_variables, expansion_settings, list_matcher

    caller = current_caller()
    variables: dict[str, Any] = dict(config_variables(config))
    sender = inv.sender if inv.sender is not None else f"{caller.login}@{config.qualify_domain}"
    variables.update(
        {
            # What Exim's -be sets for the person running it.
            "sender_address": sender,
            "sender_ident": caller.login,
            "authenticated_id": caller.login,
            "authenticated_sender": f"{caller.login}@{config.qualify_domain}",
            "sender_host_address": inv.host_address,
            "sender_host_name": inv.host_name,
            "sender_helo_name": inv.helo_name,
            "received_protocol": inv.receive_protocol,
            "interface_address": inv.interface_address,
        }
    )
    if inv.sender_ident is not None:
        variables["sender_ident"] = inv.sender_ident
    if inv.auth_id is not None:
        variables["authenticated_id"] = inv.auth_id
    if inv.auth_sender is not None:
        variables["authenticated_sender"] = inv.auth_sender
    if inv.authenticator is not None:
        variables["sender_host_authenticated"] = inv.authenticator
    headers = None
    if inv.expansion_message_id is not None:
        if not admin:
            raise ExpansionTestError("permission denied")
        message_vars, headers = spooled_message(config, inv.expansion_message_id)
        variables.update(message_vars)
    elif inv.expansion_file is not None:
        message_vars, headers = message_file(config, inv.expansion_file, sender)
        variables.update(message_vars)
    return ExpandContext(
        variables=variables,
        headers=headers,
        match_list=list_matcher(config),
        **expansion_settings(config),  # type: ignore[arg-type]
    )


def message_file(config: Config, path: str, sender: str) -> tuple[dict[str, object], HeaderLines]:
    """-bem: the message in `path` as if just received from the command line."""
    from mta.expand.variables import body_variables
    from mta.spool.ids import new_message_id

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ExpansionTestError(f"failed to open {path}: {exc.strerror}") from None
    raw = raw.replace(b"\r\n", b"\n")
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""  # an mbox "From " line is not a header
    if raw.startswith(b"\n"):
        head, separator, body = b"", b"\n", raw[1:]
    else:
        head, separator, body = raw.partition(b"\n\n")
        head += b"\n" if separator else b""
    lines = _header_lines(head.decode("utf-8", "surrogateescape"))
    message_id = new_message_id()
    names = {line.split(":", 1)[0].strip().lower() for line in lines}
    from mta.expand.context import time_variables

    if "message-id" not in names:
        lines.append(f"Message-Id: <E{message_id}@{config.primary_hostname}>\n")
    if "date" not in names:
        lines.append(f"Date: {time_variables()['tod_full']}\n")
    header_count = head.count(b"\n") + (1 if head and not head.endswith(b"\n") else 0)
    body_lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    variables: dict[str, object] = {
        "message_id": message_id,
        "message_exim_id": message_id,
        "message_size": str(len(raw)),
        "message_linecount": str(header_count + (1 if separator else 0) + body_lines),
        **body_variables(lambda: body),
    }
    tainted = [Tainted(line) for line in lines]
    return variables, HeaderLines(lambda: tainted)


def _header_lines(head: str) -> list[str]:
    lines: list[str] = []
    for line in head.split("\n"):
        if not line:
            continue
        if line[0] in " \t" and lines:
            lines[-1] += line + "\n"
        else:
            lines.append(line + "\n")
    return lines


def spooled_message(config: Config, message_id: str) -> tuple[dict[str, object], HeaderLines]:
    """-Mset: the variables of a message on the spool."""
    from mta.deliver.message import message_size, message_variables, spool_headers
    from mta.expand.variables import body_variables
    from mta.message.headers import header_lookup
    from mta.spool.ids import is_message_id
    from mta.spool.store import Spool

    if not is_message_id(message_id):
        raise ExpansionTestError(f"{message_id} is not a message id")
    spool = Spool(config.main.spool_directory, config.main.split_spool_directory)
    try:
        envelope = spool.read_envelope(message_id)
        size = message_size(spool, envelope)
    except (MtaError, OSError) as exc:
        raise ExpansionTestError(f"Failed to load message {message_id}: {exc}") from None

    def read_body() -> bytes:
        with spool.open_body(message_id) as body:
            return body.read()

    variables: dict[str, object] = dict(message_variables(envelope, size))
    recipients = [r.address for r in envelope.recipients]
    variables.update(
        {
            "sender_address": envelope.sender_address,
            "return_path": envelope.sender_address,
            "recipients": ", ".join(recipients),
            "originator_uid": str(envelope.originator_uid),
            "originator_gid": str(envelope.originator_gid),
            "sender_host_authenticated": envelope.host_auth,
            **body_variables(read_body),
        }
    )
    return variables, header_lookup(spool_headers(envelope))
