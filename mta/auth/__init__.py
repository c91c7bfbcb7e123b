"""Authenticators: SMTP AUTH mechanisms, server and client side.

The registry maps each ``driver =`` name to "module:Class"; classes are
imported only when a configuration uses them.
"""

AUTHENTICATORS: dict[str, str] = {
    "cram_md5": "mta.auth.cram_md5:CramMd5Authenticator",
    "plaintext": "mta.auth.plaintext:PlaintextAuthenticator",
}
