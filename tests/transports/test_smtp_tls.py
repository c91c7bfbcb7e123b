"""The smtp transport's TLS: STARTTLS, smtps, verification, failures, through both clients.

Certificates come from a test CA made with `cryptography` (tests/support/tls.py);
the server certificate names localhost, mx.test.example, 127.0.0.1 and ::1.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from mta.errors import DeferError, FailError
from mta.transports.base import Delivered
from tests.support.fakesmtp import (
    FakeSmtpServer,
    SmtpClient,
    SmtpServer,
    host_of,
    outgoing,
    recipients,
    smtp_env,
    smtp_transport,
)
from tests.support.tls import Pki, pki

__all__ = ["pki"]

CIPHER = re.compile(r"TLS1\.[23]:[A-Z0-9_-]+:\d+")


@pytest.fixture(params=["async", "sync"])
def smtp_client(request: pytest.FixtureRequest) -> SmtpClient:
    return SmtpClient(request.param)


def test_starttls_verified_with_the_ca(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        transport = smtp_transport(tls_verify_certificates=str(pki.ca_file))
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered), outcome
    assert outcome.cipher is not None and CIPHER.fullmatch(outcome.cipher), outcome.cipher
    assert outcome.tls_verified is True
    assert server.connections == 1
    [message] = server.messages
    assert message.tls


def test_starttls_unverifiable_certificate_is_still_used(smtp_client: SmtpClient, pki: Pki) -> None:
    # tls_try_verify_hosts = * (the default): verification fails without our CA, so the
    # transport reconnects without verifying, and the log will say CV=no.
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered), outcome
    assert outcome.cipher is not None and outcome.tls_verified is False
    assert server.connections == 2
    assert server.messages[0].tls


def test_no_verification_attempt_without_try_verify(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        transport = smtp_transport(tls_try_verify_hosts=None)
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.cipher is not None and outcome.tls_verified is False
    assert server.connections == 1


def test_verify_hosts_fails_without_the_ca(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        transport = smtp_transport(
            tls_verify_hosts="*", hosts_require_tls="*", tls_verify_certificates=str(pki.other_ca_file)
        )
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError)
    assert outcome.message.startswith("TLS session required, but certificate verification failed")
    assert outcome.retry_error == "tls_required"
    assert not server.messages


def test_verify_hosts_passes_with_the_ca(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "mx.test.example")])
        transport = smtp_transport(tls_verify_hosts="*", hosts_require_tls="*",
                                   tls_verify_certificates=str(pki.ca_file))
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.tls_verified is True


def test_verify_checks_the_host_name(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "wrong-name.test.example")])
        transport = smtp_transport(tls_verify_hosts="*", hosts_require_tls="*",
                                   tls_verify_certificates=str(pki.ca_file))
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
        assert isinstance(outcome, DeferError) and "certificate verification failed" in outcome.message
        # tls_sni names the certificate's name instead of the host's.
        items = recipients("bob@example.org", hosts=[host_of(server, "wrong-name.test.example")])
        transport = smtp_transport(tls_verify_hosts="*", hosts_require_tls="*", tls_sni="mx.test.example",
                                   tls_verify_certificates=str(pki.ca_file))
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
        assert isinstance(outcome, Delivered) and outcome.tls_verified is True


def test_verify_refuses_an_expired_certificate(smtp_client: SmtpClient, pki: Pki, tmp_path: Path) -> None:
    """Signed by the right CA, for the right name, but its validity ended yesterday: refused, nothing sent."""
    cert, key = pki.issue_server(tmp_path, "localhost", days=(-30, -1))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with SmtpServer(starttls=context) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        transport = smtp_transport(tls_verify_hosts="*", hosts_require_tls="*",
                                   tls_verify_certificates=str(pki.ca_file))
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError)
    assert outcome.message.startswith("TLS session required, but certificate verification failed"), outcome.message
    assert "expired" in outcome.message
    assert not server.messages


def test_verify_failure_falls_back_to_clear_without_require(smtp_client: SmtpClient, pki: Pki) -> None:
    # As in Exim: tls_verify_hosts alone makes a bad certificate a TLS failure, and
    # tls_tempfail_tryclear then delivers in clear.  hosts_require_tls prevents it.
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        outcome = smtp_client.deliver(smtp_transport(tls_verify_hosts="*"), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.cipher is None and outcome.tls_verified is None
    assert server.connections == 2 and not server.messages[0].tls


def test_tls_failure_retries_in_clear(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(extensions=("PIPELINING", "STARTTLS"), starttls="plaintext") as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.cipher is None
    first, second = server.connections
    assert "STARTTLS" in first.commands and "STARTTLS" not in second.commands
    assert len(server.data) == 1


def test_tls_failure_with_require_tls_defers(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(extensions=("PIPELINING", "STARTTLS"), starttls="plaintext") as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(hosts_require_tls="*"), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError)
    assert outcome.message.startswith("TLS session required") and outcome.retry_error == "tls_required"
    assert len(server.connections) == 1 and not server.data


def test_tls_failure_without_tryclear_defers(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(extensions=("PIPELINING", "STARTTLS"), starttls="plaintext") as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        transport = smtp_transport(tls_tempfail_tryclear=False)
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError) and outcome.message.startswith("TLS negotiation failed")
    assert len(server.connections) == 1 and not server.data


def test_require_tls_when_not_offered(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(hosts_require_tls="*"), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError)
    assert outcome.message == "TLS session required, but the server did not offer STARTTLS"
    assert not server.messages


def test_hosts_avoid_tls(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(hosts_avoid_tls="*"), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.cipher is None and not server.messages[0].tls


def test_starttls_injection_is_refused(smtp_client: SmtpClient) -> None:
    # Bytes after the 220 to STARTTLS were sent in clear: reading them as TLS-protected
    # replies is CVE-2021-38371.  The connection is dropped.
    with FakeSmtpServer(extensions=("PIPELINING", "STARTTLS"), starttls="inject") as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(hosts_require_tls="*"), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError)
    assert "sent data after its reply to STARTTLS" in outcome.message
    assert not server.data


def test_smtps_implicit_tls(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(smtps=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "mx.test.example")])
        transport = smtp_transport(protocol="smtps", tls_verify_certificates=str(pki.ca_file))
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered), outcome
    assert outcome.cipher is not None and CIPHER.fullmatch(outcome.cipher) and outcome.tls_verified is True
    assert len(server.messages) == 1


def test_smtps_unverifiable_then_unverified(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(smtps=pki.server_context()) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "mx.test.example")])
        outcome = smtp_client.deliver(smtp_transport(protocol="smtps"), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.cipher is not None and outcome.tls_verified is False


def test_client_certificate(smtp_client: SmtpClient, pki: Pki) -> None:
    context = pki.server_context()
    context.verify_mode = ssl.CERT_REQUIRED  # the server insists on a client certificate from our CA
    context.load_verify_locations(pki.ca_file)
    with SmtpServer(starttls=context) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        without = smtp_client.deliver(smtp_transport(hosts_require_tls="*"), outgoing(), items, smtp_env())[items[0]]
        assert isinstance(without, DeferError)
        items = recipients("bob@example.org", hosts=[host_of(server)])
        transport = smtp_transport(
            hosts_require_tls="*", tls_certificate=str(pki.client_cert_file), tls_privatekey=str(pki.client_key_file)
        )
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.cipher is not None
    assert len(server.messages) == 1
