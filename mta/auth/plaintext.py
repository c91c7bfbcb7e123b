"""The plaintext authenticator: PLAIN and LOGIN (RFC 4616, draft-murchison-sasl-login).

Server side, Exim style: the client's data, decoded and split at NUL bytes,
goes into $auth1, $auth2, $auth3, and `server_condition` decides::

    plain_server:
      driver = plaintext
      public_name = PLAIN
      server_prompts = :
      server_condition = ${if eq{$auth3}{${lookup{$auth2}lsearch{/etc/mta/passwd}}}}
      server_set_id = $auth2

    login_server:
      driver = plaintext
      public_name = LOGIN
      server_prompts = Username:: : Password::
      server_condition = ${if eq{$auth2}{${lookup{$auth1}lsearch{/etc/mta/passwd}}}}
      server_set_id = $auth1

PLAIN's one message is ``authzid NUL user NUL password``, so $auth1 is the
authorization id (usually empty), $auth2 the user, $auth3 the password.
LOGIN asks for each in turn: $auth1 the user, $auth2 the password.
`server_prompts` is a list (expanded, then split) of the challenges sent when
the client has not yet given that many items; data sent with the AUTH
command counts first.  Unset, it is ``:`` for PLAIN (one empty challenge,
RFC 4954) and ``Username:: : Password::`` for LOGIN, and empty otherwise.

Client side, the client sends fixed strings, Exim style::

    fixed_plain:
      driver = plaintext
      public_name = PLAIN
      client_send = ^username^${readfile{/etc/mta/smarthost.secret}{}}

    fixed_login:
      driver = plaintext
      public_name = LOGIN
      client_send = : username : ${readfile{/etc/mta/smarthost.secret}{}}

`client_send` is a colon list split *before* expansion, so a secret read
from a file may contain colons.  The first item is the initial response
sent with the AUTH command (an empty item: none); each later item answers
one 334 challenge, in order.  After expansion ``^`` becomes a NUL byte and
``^^`` a literal ``^`` (so a secret containing ``^`` must be written doubled
in its file).  A forced expansion failure cancels this authenticator; the
transport tries the next one.
"""

from __future__ import annotations

from mta.auth._common import (
    MAX_SERVER_ITEMS,
    AuthenticationCancelled,
    Authenticator,
    AuthenticatorOptions,
    Expand,
    Responses,
    ServerData,
    ServerSteps,
    Verdict,
)
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ExpansionError
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


@options_table
class PlaintextOptions(AuthenticatorOptions):
    client_send: str | None = option(
        None,
        Kind.STRING,
        "Client side: a colon list of strings, each expanded and sent in turn (first item: the initial response;"
        " empty for none); `^` in a result is a NUL byte, `^^` a literal `^`.",
        expand=True,
    )
    server_prompts: str | None = option(
        None,
        Kind.STRING,
        "Server side: a colon list (expanded, then split) of the challenges sent in turn while the client has"
        " given fewer items; unset: `:` for PLAIN, `Username:: : Password::` for LOGIN, none otherwise.",
        expand=True,
    )


# What Exim's documentation tells every administrator to write.
DEFAULT_PROMPTS = {"PLAIN": ":", "LOGIN": "Username:: : Password::"}


def prompt_list(text: str) -> list[str]:
    """The items of a prompt list; as in every Exim list, an empty last item is ignored (``:`` is one empty prompt)."""
    items = split_list(text)
    if len(items) > 1 and items[-1] == "":
        items.pop()
    return items


def circumflex(text: str) -> bytes:
    """Exim's client_send encoding: ``^`` is NUL, ``^^`` is ``^``."""
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        if raw[i : i + 2] == b"^^":
            out += b"^"
            i += 2
        elif raw[i : i + 1] == b"^":
            out += b"\0"
            i += 1
        else:
            out += raw[i : i + 1]
            i += 1
    return bytes(out)


class PlaintextAuthenticator(Authenticator):
    options: PlaintextOptions
    options_class: ClassVar[type[DriverOptions]] = PlaintextOptions

    @property
    def is_client(self) -> bool:
        return self.options.client_send is not None

    def client_responses(self, expand: Expand) -> Responses:
        items = split_list(self.options.client_send or "")
        if not items:
            raise AuthenticationCancelled(f"{self.name} authenticator: client_send is empty")
        first, rest = items[0], items[1:]
        initial = self._item(first, expand) if first else None
        yield initial
        for text in rest:
            yield self._item(text, expand)

    @property
    def is_server(self) -> bool:
        return self.options.server_condition is not None

    def server_steps(self, initial: bytes | None, data: ServerData) -> ServerSteps:
        # Exim's auth_plaintext_server(): prompts are expanded before anything is read.
        text = self.options.server_prompts
        if text is None:
            text = DEFAULT_PROMPTS.get(self.public_name, "")
        try:
            prompts = prompt_list(data.expand(text)) if text else []
        except ExpansionError as exc:
            return data.defer(f"server_prompts: {exc.message}")
        if initial is not None:
            data.add(initial)
        for number, prompt in enumerate(prompts, 1):
            if len(data.items) >= MAX_SERVER_ITEMS:
                break
            # A prompt is sent only for an item the client has not given yet.
            if number > len(data.items):
                data.add((yield prompt.encode("utf-8")))
        data.debug_print(self)
        return self.check_server_condition(data, unset=Verdict.FAIL)

    def _item(self, text: str, expand: Expand) -> bytes:
        try:
            return circumflex(expand(text))
        except ExpansionError as exc:
            if exc.forced:
                raise AuthenticationCancelled(f"{self.name} authenticator: expansion forced to fail") from None
            raise
