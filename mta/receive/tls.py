"""TLS for the SMTP daemon: the server's SSLContext, and what a session says about its TLS.

    context = server_context(runtime)      # at start-up and on SIGHUP, before privileges are dropped
    ... STARTTLS, or a port in tls_on_connect_ports: start TLS with `context` (server side)
    cipher_text(ssl_object)                # "TLS1.3:TLS_AES_256_GCM_SHA384:256": X= in the log, $tls_in_cipher
    tls_variables(ssl_object)              # $tls_in_cipher, $tls_in_bits, $tls_in_ver, $tls_in_peerdn (and $tls_*)
    on_connect_ports(config)               # tls_on_connect_ports as a set of port numbers

The context accepts TLS 1.2 and 1.3 only, without compression or
renegotiation, preferring the server's cipher order; `tls_require_ciphers`
sets the TLS 1.2 ciphers.  It serves `tls_certificate` with `tls_privatekey`
(both expanded once, with the configuration's variables).  When neither is
set, it serves a self-signed certificate for primary_hostname (ECDSA P-256,
the name as subject and DNS subject alternative name, valid ten years),
made the first time and kept as ``<spool_directory>/tls/selfsigned-cert.pem``
and ``selfsigned-key.pem`` (mode 0600); later starts reuse it, and make a new
one when primary_hostname changed, it expires within 30 days, or the files
are damaged.  Nothing is cached between calls: SIGHUP calls this again and
picks up renewed files.

Security: call it in the master process, while it can still read a key
readable only by root; the receiving processes inherit the context when they
are forked.  The tls/ directory is opened without following links, must
belong to this process's user, and is mode 0700; the files are written under
temporary names with O_EXCL|O_NOFOLLOW, fsynced, then renamed into place
(key first: a crash in between leaves a pair that does not match, which the
next start replaces).  Key material never appears in an error message.

Diagnostics: every problem is a ConfigError naming the option and the file
(unreadable, not PEM, an encrypted key, a key that does not match the
certificate, a bad cipher list).  Making a self-signed certificate is
logged in the main log.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from pathlib import Path

from mta.config.variables import expansion_context
from mta.errors import ConfigError, ExpansionError, SpoolError
from mta.expand.expander import expand
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl

    from mta.config.loader import Config
    from mta.runtime import Runtime

SELF_SIGNED_DIRECTORY = "tls"
SELF_SIGNED_CERTIFICATE = "selfsigned-cert.pem"
SELF_SIGNED_KEY = "selfsigned-key.pem"
_LOCK = "lock"
VALIDITY = datetime.timedelta(days=3650)
# A certificate this close to its end is replaced at the next start, before clients see it expire.
RENEW_BEFORE = datetime.timedelta(days=30)
# X.509 (RFC 5280, ub-common-name): a common name has at most 64 characters.
_COMMON_NAME_MAX = 64
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def server_context(runtime: Runtime, now: float | None = None) -> ssl.SSLContext:
    """A server-side SSLContext for the daemon; ConfigError says what is wrong with which option and file.

    `now` (seconds since the epoch) decides whether the self-signed
    certificate must be renewed; tests pass it, the daemon does not.
    """
    import ssl

    config = runtime.config
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ciphers = _expanded(config, "tls_require_ciphers")
    if ciphers is not None:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError:
            raise ConfigError(f'tls_require_ciphers: OpenSSL knows no cipher in "{ciphers}"', config.path) from None
    certificate = _expanded(config, "tls_certificate")
    privatekey = _expanded(config, "tls_privatekey")
    if certificate is None:
        if privatekey is not None:
            raise ConfigError("tls_privatekey is set, but tls_certificate is not", config.path)
        certificate, privatekey = self_signed_certificate(runtime, now)
    else:
        check_pair(certificate, privatekey or certificate, config.path)
    try:
        context.load_cert_chain(certificate, privatekey or certificate)
    except (OSError, ssl.SSLError) as exc:
        # check_pair has read both files already; this is a change between the two reads.
        raise ConfigError(
            f"tls_certificate: OpenSSL cannot use {certificate} with the key in {privatekey or certificate}:"
            f" {getattr(exc, 'reason', None) or exc.strerror or 'error'}",
            config.path,
        ) from None
    return context


def _expanded(config: Config, name: str) -> str | None:
    """A main option's expanded value; None when unset, empty or forced to fail."""
    text = getattr(config.main, name)
    if text is None:
        return None
    try:
        value = expand(text, expansion_context(config)).strip()
    except ExpansionError as exc:
        if exc.forced:
            return None
        raise ConfigError(f"{name}: failed to expand: {exc.message}", config.path) from None
    return value or None


def _read(path: str, option: str, config_path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror}", config_path) from None


def check_pair(certificate: str, privatekey: str, config_path: str) -> None:
    """Check that the files hold a PEM certificate and its unencrypted private key; ConfigError otherwise."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(_read(certificate, "tls_certificate", config_path))
    except ValueError:
        raise ConfigError(f"tls_certificate: {certificate} holds no PEM certificate", config_path) from None
    try:
        key = serialization.load_pem_private_key(_read(privatekey, "tls_privatekey", config_path), password=None)
    except TypeError:
        raise ConfigError(
            f"tls_privatekey: the key in {privatekey} is protected by a passphrase; mta needs it without one",
            config_path,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"tls_privatekey: {privatekey} holds no PEM private key mta can use", config_path) from None
    if _public(chain[0].public_key()) != _public(key.public_key()):
        raise ConfigError(
            f"tls_privatekey: the key in {privatekey} does not match the certificate in {certificate}", config_path
        )


def _public(public_key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- the self-signed certificate -------------------------------------------------


def self_signed_certificate(runtime: Runtime, now: float | None = None) -> tuple[str, str]:
    """(certificate file, key file) of a usable self-signed certificate for primary_hostname, made if need be."""
    import time

    config = runtime.config
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    hostname = config.primary_hostname
    try:
        dns_name = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ConfigError(
            f'primary_hostname "{hostname}" cannot be a certificate name: set tls_certificate', config.path
        ) from None
    directory = Path(config.spool_directory) / SELF_SIGNED_DIRECTORY
    files = (str(directory / SELF_SIGNED_CERTIFICATE), str(directory / SELF_SIGNED_KEY))
    dir_fd = _open_directory(directory, config.path)
    try:
        lock_fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            # Two processes starting at once make one certificate, not two halves of two.
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if not _usable(dir_fd, dns_name, moment):
                _make(dir_fd, dns_name, moment)
                runtime.logger.main(f"TLS: made a self-signed certificate for {dns_name} in {directory}")
        finally:
            os.close(lock_fd)
    except OSError as exc:
        reason = f"cannot keep the self-signed certificate in {directory}: {exc.strerror}"
        raise ConfigError(reason, config.path) from None
    finally:
        os.close(dir_fd)
    return files


def _open_directory(directory: Path, config_path: str) -> int:
    from mta.spool.files import make_directory

    try:
        make_directory(directory.parent)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    except (OSError, SpoolError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"cannot keep the self-signed certificate in {directory}: {reason}", config_path) from None
    st = os.fstat(dir_fd)
    if st.st_uid != os.geteuid():
        os.close(dir_fd)
        raise ConfigError(
            f"{directory} belongs to uid {st.st_uid}, not to this process (uid {os.geteuid()}): remove it", config_path
        )
    if st.st_mode & 0o077:
        os.fchmod(dir_fd, 0o700)
    return dir_fd


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _usable(dir_fd: int, dns_name: str, moment: datetime.datetime) -> bool:
    """Do the kept files make a certificate for `dns_name`, valid now and for RENEW_BEFORE more?"""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(_read_at(dir_fd, SELF_SIGNED_CERTIFICATE))
        key = serialization.load_pem_private_key(_read_at(dir_fd, SELF_SIGNED_KEY), password=None)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = [name.lower() for name in names.get_values_for_type(x509.DNSName)]
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound):
        return False  # missing, damaged or foreign files: make new ones
    return (
        dns_names == [dns_name]
        and not_before <= moment
        and moment + RENEW_BEFORE < not_after
        and _public(certificate.public_key()) == _public(key.public_key())
    )


def _make(dir_fd: int, dns_name: str, moment: datetime.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name[:_COMMON_NAME_MAX])])
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A day's grace for clients whose clock is behind.
        .not_valid_before(moment - datetime.timedelta(days=1))
        .not_valid_after(moment + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _replace(dir_fd, SELF_SIGNED_KEY, key_pem, 0o600)
    _replace(dir_fd, SELF_SIGNED_CERTIFICATE, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    os.fsync(dir_fd)


def _replace(dir_fd: int, name: str, content: bytes, mode: int) -> None:
    """Write `name` in the directory atomically: a fresh temporary file, fsync, rename."""
    temporary = f".{name}.{os.getpid()}.tmp"
    try:
        os.unlink(temporary, dir_fd=dir_fd)  # left by a crash
    except FileNotFoundError:
        pass
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


# -- what a session logs and expands -------------------------------------------


def cipher_text(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """Exim's $tls_in_cipher and X=: ``TLS1.3:TLS_AES_256_GCM_SHA384:256``."""
    name, _version, bits = ssl_object.cipher() or ("unknown", "", 0)
    return f"{_protocol(ssl_object)}:{name}:{bits}"


def _protocol(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    return (ssl_object.version() or "TLS").replace("TLSv", "TLS")


# OpenSSL's short names, as Exim's $tls_in_peerdn shows them (X509_NAME_oneline).
_SHORT_NAMES = {"1.2.840.113549.1.9.1": "emailAddress"}


def peer_dn(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The subject of the client's certificate as ``/C=GB/O=Example/CN=host`` (Exim), None without one.

    Only a context that asks for client certificates gets one; the
    daemon's does not (yet), so this is None for every client today.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    subject = x509.load_der_x509_certificate(der).subject
    parts = []
    for attribute in subject:
        label = _SHORT_NAMES.get(attribute.oid.dotted_string, attribute.rfc4514_attribute_name)
        parts.append(f"/{label}={attribute.value!s}")
    return "".join(parts)


def tls_variables(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, str | None]:
    """The expansion variables of a TLS session, in Exim's names (the $tls_* ones mean $tls_in_* in the daemon)."""
    _name, _version, bits = ssl_object.cipher() or ("", "", 0)
    cipher, dn = cipher_text(ssl_object), peer_dn(ssl_object)
    return {
        "tls_in_cipher": cipher,
        "tls_cipher": cipher,
        "tls_in_bits": str(bits),
        "tls_bits": str(bits),
        "tls_in_ver": _protocol(ssl_object),
        "tls_in_peerdn": dn,
        "tls_peerdn": dn,
    }


def on_connect_ports(config: Config) -> frozenset[int]:
    """tls_on_connect_ports as port numbers (service names looked up); ConfigError for a bad item."""
    import socket

    ports = set()
    for item in split_list(config.main.tls_on_connect_ports):
        if item.isdigit() and 0 < int(item) < 65536:
            ports.add(int(item))
            continue
        try:
            ports.add(socket.getservbyname(item, "tcp"))
        except OSError:
            reason = f'tls_on_connect_ports: "{item}" is neither a port number nor a service'
            raise ConfigError(reason, config.path) from None
    return frozenset(ports)
