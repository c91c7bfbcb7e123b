"""Client authenticators: plaintext (PLAIN, LOGIN) and cram_md5, alone and from a configuration file."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mta.auth import AUTHENTICATORS
from mta.auth._common import AuthenticationCancelled, ClientExchange
from mta.auth.cram_md5 import CramMd5Authenticator, CramMd5Options, cram_md5_response
from mta.auth.plaintext import PlaintextAuthenticator, PlaintextOptions, circumflex
from mta.drivers import load_driver_class
from mta.errors import ExpansionError
from tests.support.fakesmtp import smtp_env


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def expander(**variables: str):  # type: ignore[no-untyped-def]
    env = smtp_env()
    return lambda text: env.expand(text, None, variables)


def plaintext(client_send: str, public_name: str = "PLAIN", **options: str) -> PlaintextAuthenticator:
    return PlaintextAuthenticator(
        "auth", PlaintextOptions(driver="plaintext", public_name=public_name, client_send=client_send, **options),
        ("t", 1),
    )


CIRCUMFLEX = [
    ("plain user and secret", "^user^secret", b"\0user\0secret"),
    ("doubled is literal", "pass^^word", b"pass^word"),
    ("three", "^^^x", b"^\0x"),
    ("utf-8", "j\u00f6ran", "j\u00f6ran".encode()),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in CIRCUMFLEX], ids=[c[0] for c in CIRCUMFLEX])
def test_circumflex(text: str, want: bytes) -> None:
    assert circumflex(text) == want


def test_plain_initial_response() -> None:
    exchange = ClientExchange(plaintext("<; ^ph10^${lc:SECRET}"), expander())
    assert exchange.first_command() == b"AUTH PLAIN " + base64.b64encode(b"\0ph10\0secret")


def test_login_answers_challenges_in_turn_then_cancels() -> None:
    exchange = ClientExchange(plaintext(": ph10 : secret", "LOGIN"), expander())
    assert exchange.first_command() == b"AUTH LOGIN"
    assert exchange.respond(b64(b"Username:")) == base64.b64encode(b"ph10")
    assert exchange.respond(b64(b"Password:")) == base64.b64encode(b"secret")
    assert exchange.respond(b64(b"More?")) == b"*"
    assert exchange.error == "no more data to send for AUTH"


def test_empty_initial_response_is_an_equals_sign() -> None:
    exchange = ClientExchange(plaintext("${if eq{a}{b}{x}{}} : more", "X-TEST"), expander())
    assert exchange.first_command() == b"AUTH X-TEST ="


def test_bad_challenges_cancel() -> None:
    exchange = ClientExchange(plaintext(": a : b : c", "LOGIN"), expander())
    exchange.first_command()
    assert exchange.respond("not base64 !!") == b"*"
    assert exchange.error == "AUTH challenge is not valid base64"
    many = ClientExchange(plaintext(" : ".join(["x"] * 20), "LOGIN"), expander())
    many.first_command()
    answers = [many.respond(b64(b"?")) for _ in range(11)]
    assert answers[-1] == b"*" and b"*" not in answers[:-1]


def test_forced_failure_cancels() -> None:
    exchange = ClientExchange(plaintext("${if eq{a}{b}{x}fail}"), expander())
    with pytest.raises(AuthenticationCancelled):
        exchange.first_command()
    later = ClientExchange(plaintext(": user : ${if eq{a}{b}{x}fail}", "LOGIN"), expander())
    later.first_command()
    assert later.respond(b64(b"Username:")) == base64.b64encode(b"user")
    assert later.respond(b64(b"Password:")) == b"*"


def test_expansion_error_is_raised_not_hidden() -> None:
    exchange = ClientExchange(plaintext("^u^${readfile{/nonexistent/secret}{}}"), expander())
    with pytest.raises(ExpansionError):
        exchange.first_command()


def test_client_condition() -> None:
    auth = plaintext("^u^p", client_condition="${if eq{$host}{mx.test}{yes}{no}}")
    assert auth.client_usable(expander(host="mx.test"))
    assert not auth.client_usable(expander(host="other.test"))
    assert not plaintext("^u^p", client_condition="${if eq{a}{b}{x}fail}").client_usable(expander())
    assert plaintext("^u^p").client_usable(expander())


def test_cram_md5_rfc2195_example() -> None:
    # RFC 2195 §2.
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert cram_md5_response("tim", b"tanstaaftanstaaf", challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    auth = CramMd5Authenticator(
        "cram",
        CramMd5Options(driver="cram_md5", public_name="CRAM-MD5", client_name="tim", client_secret="tanstaaftanstaaf"),
        ("t", 1),
    )
    exchange = ClientExchange(auth, expander())
    assert exchange.first_command() == b"AUTH CRAM-MD5"
    assert base64.b64decode(exchange.respond(b64(challenge))) == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_default_name_and_client_side() -> None:
    options = CramMd5Options(driver="cram_md5", public_name="CRAM-MD5", client_secret="s")
    auth = CramMd5Authenticator("cram", options, ("t", 1))
    assert auth.is_client and auth.public_name == "CRAM-MD5"
    exchange = ClientExchange(auth, expander())
    exchange.first_command()
    assert base64.b64decode(exchange.respond(b64(b"<x@y>"))).startswith(b"client.test.example ")
    assert not CramMd5Authenticator("s", CramMd5Options(driver="cram_md5"), ("t", 1)).is_client


def test_public_name_defaults_to_instance_name() -> None:
    auth = PlaintextAuthenticator("login", PlaintextOptions(driver="plaintext", client_send="x"), ("t", 1))
    assert auth.public_name == "LOGIN"


def test_registry() -> None:
    assert load_driver_class(AUTHENTICATORS, "plaintext") is PlaintextAuthenticator
    assert load_driver_class(AUTHENTICATORS, "cram_md5") is CramMd5Authenticator


def test_secret_from_an_owner_only_file_through_the_configuration(tmp_path: Path) -> None:
    """The docs' smart-host example: config file -> authenticator -> ${readfile} of a 0600 file -> AUTH."""
    from mta.config.loader import load_config
    from mta.route.context import RoutingContext
    from mta.runtime import build_runtime
    from mta.transports.base import Delivered, DeliveryEnv
    from mta.transports.smtp_sync import close_connections_sync, deliver_batch_sync
    from tests.support.fakesmtp import SmtpServer, outgoing, recipients

    secret_file = tmp_path / "smarthost.secret"
    secret_file.write_text("pa:ss^^word\n")
    secret_file.chmod(0o600)
    with SmtpServer(users={"client1": "pa:ss^word"}, auth_in_clear=True) as server:
        config_file = tmp_path / "mta.conf"
        config_file.write_text(
            f"spool_directory = {tmp_path / 'spool'}\n"
            "primary_hostname = client.test.example\n"
            "hostlist auth_hosts = 192.0.2.1 : 127.0.0.0/8\n"
            "begin transports\n"
            "remote_smtp:\n"
            "  driver = smtp\n"
            f"  hosts = 127.0.0.1::{server.port}\n"
            "  hosts_require_auth = +auth_hosts\n"
            "  allow_localhost\n"
            "  command_timeout = 2s\n"
            "begin authenticators\n"
            "smarthost_login:\n"
            "  driver = plaintext\n"
            "  public_name = LOGIN\n"
            f"  client_send = : client1 : ${{readfile{{{secret_file}}}{{}}}}\n"
        )
        config = load_config(str(config_file))
        runtime = build_runtime(config)
        [authenticator] = runtime.authenticators
        assert isinstance(authenticator, PlaintextAuthenticator) and authenticator.is_client
        ctx = RoutingContext(config, sender_address="alice@client.test.example")
        # No runtime in extra (as mta.wrapper builds it): the transport linked its
        # authenticators when build_runtime checked it.
        env = DeliveryEnv(
            expand=ctx.expand, primary_hostname="client.test.example", qualify_domain="client.test.example", now=0.0
        )
        items = recipients("bob@example.org", hosts=[])
        transport = runtime.transports["remote_smtp"]
        try:
            outcome = deliver_batch_sync(transport, outgoing(), items, env)[items[0]]
        finally:
            close_connections_sync(transport)
    assert isinstance(outcome, Delivered), outcome
    assert server.auth_attempts == [("LOGIN", "client1")]
    assert server.messages[0].authenticated == "client1"
