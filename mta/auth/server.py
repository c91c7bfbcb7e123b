"""The server side of SMTP AUTH (RFC 4954), without I/O: what the SMTP session drives.

The session owns the connection; this module decides what to say::

    advertised = server_mechanisms(runtime.authenticators, expand_for_connection)   # EHLO: AUTH PLAIN LOGIN
    authenticator = find_server_authenticator(runtime.authenticators, "plain", advertised)   # None: 504
    exchange = ServerExchange(authenticator, expand)    # expand(text, extra_variables) -> str
    step = exchange.start(initial_response)            # "dGVzdA==" from "AUTH PLAIN dGVzdA==", "=", or None
    while isinstance(step, Challenge):
        send(f"334 {step.text}")
        step = exchange.respond(read_line())           # "*" cancels
    # Success: 235 2.7.0; keep step.variables ($authenticated_id ...), log A=step.log_field
    # Failure: f"{step.code} {step.esc} {step.text}"; log
    #     f"{authenticator.name} authenticator failed for {host}: {step.log_reason}"

Replies are Exim's, with RFC 4954's enhanced status codes:

| outcome | reply |
| --- | --- |
| authenticated | 235 2.7.0 Authentication succeeded |
| wrong credentials, unknown user, server_condition false or forced to fail | 535 5.7.8 Incorrect authentication data |
| the server cannot decide (an expansion failed, a lookup deferred) | 435 4.7.0 Unable to authenticate at present |
| a line that is not base64 | 501 5.5.2 Invalid base64 data |
| the client sent ``*`` | 501 5.5.2 Authentication cancelled |
| a line longer than 12,288 characters | 500 5.5.6 Authentication exchange line is too long |
| an initial response to CRAM-MD5 | 553 5.5.2 Initial data not expected |

Security: the client's data is decoded strictly (no lenient base64), bounded
(line length, 20 items), and reaches expansions only as the values of
$auth1, $auth2, $auth3 (and $1, $2, $3), marked tainted.  It is never part
of a reply.  A failure's `log_reason` shows only the expanded server_set_id
and the reason the server could not decide, with any value the client sent
(other than that id) or any expanded secret taken out.  Nothing here puts a
secret in an exception or a repr(); the exchange forgets the client's data
when it ends.

Diagnostics: nothing is logged here; the session logs a Failure's
`log_reason`, and `server_mechanisms` reports an advertise condition that
failed to expand through its `log` argument.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable

from mta import record
from mta.auth._common import (
    MAX_CHALLENGE_LENGTH,
    MAX_SERVER_ITEMS,
    Authenticator,
    ExpandWith,
    ServerData,
    ServerSteps,
    Verdict,
    is_false,
)
from mta.errors import DeferError, ExpansionError
from mta.expand.lookups import LookupDeferError
from mta.printable import printable
from mta.taint import is_tainted, taint

# A client line (initial response or answer) longer than this is refused: RFC 4954 §4
# leaves the limit to the server; 12,288 base64 characters are 9 KB of data.
MAX_RESPONSE_LENGTH = MAX_CHALLENGE_LENGTH
# Answers one exchange may take (plaintext asks at most one question per item).
MAX_ROUNDS = MAX_SERVER_ITEMS + 1
# A value shorter than this cannot be taken out of a log line without mangling it,
# so a reason that contains one is withheld altogether.
_SHORTEST_MASKABLE = 4


@record.dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``334 <text>``: `text` is base64 (empty for an empty challenge)."""

    text: str


@record.dataclass(frozen=True, slots=True)
class Success:
    """Send ``235 2.7.0 Authentication succeeded``.

    `authenticator` is the instance name (for ``A=``), `authenticated_id`
    the expanded server_set_id (None when unset or empty; tainted when it
    came from the client's data), `variables` what later expansions of this
    session see: $authenticated_id and $sender_host_authenticated.
    """

    authenticator: str
    authenticated_id: str | None
    variables: dict[str, str | None]

    code = 235
    esc = "2.7.0"
    text = "Authentication succeeded"

    @property
    def log_field(self) -> str:
        """The value of ``A=`` in the ``<=`` line: ``name`` or ``name:id`` (Exim)."""
        return self.authenticator + (f":{self.authenticated_id}" if self.authenticated_id else "")


@record.dataclass(frozen=True, slots=True)
class Failure:
    """Send ``<code> <esc> <text>``; log `log_reason` (Exim's text, after "authenticator failed for H: ").

    `failed_id` is the expanded server_set_id after a 535 or 435, for
    $authenticated_fail_id (None otherwise).
    """

    code: int
    esc: str
    text: str
    log_reason: str
    failed_id: str | None = None


ServerStep = Challenge | Success | Failure


def _failure(code: int, esc: str, text: str, detail: str = "", failed_id: str | None = None) -> Failure:
    return Failure(code, esc, text, f"{code} {text}{detail}", failed_id)


def _bad_base64() -> Failure:
    return _failure(501, "5.5.2", "Invalid base64 data")


def _cancelled() -> Failure:
    return _failure(501, "5.5.2", "Authentication cancelled")


def _too_long() -> Failure:
    return _failure(500, "5.5.6", "Authentication exchange line is too long")


def _decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def withhold(reason: str, values: Iterable[str]) -> str:
    """`reason` with every one of `values` in it replaced by ``<client data>``.

    When a value too short to replace safely occurs in it, the whole reason
    is withheld instead.
    """
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        if value not in reason:
            continue
        if len(value) < _SHORTEST_MASKABLE:
            return "(details withheld: they would show what the client sent)"
        reason = reason.replace(value, "<client data>")
    return reason


class ServerExchange:
    """One AUTH command of one client, on the server, without I/O (see the module docstring).

    `expand(text, extra_variables)` is the session's expansion with the
    variables of the connection; the exchange adds $auth1... as
    `extra_variables`.  It raises ExpansionError (or DeferError from a
    lookup) as the expander does.  `debug`, when given, receives
    server_debug_print's text.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        expand: ExpandWith,
        debug: Callable[[str], None] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.mechanism = authenticator.public_name
        self._data = ServerData(expand, debug)
        self._steps: ServerSteps | None = None
        self._rounds = 0
        # The last step given: a Success or Failure ends the exchange.
        self.outcome: Success | Failure | None = None

    def __repr__(self) -> str:
        state = "running" if self.outcome is None else type(self.outcome).__name__.lower()
        return f"<ServerExchange {self.authenticator.name} {self.mechanism} {state}>"

    def start(self, initial_response: str | None) -> ServerStep:
        """Begin: `initial_response` is the text after the mechanism (``=`` for an empty one), or None."""
        if self._steps is not None or self.outcome is not None:
            raise ValueError("ServerExchange.start() called twice")
        initial: bytes | None = None
        if initial_response is not None and initial_response.strip():
            text = initial_response.strip()
            if len(text) > MAX_RESPONSE_LENGTH:
                return self._end(_too_long())
            # RFC 4954 §4: "=" is an initial response of zero length.
            decoded = b"" if text == "=" else _decode(text)
            if decoded is None:
                return self._end(_bad_base64())
            initial = decoded
        self._steps = self.authenticator.server_steps(initial, self._data)
        steps = self._steps
        return self._advance(lambda: next(steps))

    def respond(self, line: str) -> ServerStep:
        """The client's answer to the last Challenge: base64 data, or ``*`` to cancel (RFC 4954 §4)."""
        if self._steps is None or self.outcome is not None:
            # The session passed a line nobody asked for: refuse it, never crash.
            return _failure(503, "5.5.1", "No AUTH exchange in progress")
        text = line.strip()
        if text == "*":
            return self._end(_cancelled())
        if len(text) > MAX_RESPONSE_LENGTH:
            return self._end(_too_long())
        self._rounds += 1
        if self._rounds > MAX_ROUNDS:
            return self._end(_failure(501, "5.5.2", "Too many AUTH exchange lines"))
        decoded = _decode(text)
        if decoded is None:
            return self._end(_bad_base64())
        steps = self._steps
        return self._advance(lambda: steps.send(decoded))

    # -- internals --

    def _advance(self, step: Callable[[], bytes]) -> ServerStep:
        try:
            challenge = step()
        except StopIteration as stop:
            return self._finish(stop.value)
        except (ExpansionError, DeferError) as exc:
            # A driver lets these through only by mistake; the server cannot decide.
            self._data.defer_reason = exc.message
            return self._finish(Verdict.DEFER)
        return Challenge(base64.b64encode(challenge).decode("ascii"))

    def _finish(self, verdict: Verdict) -> Success | Failure:
        name = self.authenticator.name
        if verdict is Verdict.UNEXPECTED:
            return self._end(_failure(553, "5.5.2", "Initial data not expected"))
        # Exim expands server_set_id after a failure too: the log shows who tried.
        set_id, set_id_error = self._set_id()
        if verdict is Verdict.OK and set_id_error is None:
            variables: dict[str, str | None] = {"authenticated_id": set_id, "sender_host_authenticated": name}
            return self._end(Success(name, set_id, variables))
        detail = f" (set_id={set_id})" if set_id else ""
        if verdict is Verdict.FAIL:
            return self._end(_failure(535, "5.7.8", "Incorrect authentication data", detail, set_id))
        reason = set_id_error if verdict is Verdict.OK else self._data.defer_reason
        reason = withhold(reason or "no reason given", [*self._data.items, *self._data.secrets])
        return self._end(_failure(435, "4.7.0", "Unable to authenticate at present", f"{detail}: {reason}", set_id))

    def _set_id(self) -> tuple[str | None, str | None]:
        """(the expanded server_set_id or None, an error message or None)."""
        text = self.authenticator.options.server_set_id
        if text is None:
            return None, None
        try:
            raw = self._data.expand(text)
        except (ExpansionError, DeferError) as exc:
            return None, f"server_set_id: {exc.message}"
        # It goes into the log, the spool and Received: (Exim's string_printing).
        shown = printable(raw)
        return (taint(shown) if is_tainted(raw) else shown) or None, None

    def _end(self, outcome: Success | Failure) -> Success | Failure:
        if self._steps is not None:
            self._steps.close()
        # Forget the client's data (a password, usually) as soon as the exchange is over.
        self._data.items.clear()
        self._data.secrets.clear()
        self.outcome = outcome
        return outcome


def server_mechanisms(
    authenticators: Iterable[Authenticator],
    expand_for_connection: Callable[[str], str],
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """The mechanisms to advertise in this connection's EHLO reply, in configuration order.

    Only server authenticators, and each only if its server_advertise_condition
    (expanded by `expand_for_connection`) is true.  A failed expansion hides
    the mechanism; unless it was forced or a lookup deferred, `log` is told.
    """
    names: list[str] = []
    for authenticator in authenticators:
        if not authenticator.is_server or authenticator.public_name in names:
            continue
        condition = authenticator.options.server_advertise_condition
        if condition is not None:
            try:
                if is_false(expand_for_connection(condition)):
                    continue
            except ExpansionError as exc:
                if log is not None and not exc.forced and not isinstance(exc, LookupDeferError):
                    log(f"{authenticator.name} authenticator: server_advertise_condition: {exc.message}")
                continue
            except DeferError:
                continue
        names.append(authenticator.public_name)
    return names


def find_server_authenticator(
    authenticators: Iterable[Authenticator], mechanism: str, advertised: Iterable[str]
) -> Authenticator | None:
    """The server authenticator for ``AUTH <mechanism>`` (caseless), if that mechanism was advertised.

    None means "504 5.5.4 Unrecognized authentication type": Exim, too,
    refuses a mechanism it did not offer in this connection.
    """
    wanted = mechanism.upper()
    if wanted not in {name.upper() for name in advertised}:
        return None
    for authenticator in authenticators:
        if authenticator.is_server and authenticator.public_name == wanted:
            return authenticator
    return None
