"""The cram_md5 authenticator: CRAM-MD5 (RFC 2195), client side.

::

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

from mta.auth._common import (
    AuthenticationCancelled,
    Authenticator,
    AuthenticatorOptions,
    Expand,
    Responses,
)
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ExpansionError

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


def cram_md5_response(name: str, secret: bytes, challenge: bytes) -> bytes:
    """RFC 2195 §2: ``name SP hex(HMAC-MD5(secret, challenge))``."""
    import hmac  # only a process that authenticates pays for hashlib

    digest = hmac.new(secret, challenge, "md5").hexdigest()
    return f"{name} {digest}".encode()


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

    def _expand(self, text: str, expand: Expand) -> str:
        try:
            return expand(text)
        except ExpansionError as exc:
            if exc.forced:
                raise AuthenticationCancelled(f"{self.name} authenticator: expansion forced to fail") from None
            raise
