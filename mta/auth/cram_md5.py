"""The cram_md5 authenticator: CRAM-MD5 (RFC 2195).

Server side::

    cram:
      driver = cram_md5
      public_name = CRAM-MD5
      server_secret = ${lookup{$auth1}lsearch{/etc/mta/cram-secrets}{$value}fail}
      server_set_id = $auth1

The server sends a challenge ``<random.time@primary_hostname>``; the client
answers ``name SP hex-digest``.  $auth1 is the name; `server_secret` is
expanded with it, and a forced failure or an empty secret means "no such
user" (535).  The digest is compared in constant time.  `server_condition`,
if set, is an extra check after the digest matched.

Client side::

    cram:
      driver = cram_md5
      public_name = CRAM-MD5
      client_name = ph10
      client_secret = ${readfile{/etc/mta/smarthost.secret}{}}

The server sends a challenge; the client answers with its name, a space and
the hex HMAC-MD5 of the challenge keyed with the secret, so the secret never
crosses the wire.  A forced expansion failure of either option cancels this
authenticator; the transport tries the next one.
"""

from __future__ import annotations

import re

from mta.auth._common import (
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
from mta.errors import DeferError, ExpansionError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


@options_table
class CramMd5Options(AuthenticatorOptions):
    client_name: str = option(
        "$primary_hostname", Kind.STRING, "Client side: the user name sent with the digest.", expand=True
    )
    client_secret: str | None = option(
        None, Kind.STRING, "Client side: the shared secret the challenge is signed with.", expand=True
    )
    server_secret: str | None = option(
        None,
        Kind.STRING,
        "Server side: expanded with $auth1 = the client's user name, gives that user's shared secret; a"
        " forced failure or an empty result means the user is unknown (535).  Setting it makes this"
        " authenticator a server.",
        expand=True,
    )


# RFC 2195 §2: the response is the user name, one space, and 32 lower-case hex digits
# (Exim splits at the first white space character).
_RESPONSE = re.compile(rb"(\S*)\s(.*)", re.DOTALL)
DIGEST_LENGTH = 32


def cram_md5_digest(secret: bytes, challenge: bytes) -> str:
    """RFC 2195 §2: hex(HMAC-MD5(secret, challenge)); a secret over 64 bytes is hashed first, as Exim does."""
    import hmac  # only a process that authenticates pays for hashlib

    return hmac.new(secret, challenge, "md5").hexdigest()


def cram_md5_response(name: str, secret: bytes, challenge: bytes) -> bytes:
    """RFC 2195 §2: ``name SP hex(HMAC-MD5(secret, challenge))``."""
    return f"{name} {cram_md5_digest(secret, challenge)}".encode()


def cram_md5_challenge(primary_hostname: str) -> bytes:
    """A challenge in Exim's form ``<pid.time@host>``, with a random number for the pid (never reused)."""
    import secrets
    import time

    return f"<{secrets.randbelow(10**12)}.{int(time.time())}@{primary_hostname}>".encode()


def digests_equal(expected: str, received: bytes) -> bool:
    """Compare hex digests in constant time (upper-case hex is accepted as well)."""
    import hmac

    return hmac.compare_digest(expected.encode("ascii"), received.lower())


class CramMd5Authenticator(Authenticator):
    options: CramMd5Options
    options_class: ClassVar[type[DriverOptions]] = CramMd5Options

    @property
    def is_client(self) -> bool:
        return self.options.client_secret is not None

    def client_responses(self, expand: Expand) -> Responses:
        # Expand before AUTH is sent, so that a failure costs no round trip.
        name = self._expand(self.options.client_name, expand)
        secret = self._expand(self.options.client_secret or "", expand).encode("utf-8")
        challenge = yield None
        yield cram_md5_response(name, secret, challenge)

    @property
    def is_server(self) -> bool:
        return self.options.server_secret is not None

    def server_steps(self, initial: bytes | None, data: ServerData) -> ServerSteps:
        # Exim's auth_cram_md5_server().
        if initial is not None:
            return Verdict.UNEXPECTED
        try:
            hostname = data.expand("$primary_hostname")
        except ExpansionError as exc:
            return data.defer(f"$primary_hostname: {exc.message}")
        challenge = cram_md5_challenge(hostname)
        answer = _RESPONSE.fullmatch((yield challenge))
        if answer is None or len(answer.group(2)) != DIGEST_LENGTH:
            return Verdict.FAIL
        data.add(answer.group(1))
        data.debug_print(self)
        try:
            secret = data.expand(self.options.server_secret or "")
        except ExpansionError as exc:
            if exc.forced:
                return Verdict.FAIL  # no secret for this name: an unknown user
            return data.defer(f"server_secret: {exc.message}")
        except DeferError as exc:
            return data.defer(f"server_secret: {exc.message}")
        if not secret:
            # An empty key is one anybody can sign with: a lookup written without
            # "fail" gives "" for every unknown user.  Exim accepts it; mta refuses.
            return Verdict.FAIL
        data.secrets.append(secret)
        expected = cram_md5_digest(secret.encode("utf-8", "surrogateescape"), challenge)
        if not digests_equal(expected, answer.group(2)):
            return Verdict.FAIL
        # Authenticated; server_condition, if set, may still refuse (authorisation).
        return self.check_server_condition(data, unset=Verdict.OK)

    def _expand(self, text: str, expand: Expand) -> str:
        try:
            return expand(text)
        except ExpansionError as exc:
            if exc.forced:
                raise AuthenticationCancelled(f"{self.name} authenticator: expansion forced to fail") from None
            raise
