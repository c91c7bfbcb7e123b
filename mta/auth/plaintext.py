"""The plaintext authenticator: PLAIN and LOGIN (RFC 4616, draft-murchison-sasl-login), client side.

The client sends fixed strings, Exim style::

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
    AuthenticationCancelled,
    Authenticator,
    AuthenticatorOptions,
    Expand,
    Responses,
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

    def _item(self, text: str, expand: Expand) -> bytes:
        try:
            return circumflex(expand(text))
        except ExpansionError as exc:
            if exc.forced:
                raise AuthenticationCancelled(f"{self.name} authenticator: expansion forced to fail") from None
            raise
