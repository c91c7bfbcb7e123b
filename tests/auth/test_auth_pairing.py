"""The client side (ClientExchange) against the server side (ServerExchange), from a configuration file.

The server checks passwords in real lsearch files, as the documentation's
examples do; the client is the one the smtp transport uses.
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

SERVER_CONFIG = """\
primary_hostname = mx.test.example
spool_directory = {spool}

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{lookup{{$auth2}}lsearch{{{passwd}}}{{${{if eq{{$value}}{{$auth3}}}}}}{{no}}}}
  server_set_id = $auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{lookup{{$auth1}}lsearch{{{passwd}}}{{${{if eq{{$value}}{{$auth2}}}}}}{{no}}}}
  server_set_id = $auth1

cram:
  driver = cram_md5
  public_name = CRAM-MD5
  hide server_secret = ${{lookup{{$auth1}}lsearch{{{passwd}}}{{$value}}fail}}
  server_set_id = $auth1
"""

USERS = {"ph10": "tanstaaf:tanstaaf", "alice": "wonder land^2"}


@pytest.fixture
def server(tmp_path: Path) -> Config:
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{user}: {password}\n" for user, password in USERS.items()))
    path = tmp_path / "mta.conf"
    path.write_text(SERVER_CONFIG.format(spool=tmp_path / "spool", passwd=passwd))
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
        assert step.log_field == f"{mechanism.lower().replace('-md5', '')}:{want}"


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
