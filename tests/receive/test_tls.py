"""The daemon's TLS set-up: real handshakes on 127.0.0.1 between a plain ssl client and our server context."""

from __future__ import annotations

import datetime
import os
import re
import socket
import ssl
import stat
import threading
import time
import warnings
from pathlib import Path

import pytest
from cryptography import x509

from mta.config.loader import load_config
from mta.errors import ConfigError
from mta.receive.tls import (
    SELF_SIGNED_CERTIFICATE,
    SELF_SIGNED_KEY,
    cipher_text,
    on_connect_ports,
    server_context,
    tls_variables,
)
from mta.runtime import Runtime, build_runtime
from tests.support.tls import Pki, pki

__all__ = ["pki"]

CIPHER = re.compile(r"TLS1\.[23]:[A-Z0-9_-]+:\d+")


def runtime(tmp_path: Path, options: str = "", hostname: str = "mx.test.example") -> Runtime:
    path = tmp_path / "mta.conf"
    path.write_text(f"primary_hostname = {hostname}\nspool_directory = {tmp_path / 'spool'}\n{options}")
    return build_runtime(load_config(str(path)))


class Handshake:
    """One TLS connection on loopback: what each side saw."""

    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str | None) -> None:
        self.server_error: Exception | None = None
        self.server_variables: dict[str, str | None] = {}
        self.client_error: Exception | None = None
        self.client_cipher = ""
        self.client_certificate: dict[str, object] = {}
        with socket.create_server(("127.0.0.1", 0)) as listener:
            thread = threading.Thread(target=self._serve, args=(listener, server))
            thread.start()
            try:
                with (
                    socket.create_connection(listener.getsockname(), timeout=10) as raw,
                    client.wrap_socket(raw, server_hostname=server_hostname) as tls,
                ):
                    tls.sendall(b"EHLO client.test\r\n")
                    assert tls.recv(100).startswith(b"250")
                    self.client_cipher = cipher_text(tls)
                    self.client_certificate = dict(tls.getpeercert() or {})
            except (ssl.SSLError, OSError) as exc:
                self.client_error = exc
            finally:
                thread.join(10)

    def _serve(self, listener: socket.socket, context: ssl.SSLContext) -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(100)
                self.server_variables = tls_variables(tls)
                tls.sendall(b"250 ok\r\n")
        except (ssl.SSLError, OSError) as exc:
            self.server_error = exc
        finally:
            conn.close()

    @property
    def ok(self) -> bool:
        return self.server_error is None and self.client_error is None


def verifying_client(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def test_generated_certificate_verifies_for_the_primary_hostname(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    context = server_context(rt)
    directory = tmp_path / "spool" / "tls"
    cert_file, key_file = directory / SELF_SIGNED_CERTIFICATE, directory / SELF_SIGNED_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # A client that trusts this very certificate, checking the name, gets in: the SAN is the hostname.
    shake = Handshake(context, verifying_client(cert_file), "mx.test.example")
    assert shake.ok, (shake.server_error, shake.client_error)
    assert CIPHER.fullmatch(shake.client_cipher), shake.client_cipher
    variables = shake.server_variables
    assert variables["tls_in_cipher"] == variables["tls_cipher"] == shake.client_cipher
    assert variables["tls_in_ver"] in ("TLS1.2", "TLS1.3")
    assert variables["tls_in_bits"] == shake.client_cipher.rsplit(":", 1)[1]
    assert variables["tls_in_peerdn"] is None  # no client certificate
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime > datetime.timedelta(days=3600)
    assert "made a self-signed certificate for mx.test.example" in (tmp_path / "spool/log/mainlog").read_text()
    # Another name does not verify against it.
    other = Handshake(server_context(rt), verifying_client(cert_file), "other.test.example")
    assert isinstance(other.client_error, ssl.SSLCertVerificationError)


def test_generated_certificate_is_reused(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    server_context(rt)
    cert_file = tmp_path / "spool" / "tls" / SELF_SIGNED_CERTIFICATE
    first = cert_file.read_bytes()
    server_context(runtime(tmp_path))  # a later start, or SIGHUP
    assert cert_file.read_bytes() == first
    assert (tmp_path / "spool/log/mainlog").read_text().count("made a self-signed certificate") == 1


def test_generated_certificate_is_remade_when_the_hostname_changes(tmp_path: Path) -> None:
    server_context(runtime(tmp_path))
    cert_file = tmp_path / "spool" / "tls" / SELF_SIGNED_CERTIFICATE
    first = cert_file.read_bytes()
    context = server_context(runtime(tmp_path, hostname="smtp.test.example"))
    assert cert_file.read_bytes() != first
    assert Handshake(context, verifying_client(cert_file), "smtp.test.example").ok


def test_generated_certificate_is_remade_before_it_expires(tmp_path: Path) -> None:
    server_context(runtime(tmp_path))
    cert_file = tmp_path / "spool" / "tls" / SELF_SIGNED_CERTIFICATE
    first = cert_file.read_bytes()
    nine_years = time.time() + 9 * 365 * 86400
    server_context(runtime(tmp_path), now=nine_years)
    assert cert_file.read_bytes() == first  # still good for a year
    ten_years = time.time() + 3640 * 86400
    server_context(runtime(tmp_path), now=ten_years)
    renewed = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert renewed.not_valid_after_utc > datetime.datetime.fromtimestamp(ten_years + 3000 * 86400, datetime.UTC)


@pytest.mark.parametrize("damage", ["garbage in the key", "key of another pair", "no certificate"])
def test_damaged_files_are_remade(tmp_path: Path, damage: str) -> None:
    rt = runtime(tmp_path)
    server_context(rt)
    directory = tmp_path / "spool" / "tls"
    if damage == "garbage in the key":
        (directory / SELF_SIGNED_KEY).write_text("not a key")
    elif damage == "key of another pair":
        saved = (directory / SELF_SIGNED_KEY).read_bytes()
        (directory / SELF_SIGNED_KEY).unlink()
        server_context(rt)  # a new pair
        (directory / SELF_SIGNED_KEY).write_bytes(saved)
    else:
        (directory / SELF_SIGNED_CERTIFICATE).unlink()
    context = server_context(rt)
    assert Handshake(context, verifying_client(directory / SELF_SIGNED_CERTIFICATE), "mx.test.example").ok


def test_a_foreign_or_linked_tls_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "spool" / "tls").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="self-signed certificate"):
        server_context(runtime(tmp_path))
    assert list(elsewhere.iterdir()) == []
    if os.geteuid() == 0:
        (tmp_path / "spool" / "tls").unlink()
        (tmp_path / "spool" / "tls").mkdir(mode=0o700)
        os.chown(tmp_path / "spool" / "tls", 65534, 65534)
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            server_context(runtime(tmp_path))


def test_configured_certificate(tmp_path: Path, pki: Pki) -> None:
    rt = runtime(tmp_path, f"tls_certificate = {pki.cert_file}\ntls_privatekey = {pki.key_file}\n")
    shake = Handshake(server_context(rt), verifying_client(pki.ca_file), "localhost")
    assert shake.ok, (shake.server_error, shake.client_error)
    assert dict(shake.client_certificate["subject"][0])["commonName"] == "localhost"  # type: ignore[index]
    assert not (tmp_path / "spool" / "tls").exists()


def test_configured_certificate_expanded_and_key_in_the_same_file(tmp_path: Path, pki: Pki) -> None:
    combined = tmp_path / "mx.test.example.pem"
    combined.write_bytes(pki.cert_file.read_bytes() + pki.key_file.read_bytes())
    rt = runtime(tmp_path, f"tls_certificate = {tmp_path}/$primary_hostname.pem\n")
    assert Handshake(server_context(rt), verifying_client(pki.ca_file), "localhost").ok


def test_old_protocols_are_refused(tmp_path: Path, pki: Pki) -> None:
    context = server_context(runtime(tmp_path, f"tls_certificate = {pki.cert_file}\ntls_privatekey = {pki.key_file}\n"))

    def client(maximum: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 and 1.1: deprecated, which is the point
            ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, maximum
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer what OpenSSL 3 no longer offers by default
        return ctx

    old = Handshake(context, client(ssl.TLSVersion.TLSv1_1), None)
    if getattr(old.client_error, "reason", None) == "NO_PROTOCOLS_AVAILABLE":
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    # The server saw a TLS 1.1 hello and refused it.
    assert getattr(old.server_error, "reason", None) == "UNSUPPORTED_PROTOCOL", old.server_error
    assert old.client_error is not None
    tls12 = Handshake(context, client(ssl.TLSVersion.TLSv1_2), None)
    assert tls12.ok and tls12.client_cipher.startswith("TLS1.2:")


def test_tls_require_ciphers(tmp_path: Path, pki: Pki) -> None:
    files = f"tls_certificate = {pki.cert_file}\ntls_privatekey = {pki.key_file}\n"
    context = server_context(runtime(tmp_path, files + "tls_require_ciphers = ECDHE-ECDSA-AES128-GCM-SHA256\n"))
    client = ssl.create_default_context(cafile=str(pki.ca_file))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    shake = Handshake(context, client, "localhost")
    assert shake.client_cipher == "TLS1.2:ECDHE-ECDSA-AES128-GCM-SHA256:128"
    with pytest.raises(ConfigError, match="tls_require_ciphers"):
        server_context(runtime(tmp_path, files + "tls_require_ciphers = NO-SUCH-CIPHER\n"))


def test_configuration_errors_name_the_option_and_the_file(tmp_path: Path, pki: Pki) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    encrypted = tmp_path / "encrypted.key"
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.key_file.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    cases = [
        (f"tls_certificate = {pki.cert_file}\ntls_privatekey = {pki.client_key_file}\n",
         f"tls_privatekey: the key in {pki.client_key_file} does not match the certificate in {pki.cert_file}"),
        (f"tls_certificate = {tmp_path}/missing.pem\n",
         f"tls_certificate: cannot read {tmp_path}/missing.pem: No such file"),
        (f"tls_certificate = {garbage}\n", f"tls_certificate: {garbage} holds no PEM certificate"),
        (f"tls_certificate = {pki.cert_file}\n", f"tls_privatekey: {pki.cert_file} holds no PEM private key"),
        (f"tls_certificate = {pki.cert_file}\ntls_privatekey = {encrypted}\n",
         f"tls_privatekey: the key in {encrypted} is protected by a passphrase"),
        (f"tls_privatekey = {pki.key_file}\n", "tls_privatekey is set, but tls_certificate is not"),
        ("tls_certificate = ${readfile{/nonexistent/name}}\n", "tls_certificate: failed to expand"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            server_context(runtime(tmp_path, options))
        assert "PRIVATE KEY" not in str(info.value) and "BEGIN" not in str(info.value)


def test_on_connect_ports(tmp_path: Path) -> None:
    assert on_connect_ports(runtime(tmp_path).config) == frozenset()
    assert on_connect_ports(runtime(tmp_path, "tls_on_connect_ports = 465 : 2465\n").config) == {465, 2465}
    with pytest.raises(ConfigError, match="tls_on_connect_ports"):
        on_connect_ports(runtime(tmp_path, "tls_on_connect_ports = no-such-service-here\n").config)
