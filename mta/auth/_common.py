"""Authenticators: the base class, the client side of one SMTP AUTH exchange, and what
the drivers' server sides share (mta.auth.server runs them).

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

Server side: a driver implements `server_steps(initial, data)`, a generator
that yields each challenge (raw bytes; the exchange base64-encodes it), gets
the client's decoded answer back, and returns a Verdict (Exim's OK, FAIL,
DEFER, UNEXPECTED).  What the client sent goes into `data` (a ServerData):
$auth1, $auth2, ... as tainted values, usable only as variables of the
driver's expansions (`data.expand`).  `mta.auth.server.ServerExchange` turns
this into SMTP replies.

Security: secrets only ever go into the bytes sent to the server.  They are
never part of an exception text, a log line or `repr()`; the server's
challenges are network data and are only decoded, never expanded.  On the
server side the client's data is only ever the value of a variable.
"""

from __future__ import annotations

import base64
import binascii
import enum
from abc import abstractmethod
from collections.abc import Callable, Generator

from mta.drivers import Driver, DriverOptions, Kind, option, options_table
from mta.errors import DeferError, ExpansionError, MtaError
from mta.taint import Tainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

Expand = Callable[[str], str]
Responses = Generator["bytes | None", bytes, None]
# expand(text, extra_variables): the session's expansion, with the $authN values added.
ExpandWith = Callable[[str, "dict[str, object]"], str]
ServerSteps = Generator[bytes, bytes, "Verdict"]

# A server that keeps sending 334 challenges is not going to let us in; stop
# instead of looping (no mechanism we implement needs more than two rounds).
MAX_CHALLENGES = 10
# RFC 4954 §4: a challenge is one base64 line; refuse silly sizes.
MAX_CHALLENGE_LENGTH = 12288
# Exim keeps at most EXPAND_MAXN (20) items of client data: further prompts
# are not sent and further NUL-separated items are dropped.
MAX_SERVER_ITEMS = 20
# $auth1..$auth3 (and, for old configurations, $1..$3) hold the first items.
AUTH_VARIABLES = 3

_FALSE = ("", "0", "no", "false")
_TRUE = ("1", "yes", "true")


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
    server_advertise_condition: str | None = option(
        None,
        Kind.STRING,
        "Server side: expanded for each EHLO; the mechanism is advertised (and may be used) only if the result"
        " is not empty, 0, no or false.  A failed expansion hides it too (and is logged unless forced).",
        expand=True,
    )
    server_condition: str | None = option(
        None,
        Kind.STRING,
        "Server side: the verdict, expanded with $auth1, $auth2, ... set: yes, 1 or true accepts; no, 0, false,"
        " empty or a forced failure refuses (535); anything else or an expansion error is a temporary failure"
        " (435).  Required for plaintext (it makes it a server); for cram_md5 an extra check after the digest.",
        expand=True,
    )
    server_debug_print: str | None = option(
        None,
        Kind.STRING,
        "Server side: expanded and written to the debug output (-d) before the server's check, with the"
        " client's data set.",
        expand=True,
    )
    server_set_id: str | None = option(
        None,
        Kind.STRING,
        "Server side: expanded after a successful authentication: the client's identity, $authenticated_id,"
        " logged as A=name:id.  Also expanded after a failure, for the log's set_id=.",
        expand=True,
    )


class AuthenticationCancelled(MtaError):
    """This client authenticator cannot go on; the next one may be tried."""


class Verdict(enum.Enum):
    """How a server-side exchange ended (Exim's OK, FAIL, DEFER, UNEXPECTED)."""

    OK = "ok"
    FAIL = "fail"  # 535: wrong credentials, unknown user
    DEFER = "defer"  # 435: the server could not decide (an expansion error, a lookup that could not be done)
    UNEXPECTED = "unexpected"  # an initial response to a mechanism that takes none


def is_false(value: str) -> bool:
    """Exim's test of a condition option: empty, "0", "no" or "false" (caseless)."""
    return value.strip().lower() in _FALSE


class ServerData:
    """What the client sent in one server-side exchange, and expansion with it.

    `items` are the client's data, decoded and split at NUL bytes, each a
    Tainted string: $auth1, $auth2, $auth3 (and $1, $2, ... as older Exim
    configurations write them).  They are values of variables only.
    `defer_reason` is set by whoever returns Verdict.DEFER, for the log.
    `secrets` holds other values the log must never show (an expanded
    server_secret); see `mta.auth.server`.
    """

    def __init__(self, expand_with: ExpandWith, debug: Callable[[str], None] | None = None) -> None:
        self._expand_with = expand_with
        self.debug = debug
        self.items: list[Tainted] = []
        self.defer_reason: str | None = None
        self.secrets: list[str] = []

    def __repr__(self) -> str:
        # Never the items: one of them is usually a password.
        return f"<ServerData {len(self.items)} item(s)>"

    def add(self, data: bytes) -> None:
        """Append the NUL-separated items of `data` (Exim's auth_prompt / auth_read_input).

        Empty data is one empty item; a NUL at the very end does not start
        another item.  Items beyond MAX_SERVER_ITEMS are dropped.
        """
        parts = data.split(b"\0")
        if len(parts) > 1 and parts[-1] == b"":
            parts.pop()
        for part in parts:
            if len(self.items) >= MAX_SERVER_ITEMS:
                break
            # surrogateescape: a byte that is not UTF-8 stays distinct from every other
            # one, so it can never compare equal to a different password.
            self.items.append(Tainted(part.decode("utf-8", "surrogateescape")))

    def variables(self) -> dict[str, object]:
        found: dict[str, object] = {}
        for number in range(1, AUTH_VARIABLES + 1):
            value = self.items[number - 1] if number <= len(self.items) else None
            found[f"auth{number}"] = value
            found[str(number)] = value
        return found

    def expand(self, text: str) -> str:
        """Expand configuration text with the client's data as variables; ExpansionError propagates."""
        return self._expand_with(text, self.variables())

    def defer(self, reason: str) -> Verdict:
        self.defer_reason = reason
        return Verdict.DEFER

    def debug_print(self, authenticator: Authenticator) -> None:
        """Exim's server_debug_print: only when debugging, and never an error of its own."""
        text = authenticator.options.server_debug_print
        if text is None or self.debug is None:
            return
        try:
            self.debug(self.expand(text))
        except (ExpansionError, DeferError) as exc:
            self.debug(f"{authenticator.name} authenticator: server_debug_print failed: {exc}")


class Authenticator(Driver):
    """Base of the authenticator drivers: client side and server side."""

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
        return not is_false(value)

    @abstractmethod
    def client_responses(self, expand: Expand) -> Responses:
        """Generate the client's side of the exchange (see the module docstring).

        Raises AuthenticationCancelled or ExpansionError.
        """

    @property
    @abstractmethod
    def is_server(self) -> bool:
        """True when this instance has server options, so the SMTP daemon may offer it."""

    @abstractmethod
    def server_steps(self, initial: bytes | None, data: ServerData) -> ServerSteps:
        """Generate the server's side of one exchange (see the module docstring).

        `initial` is the decoded initial response (b"" for RFC 4954's "="),
        None when the AUTH command had none.  Returns a Verdict; an
        ExpansionError or DeferError that escapes counts as DEFER.
        """

    def check_server_condition(self, data: ServerData, unset: Verdict) -> Verdict:
        """Exim's auth_check_serv_cond(): expand server_condition; `unset` is the verdict without one."""
        condition = self.options.server_condition
        if condition is None:
            return unset
        try:
            value = data.expand(condition)
        except ExpansionError as exc:
            if exc.forced:
                return Verdict.FAIL
            return data.defer(f"server_condition: {exc.message}")
        except DeferError as exc:
            return data.defer(f"server_condition: {exc.message}")
        word = value.strip().lower()
        if word in _FALSE:
            return Verdict.FAIL
        if word in _TRUE:
            return Verdict.OK
        # Exim gives this text to the client and the log.  It may be the password a
        # lookup returned, so mta says only what kind of thing went wrong.
        return data.defer("server_condition gave neither yes nor no")


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
