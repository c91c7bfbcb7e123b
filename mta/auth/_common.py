"""Authenticators: the base class, and the client side of one SMTP AUTH exchange.

An authenticator is an instance in the ``begin authenticators`` section of
the configuration, of a driver kind (``driver = plaintext``).  Its
`public_name` is the SASL mechanism it implements (PLAIN, LOGIN, CRAM-MD5);
the smtp transport uses a *client* authenticator only when the server's EHLO
reply offers that mechanism (RFC 4954), never otherwise.

Client side, sans I/O (the transport owns the connection)::

    exchange = ClientExchange(authenticator, expand)
    send(exchange.first_command())        # b"AUTH PLAIN AHVzZXIAc2VjcmV0"
    while reply.code == 334:
        send(exchange.respond(reply.lines[0]))   # base64 answer, or b"*" to cancel
    # 235: authenticated; anything else: this authenticator failed

A driver implements `client_responses(expand)`, a generator: its first
value is the initial response (None: the AUTH command carries none), and
each challenge sent into it (decoded bytes) gets the next response.

Errors: an expansion forced to fail (``fail``) cancels the exchange
(AuthenticationCancelled) and the transport tries the next authenticator,
as in Exim; so does any other expansion failure, whose text is kept in
`ClientExchange.error` for the deferral message.

Security: secrets only ever go into the bytes sent to the server.  They are
never part of an exception text, a log line or `repr()`; the server's
challenges are network data and are only decoded, never expanded.
"""

from __future__ import annotations

import base64
import binascii
from abc import abstractmethod
from collections.abc import Callable, Generator

from mta.drivers import Driver, DriverOptions, Kind, option, options_table
from mta.errors import ExpansionError, MtaError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

Expand = Callable[[str], str]
Responses = Generator["bytes | None", bytes, None]

# A server that keeps sending 334 challenges is not going to let us in; stop
# instead of looping (no mechanism we implement needs more than two rounds).
MAX_CHALLENGES = 10
# RFC 4954 §4: a challenge is one base64 line; refuse silly sizes.
MAX_CHALLENGE_LENGTH = 12288


@options_table
class AuthenticatorOptions(DriverOptions):
    """Options every authenticator has."""

    _generic: ClassVar[bool] = True

    public_name: str | None = option(
        None,
        Kind.STRING,
        "The SASL mechanism this authenticator implements, as servers advertise it (PLAIN, LOGIN, CRAM-MD5);"
        " default: the instance name.",
    )
    client_condition: str | None = option(
        None,
        Kind.STRING,
        "Expanded before the client side is used; the authenticator is skipped if the result is empty, 0, no"
        " or false.",
        expand=True,
    )


class AuthenticationCancelled(MtaError):
    """This client authenticator cannot go on; the next one may be tried."""


class Authenticator(Driver):
    """Base of the authenticator drivers (client side; the server side comes later)."""

    kind_name: ClassVar[str] = "authenticator"
    options: AuthenticatorOptions
    options_class: ClassVar[type[DriverOptions]] = AuthenticatorOptions

    @property
    def public_name(self) -> str:
        return (self.options.public_name or self.name).upper()

    @property
    @abstractmethod
    def is_client(self) -> bool:
        """True when this instance has client options, so the smtp transport may use it."""

    def client_usable(self, expand: Expand) -> bool:
        """Does `client_condition` allow this authenticator now?

        Raises ExpansionError (not forced) for the caller to report; a forced
        failure means "no".
        """
        if self.options.client_condition is None:
            return True
        try:
            value = expand(self.options.client_condition)
        except ExpansionError as exc:
            if exc.forced:
                return False
            raise
        return value.strip().lower() not in ("", "0", "no", "false")

    @abstractmethod
    def client_responses(self, expand: Expand) -> Responses:
        """Generate the client's side of the exchange (see the module docstring).

        Raises AuthenticationCancelled or ExpansionError.
        """


class ClientExchange:
    """One AUTH exchange of one client authenticator, without I/O."""

    def __init__(self, authenticator: Authenticator, expand: Expand) -> None:
        self.authenticator = authenticator
        self.mechanism = authenticator.public_name
        self._responses = authenticator.client_responses(expand)
        self._rounds = 0
        # Why the exchange was cancelled by our side, for the failure message.
        self.error: str | None = None

    def first_command(self) -> bytes:
        """The AUTH command line (no CRLF).  Raises AuthenticationCancelled or ExpansionError."""
        initial = next(self._responses)
        command = b"AUTH " + self.mechanism.encode("ascii")
        if initial is None:
            return command
        # RFC 4954 §4: "=" stands for an initial response of zero length.
        return command + b" " + (base64.b64encode(initial) if initial else b"=")

    def respond(self, challenge_text: str) -> bytes:
        """The line answering a 334 challenge: base64 data, or ``*`` to cancel (RFC 4954 §4)."""
        self._rounds += 1
        if self._rounds > MAX_CHALLENGES:
            self.error = "too many AUTH challenges"
            return b"*"
        text = challenge_text.strip()
        if len(text) > MAX_CHALLENGE_LENGTH:
            self.error = "AUTH challenge too long"
            return b"*"
        try:
            challenge = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.error = "AUTH challenge is not valid base64"
            return b"*"
        try:
            response = self._responses.send(challenge)
        except StopIteration:
            self.error = "no more data to send for AUTH"
            return b"*"
        except AuthenticationCancelled as exc:
            self.error = str(exc)
            return b"*"
        except ExpansionError as exc:
            self.error = f"expansion failed: {exc.message}"
            return b"*"
        if response is None:
            self.error = f"{self.authenticator.name} authenticator produced no response"
            return b"*"
        return base64.b64encode(response)
