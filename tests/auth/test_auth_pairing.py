"""The client side (ClientExchange) against the server side (ServerExchange), from a configuration file.

The server is docs/auth.md's example, checking passwords in a real lsearch
file; the client is the one the smtp transport uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.auth._common import Authenticator, ClientExchange
from mta.auth.cram_md5 import CramMd5Authenticator, CramMd5Options
from mta.auth.plaintext import PlaintextAuthenticator, PlaintextOptions
from mta.auth.server import Challenge, Failure, ServerExchange, Success, find_server_authenticator, server_mechanisms
from mta.config.loader import Config, load_config
from mta.config.variables import expansion_context
from mta.expand import ExpandContext, expand
from mta.runtime import build_runtime
from tests.e2e.test_doc_examples import doc_example

SERVER_MAIN = """\
primary_hostname = mx.test.example
spool_directory = {spool}

"""

USERS = {"ph10": "tanstaaf:tanstaaf", "alice": "wonder land^2"}


@pytest.fixture
def server(tmp_path: Path) -> Config:
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{user}: {password}\n" for user, password in USERS.items()))
    path = tmp_path / "mta.conf"
    example = doc_example("auth.md", "server-authenticators").replace("/etc/mta/passwd", str(passwd))
    # hide: -bP shows the secret's expansion to administrators only (test below).
    example = example.replace("  server_secret =", "  hide server_secret =")
    path.write_text(SERVER_MAIN.format(spool=tmp_path / "spool") + example)
    return load_config(str(path))


def client(mechanism: str, user: str, password: str) -> Authenticator:
    secret = password.replace("^", "^^")
    if mechanism == "PLAIN":
        return PlaintextAuthenticator(
            "c", PlaintextOptions(driver="plaintext", public_name="PLAIN", client_send=f"<; ^{user}^{secret}"),
            ("t", 1),
        )
    if mechanism == "LOGIN":
        return PlaintextAuthenticator(
            "c", PlaintextOptions(driver="plaintext", public_name="LOGIN", client_send=f"<; ; {user} ; {secret}"),
            ("t", 1),
        )
    options = CramMd5Options(driver="cram_md5", public_name="CRAM-MD5", client_name=user, client_secret=password)
    return CramMd5Authenticator("c", options, ("t", 1))


def converse(config: Config, client_side: Authenticator) -> Success | Failure:
    """One AUTH command, the client's bytes handed to the server and back, as over a socket."""
    runtime = build_runtime(config)

    def connection_expand(text: str, extra: dict[str, object] | None = None) -> str:
        return expand(text, expansion_context(config, {"sender_host_address": "192.0.2.9", **(extra or {})}))

    advertised = server_mechanisms(runtime.authenticators, connection_expand)
    assert advertised == ["PLAIN", "LOGIN", "CRAM-MD5"]
    exchange = ClientExchange(client_side, lambda text: expand(text, ExpandContext({"primary_hostname": "c.test"})))
    command = exchange.first_command().decode("ascii")
    verb, mechanism, *initial = command.split(" ")
    assert verb == "AUTH"
    authenticator = find_server_authenticator(runtime.authenticators, mechanism, advertised)
    assert authenticator is not None
    server_side = ServerExchange(authenticator, connection_expand)
    step = server_side.start(initial[0] if initial else None)
    rounds = 0
    while isinstance(step, Challenge):
        rounds += 1
        assert rounds < 5
        step = server_side.respond(exchange.respond(step.text).decode("ascii"))
    return step


CASES = [
    (mechanism, user, password, want)
    for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5")
    for user, password, want in (
        ("ph10", USERS["ph10"], "ph10"),  # a colon in the password
        ("alice", USERS["alice"], "alice"),  # a space and a ^ in it
        ("ph10", "guess", None),
        ("nobody", "", None),  # an unknown user with an empty password is not let in
        # lsearch keys are caseless (Exim's too): the upper-case name finds alice's line, and the id is as typed.
        ("ALICE", USERS["alice"], "ALICE"),
    )
]


@pytest.mark.parametrize(("mechanism", "user", "password", "want"), CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_client_against_server(server: Config, mechanism: str, user: str, password: str, want: str | None) -> None:
    step = converse(server, client(mechanism, user, password))
    if want is None:
        assert isinstance(step, Failure) and (step.code, step.esc) == (535, "5.7.8"), step
        assert password not in step.log_reason or not password
    else:
        assert isinstance(step, Success), step
        assert step.authenticated_id == want
        instance = {"PLAIN": "plain_server", "LOGIN": "login_server", "CRAM-MD5": "cram_server"}[mechanism]
        assert step.log_field == f"{instance}:{want}"


def test_hidden_server_secret_and_server_options_in_bP(server: Config) -> None:
    from mta.config.loader import DriverSpec
    from mta.runtime import driver_option_lines

    spec: DriverSpec = server.drivers["authenticators"][2]
    admin = driver_option_lines(server, spec, admin=True)
    other = driver_option_lines(server, spec, admin=False)
    assert any(line.startswith("server_secret = ${lookup") for line in admin)
    assert "server_secret = <value not displayable>" in other
    assert "server_set_id = $auth1" in other
    plain = driver_option_lines(server, server.drivers["authenticators"][0], admin=False)
    assert "server_prompts = :" in plain and any(line.startswith("server_condition = ") for line in plain)


def test_docs_tables_are_generated_from_the_options() -> None:
    from mta.auth._common import AuthenticatorOptions
    from mta.config.options import reference_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "auth.md").read_text()
    tables = [
        reference_markdown("Options every authenticator has", AuthenticatorOptions),
        reference_markdown("Options of the plaintext authenticator", PlaintextOptions, private_only=True),
        reference_markdown("Options of the cram_md5 authenticator", CramMd5Options, private_only=True),
    ]
    for table in tables:
        assert table in text, f"docs/auth.md is out of date; regenerate:\n{table}"


def test_the_default_configurations_commented_authenticators_work(tmp_path: Path) -> None:
    """etc/mta.conf ends with server authenticators to uncomment; uncommented, they are docs/auth.md's."""
    text = (Path(__file__).resolve().parents[2] / "etc" / "mta.conf").read_text()
    block = text[text.index("# begin authenticators") :]
    uncommented = "".join(line[2:] + "\n" for line in block.splitlines() if line.startswith("# "))
    documented = doc_example("auth.md", "server-authenticators").splitlines()
    assert all(line in documented for line in uncommented.splitlines()), "etc/mta.conf and docs/auth.md differ"
    (tmp_path / "mta.conf").write_text(SERVER_MAIN.format(spool=tmp_path / "spool") + uncommented)
    runtime = build_runtime(load_config(str(tmp_path / "mta.conf")))
    assert [a.public_name for a in runtime.authenticators if a.is_server] == ["PLAIN", "LOGIN"]
