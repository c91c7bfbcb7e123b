"""The smtp transport as an AUTH client (RFC 4954), against aiosmtpd, through both clients."""

from __future__ import annotations

import pytest

from mta.auth.cram_md5 import CramMd5Authenticator, CramMd5Options
from mta.auth.plaintext import PlaintextAuthenticator, PlaintextOptions
from mta.errors import DeferError, FailError
from mta.transports.base import Delivered
from tests.support.fakesmtp import (
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

USERS = {"ph10": "s3cret:with^colon", "other": "x"}


@pytest.fixture(params=["async", "sync"])
def smtp_client(request: pytest.FixtureRequest) -> SmtpClient:
    return SmtpClient(request.param)


def plain(secret: str = "s3cret:with^^colon", name: str = "fixed_plain") -> PlaintextAuthenticator:
    return PlaintextAuthenticator(
        name, PlaintextOptions(driver="plaintext", public_name="PLAIN", client_send=f"<; ^ph10^{secret}"), ("t", 1)
    )


def login(secret: str = "s3cret:with^^colon") -> PlaintextAuthenticator:
    return PlaintextAuthenticator(
        "fixed_login",
        PlaintextOptions(driver="plaintext", public_name="LOGIN", client_send=f"<; ; ph10 ; {secret}"),
        ("t", 1),
    )


def cram(secret: str = "s3cret:with^colon") -> CramMd5Authenticator:
    options = CramMd5Options(driver="cram_md5", public_name="CRAM-MD5", client_name="ph10", client_secret=secret)
    return CramMd5Authenticator("cram", options, ("t", 1))


def tls_transport(pki: Pki, **options: object) -> object:
    return smtp_transport(tls_verify_certificates=str(pki.ca_file), **options)


@pytest.mark.parametrize(
    ("authenticator", "mechanism"),
    [(plain(), "PLAIN"), (login(), "LOGIN"), (cram(), "CRAM-MD5")],
    ids=["PLAIN", "LOGIN", "CRAM-MD5"],
)
def test_authenticates_over_starttls(smtp_client: SmtpClient, pki: Pki, authenticator: object, mechanism: str) -> None:
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        env = smtp_env(authenticators=(authenticator,))
        outcome = smtp_client.deliver(tls_transport(pki, hosts_try_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered), outcome
    [message] = server.messages
    assert message.authenticated == "ph10" and message.tls
    assert "AUTH=<>" in message.mail_options
    if mechanism != "CRAM-MD5":
        assert server.auth_attempts == [(mechanism, "ph10")]


def test_only_an_offered_mechanism_is_used(smtp_client: SmtpClient, pki: Pki) -> None:
    never = PlaintextAuthenticator(
        "xoauth", PlaintextOptions(driver="plaintext", public_name="XOAUTH2", client_send="token"), ("t", 1)
    )
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        env = smtp_env(authenticators=(never, login()))
        outcome = smtp_client.deliver(tls_transport(pki, hosts_require_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    assert server.auth_attempts == [("LOGIN", "ph10")]


def test_first_failure_then_next_authenticator(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        env = smtp_env(authenticators=(plain("wrong"), login()))
        outcome = smtp_client.deliver(tls_transport(pki, hosts_require_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    assert server.auth_attempts == [("PLAIN", "ph10"), ("LOGIN", "ph10")]
    assert server.messages[0].authenticated == "ph10"


def test_require_auth_failing_defers(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        env = smtp_env(authenticators=(plain("wrong"),))
        outcome = smtp_client.deliver(tls_transport(pki, hosts_require_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError)
    assert outcome.message.startswith("authentication required but authentication attempt(s) failed")
    assert "535" in outcome.message and "wrong" not in outcome.message  # the reply, never the secret
    assert outcome.retry_error == "auth_failed"
    assert not server.messages


def test_try_auth_failing_sends_unauthenticated(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        env = smtp_env(authenticators=(cram("wrong"),))
        outcome = smtp_client.deliver(tls_transport(pki, hosts_try_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    [message] = server.messages
    assert message.authenticated is None and not any(o.startswith("AUTH=") for o in message.mail_options)


def test_require_auth_without_auth_offered(smtp_client: SmtpClient) -> None:
    with SmtpServer(users=USERS) as server:  # no TLS, so aiosmtpd offers no AUTH
        items = recipients("bob@example.org", hosts=[host_of(server)])
        env = smtp_env(authenticators=(plain(),))
        outcome = smtp_client.deliver(smtp_transport(hosts_require_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, DeferError)
    assert outcome.message == "authentication required but the server did not offer AUTH"


def test_no_credentials_in_clear_for_try_auth(smtp_client: SmtpClient) -> None:
    with SmtpServer(users=USERS, auth_in_clear=True) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        env = smtp_env(authenticators=(plain(),))
        outcome = smtp_client.deliver(smtp_transport(hosts_try_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    assert server.auth_attempts == [] and server.messages[0].authenticated is None


def test_require_auth_uses_auth_offered_in_clear(smtp_client: SmtpClient) -> None:
    with SmtpServer(users=USERS, auth_in_clear=True) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        env = smtp_env(authenticators=(plain(),))
        outcome = smtp_client.deliver(smtp_transport(hosts_require_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    assert server.auth_attempts == [("PLAIN", "ph10")]


def test_authenticated_sender(smtp_client: SmtpClient, pki: Pki) -> None:
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        transport = tls_transport(pki, hosts_require_auth="*", authenticated_sender="${sender_address}")
        env = smtp_env(authenticators=(plain(),))
        message = outgoing(sender="a+b=c@example.com")
        env_sender = {"sender_address": "a+b=c@example.com"}
        env.expand = _with_variables(env.expand, env_sender)
        outcome = smtp_client.deliver(transport, message, items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    # xtext (RFC 3461): + and = are encoded; aiosmtpd upper-cases the parameters it passes on.
    assert "AUTH=A+2BB+3DC@EXAMPLE.COM" in server.messages[0].mail_options


def test_client_condition_skips_an_authenticator(smtp_client: SmtpClient, pki: Pki) -> None:
    skipped = PlaintextAuthenticator(
        "skipped",
        PlaintextOptions(driver="plaintext", public_name="PLAIN", client_send="^ph10^wrong",
                         client_condition="${if eq{$host}{localhost}{no}{yes}}"),
        ("t", 1),
    )
    with SmtpServer(starttls=pki.server_context(), users=USERS) as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "localhost")])
        env = smtp_env(authenticators=(skipped, login()))
        outcome = smtp_client.deliver(tls_transport(pki, hosts_require_auth="*"), outgoing(), items, env)[items[0]]
    assert isinstance(outcome, Delivered)
    assert server.auth_attempts == [("LOGIN", "ph10")]


def _with_variables(expand: object, variables: dict[str, str]) -> object:
    def wrapped(text: str, item: object = None, extra: dict[str, object] | None = None) -> str:
        return expand(text, item, {**variables, **(extra or {})})  # type: ignore[operator]

    return wrapped
