"""Issue 16, point 6, over a real daemon: the TLS it accepts, and a certificate renewed under it.

- TLS 1.0 and 1.1 clients are refused at STARTTLS (tests/receive/test_tls.py
  checks the context alone; this is the daemon).
- Every TLS 1.2 cipher this OpenSSL can offer is tried on its own: those the
  daemon accepts all have forward secrecy (ECDHE) and none is RC4, (3)DES,
  NULL, EXPORT, anonymous, or a CBC suite with a SHA-1 MAC.
- The certificate files are replaced and the daemon gets SIGHUP: new
  connections see the new certificate (serial and fingerprint).

The client side (the smtp transport refusing an expired or wrong-name
certificate when verification is required) is in
tests/transports/test_smtp_tls.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.daemon import DaemonWorld, RawClient
from tests.support.tls import Pki, pki

__all__ = ["pki"]

WEAK = ("RC4", "DES", "NULL", "EXP", "ADH", "AECDH", "MD5", "PSK", "SRP", "CAMELLIA", "IDEA", "SEED")


def starttls(port: int, context: ssl.SSLContext) -> tuple[str, str, bytes] | None:
    """(protocol, cipher, server certificate DER) after STARTTLS with `context`; None if the handshake failed."""
    with RawClient(port) as client:
        client.reply()
        client.command("EHLO client.example.org")
        assert client.command("STARTTLS")[0] == 220
        try:
            with context.wrap_socket(client.sock, server_hostname="localhost") as tls:
                tls.settimeout(10)
                cipher = tls.cipher()
                der = tls.getpeercert(binary_form=True)
                assert cipher is not None and der is not None
                return cipher[1], cipher[0], der
        except (TimeoutError, ssl.SSLError, ConnectionError):
            return None


def client(maximum: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 and 1.1: deprecated, which is the point
        context.minimum_version, context.maximum_version = ssl.TLSVersion.TLSv1, maximum
    context.set_ciphers(ciphers)
    return context


def test_protocols_ciphers_and_a_certificate_renewed_by_sighup(daemon_world: DaemonWorld, pki: Pki) -> None:
    cert, key = pki.issue_server(daemon_world.root / "tls-first", "localhost")
    live_cert, live_key = daemon_world.root / "live.pem", daemon_world.root / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    daemon_world.write_config(main=f"tls_certificate = {live_cert}\ntls_privatekey = {live_key}\n")
    daemon_world.start()
    port = daemon_world.port

    # TLS 1.2 and 1.3 are served; 1.0 and 1.1 are refused (if this OpenSSL can still offer them).
    assert starttls(port, client(ssl.TLSVersion.TLSv1_3)) is not None
    assert starttls(port, client(ssl.TLSVersion.TLSv1_2))[0] == "TLSv1.2"  # type: ignore[index]
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        try:
            offered = client(old)
        except ssl.SSLError:
            continue
        assert starttls(port, offered) is None, f"{old.name} was accepted"

    # Each TLS 1.2 cipher on its own.
    candidates = sorted({c["name"] for c in client(ssl.TLSVersion.TLSv1_2).get_ciphers()
                         if c["protocol"] == "TLSv1.2" or "TLSv1/SSLv3" in c["protocol"]})
    assert len(candidates) > 10

    def accepted(name: str) -> str | None:
        try:
            context = client(ssl.TLSVersion.TLSv1_2, name)
        except ssl.SSLError:
            return None  # not offerable by this OpenSSL at all
        return name if starttls(port, context) is not None else None

    with ThreadPoolExecutor(8) as pool:
        taken = sorted(filter(None, pool.map(accepted, candidates)))
    print(f"\nTLS 1.2 ciphers accepted: {taken} (of {len(candidates)} tried)")
    assert taken, "no TLS 1.2 cipher at all"
    for name in taken:
        assert not any(w in name for w in WEAK), name
        assert name.startswith(("ECDHE-", "DHE-")), f"{name}: no forward secrecy"
        assert not name.endswith("-SHA"), f"{name}: CBC with a SHA-1 MAC"

    # A renewed certificate: replace the files, SIGHUP, and new connections get it.
    first = starttls(port, client(ssl.TLSVersion.TLSv1_3))
    assert first is not None
    assert first[2] == x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    renewed, renewed_key = pki.issue_server(daemon_world.root / "tls-second", "localhost")
    new_serial = x509.load_pem_x509_certificate(renewed.read_bytes()).serial_number
    os.replace(renewed_key, live_key)  # key first, as a renewal tool would write both
    os.replace(renewed, live_cert)
    assert daemon_world.process is not None
    os.kill(daemon_world.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while True:
        now = starttls(port, client(ssl.TLSVersion.TLSv1_3))
        if now is not None and now[2] != first[2]:
            break
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.1)
    served = x509.load_der_x509_certificate(now[2])
    assert served.serial_number == new_serial
    assert hashlib.sha256(now[2]).hexdigest() != hashlib.sha256(first[2]).hexdigest()
