"""Server authenticators: plaintext (PLAIN, LOGIN) and cram_md5, as the SMTP session drives them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mta.auth._common import ServerData
from mta.auth.cram_md5 import CramMd5Authenticator, CramMd5Options, cram_md5_response
from mta.auth.plaintext import PlaintextAuthenticator, PlaintextOptions, prompt_list
from mta.auth.server import (
    Challenge,
    Failure,
    ServerExchange,
    Success,
    find_server_authenticator,
    server_mechanisms,
    withhold,
)
from mta.expand import ExpandContext, expand
from mta.taint import is_tainted

PASSWORD = "tanstaaftanstaaf"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def expand_with(text: str, extra: dict[str, object]) -> str:
    """The session's expand(text, extra_variables), with a connection's variables."""
    variables: dict[str, object] = {"primary_hostname": "mx.test.example", "sender_host_address": "192.0.2.9"}
    variables.update(extra)
    return expand(text, ExpandContext(variables=variables))  # type: ignore[arg-type]


# server_condition for the tables: user ph10 with PASSWORD, given as $auth2/$auth3 (PLAIN) or $auth1/$auth2 (LOGIN).
PLAIN_CHECK = "${if and{{eq{$auth2}{ph10}}{eq{$auth3}{" + PASSWORD + "}}}}"
LOGIN_CHECK = "${if and{{eq{$auth1}{ph10}}{eq{$auth2}{" + PASSWORD + "}}}}"


def plaintext(public_name: str = "PLAIN", **options: str) -> PlaintextAuthenticator:
    options.setdefault("server_condition", PLAIN_CHECK if public_name == "PLAIN" else LOGIN_CHECK)
    options.setdefault("server_set_id", "$auth2" if public_name == "PLAIN" else "$auth1")
    return PlaintextAuthenticator(
        public_name.lower(), PlaintextOptions(driver="plaintext", public_name=public_name, **options), ("t", 1)
    )


def cram(**options: str) -> CramMd5Authenticator:
    options.setdefault("server_secret", "${if eq{$auth1}{ph10}{" + PASSWORD + "}fail}")
    options.setdefault("server_set_id", "$auth1")
    return CramMd5Authenticator("cram", CramMd5Options(driver="cram_md5", public_name="CRAM-MD5", **options), ("t", 1))


def run(exchange: ServerExchange, initial: str | None, answers: list[str]) -> tuple[list[bytes], object]:
    """Drive an exchange: the challenges sent (decoded) and the final step."""
    challenges: list[bytes] = []
    step = exchange.start(initial)
    for answer in answers:
        assert isinstance(step, Challenge), step
        challenges.append(unb64(step.text))
        step = exchange.respond(answer)
    return challenges, step


def reply(step: object) -> str:
    assert isinstance(step, Success | Failure), step
    return f"{step.code} {step.esc}"


# (name, initial response, the client's answers, the challenges it should get, the final reply)
EXCHANGE = ("initial", "answers", "challenges", "want")
PLAIN = [
    ("initial response", b64(b"\0ph10\0" + PASSWORD.encode()), [], [], "235 2.7.0"),
    ("after an empty challenge", None, [b64(b"\0ph10\0" + PASSWORD.encode())], [b""], "235 2.7.0"),
    ("authzid given", b64(b"ph10\0ph10\0" + PASSWORD.encode()), [], [], "235 2.7.0"),
    ("wrong password", b64(b"\0ph10\0guess"), [], [], "535 5.7.8"),
    ("unknown user", b64(b"\0nobody\0" + PASSWORD.encode()), [], [], "535 5.7.8"),
    ("no password", b64(b"\0ph10"), [], [], "535 5.7.8"),
    ("empty initial response =", "=", [], [], "535 5.7.8"),
    ("malformed base64", "AHBoMTAA!!!", [], [], "501 5.5.2"),
    ("bad padding", "AHBoMTA", [], [], "501 5.5.2"),
    ("not even ASCII", "AHBoMTAA\u00e9\u00e9\u00e9=", [], [], "501 5.5.2"),
    ("a line break inside", "AHBo\r\nMTAA", [], [], "501 5.5.2"),
    ("malformed answer", None, ["not base64 at all"], [b""], "501 5.5.2"),
    ("cancelled", None, ["*"], [b""], "501 5.5.2"),
    ("absurdly long line", "A" * 20000, [], [], "500 5.5.6"),
    ("absurdly long answer", None, ["A" * 20000], [b""], "500 5.5.6"),
]


@pytest.mark.parametrize(EXCHANGE, [c[1:] for c in PLAIN], ids=[c[0] for c in PLAIN])
def test_plain(initial: str | None, answers: list[str], challenges: list[bytes], want: str) -> None:
    got_challenges, step = run(ServerExchange(plaintext(), expand_with), initial, answers)
    assert got_challenges == challenges
    assert reply(step) == want


LOGIN = [
    ("both asked", None, [b64(b"ph10"), b64(PASSWORD.encode())], [b"Username:", b"Password:"], "235 2.7.0"),
    ("user in the AUTH command", b64(b"ph10"), [b64(PASSWORD.encode())], [b"Password:"], "235 2.7.0"),
    ("wrong password", None, [b64(b"ph10"), b64(b"guess")], [b"Username:", b"Password:"], "535 5.7.8"),
    ("empty user name", None, [b64(b""), b64(PASSWORD.encode())], [b"Username:", b"Password:"], "535 5.7.8"),
    ("cancelled at the password", None, [b64(b"ph10"), "*"], [b"Username:", b"Password:"], "501 5.5.2"),
    ("malformed password", None, [b64(b"ph10"), "%%%"], [b"Username:", b"Password:"], "501 5.5.2"),
]


@pytest.mark.parametrize(EXCHANGE, [c[1:] for c in LOGIN], ids=[c[0] for c in LOGIN])
def test_login(initial: str | None, answers: list[str], challenges: list[bytes], want: str) -> None:
    got_challenges, step = run(ServerExchange(plaintext("LOGIN"), expand_with), initial, answers)
    assert got_challenges == challenges
    assert reply(step) == want


def test_configured_prompts_use_exim_list_syntax() -> None:
    assert prompt_list("Username:: : Password::") == ["Username:", "Password:"]
    assert prompt_list(":") == [""]
    assert prompt_list("<; User: ; Pass: ;") == ["User:", "Pass:"]
    auth = plaintext("X-LOGIN", server_prompts="<; ${uc:user}: ; pass:", server_condition=LOGIN_CHECK)
    challenges, step = run(ServerExchange(auth, expand_with), None, [b64(b"ph10"), b64(PASSWORD.encode())])
    assert challenges == [b"USER:", b"pass:"] and reply(step) == "235 2.7.0"


def test_prompts_that_fail_to_expand_are_a_temporary_failure() -> None:
    auth = plaintext("LOGIN", server_prompts="${readfile{/nonexistent/prompts}}")
    step = ServerExchange(auth, expand_with).start(None)
    assert isinstance(step, Failure) and (step.code, step.esc) == (435, "4.7.0")
    assert "server_prompts" in step.log_reason


def cram_answer(challenge: bytes, name: str = "ph10", secret: str = PASSWORD) -> str:
    return b64(cram_md5_response(name, secret.encode(), challenge))


def test_cram_md5_challenge_is_exims_shape() -> None:
    step = ServerExchange(cram(), expand_with).start(None)
    assert isinstance(step, Challenge)
    challenge = unb64(step.text).decode()
    assert challenge.startswith("<") and challenge.endswith("@mx.test.example>")
    random_part, time_part = challenge[1:].split("@")[0].split(".")
    assert random_part.isdigit() and time_part.isdigit()
    again = ServerExchange(cram(), expand_with).start(None)
    assert isinstance(again, Challenge) and again.text != step.text


CRAM = [
    ("right secret", lambda c: cram_answer(c), "235 2.7.0"),
    ("upper-case hex", lambda c: b64(cram_md5_response("ph10", PASSWORD.encode(), c).upper().replace(b"PH10", b"ph10")),
     "235 2.7.0"),
    ("wrong secret", lambda c: cram_answer(c, secret="guess"), "535 5.7.8"),
    ("unknown user (server_secret forced to fail)", lambda c: cram_answer(c, name="nobody"), "535 5.7.8"),
    ("no space", lambda c: b64(b"ph10" + b"0" * 32), "535 5.7.8"),
    ("truncated base64", lambda c: cram_answer(c)[:-3], "501 5.5.2"),
    ("digest of the wrong length", lambda c: b64(b"ph10 " + b"0" * 31), "535 5.7.8"),
    ("malformed base64", lambda c: "@@@@", "501 5.5.2"),
    ("cancelled", lambda c: "*", "501 5.5.2"),
]


@pytest.mark.parametrize(("answer", "want"), [c[1:] for c in CRAM], ids=[c[0] for c in CRAM])
def test_cram_md5(answer, want: str) -> None:  # type: ignore[no-untyped-def]
    exchange = ServerExchange(cram(), expand_with)
    step = exchange.start(None)
    assert isinstance(step, Challenge)
    assert reply(exchange.respond(answer(unb64(step.text)))) == want


def test_cram_md5_refuses_initial_data_and_empty_secrets() -> None:
    assert reply(ServerExchange(cram(), expand_with).start(b64(b"ph10"))) == "553 5.5.2"
    # A lookup written without "fail" gives "" for an unknown user: nobody may sign with an empty key.
    exchange = ServerExchange(cram(server_secret="${if eq{$auth1}{ph10}{" + PASSWORD + "}{}}"), expand_with)
    step = exchange.start(None)
    assert isinstance(step, Challenge)
    assert reply(exchange.respond(cram_answer(unb64(step.text), "nobody", ""))) == "535 5.7.8"


def test_cram_md5_server_condition_is_an_extra_check() -> None:
    exchange = ServerExchange(cram(server_condition="${if eq{$auth1}{root}{no}{yes}}"), expand_with)
    step = exchange.start(None)
    assert isinstance(step, Challenge)
    assert isinstance(exchange.respond(cram_answer(unb64(step.text))), Success)
    exchange = ServerExchange(cram(server_condition="no"), expand_with)
    step = exchange.start(None)
    assert isinstance(step, Challenge)
    assert reply(exchange.respond(cram_answer(unb64(step.text)))) == "535 5.7.8"


CONDITIONS = [
    ("yes", "235 2.7.0"), ("1", "235 2.7.0"), ("true", "235 2.7.0"), (" TRUE ", "235 2.7.0"), ("Yes", "235 2.7.0"),
    ("no", "535 5.7.8"), ("0", "535 5.7.8"), ("false", "535 5.7.8"), ("", "535 5.7.8"), ("NO", "535 5.7.8"),
    ("${if eq{a}{b}{yes}fail}", "535 5.7.8"),  # forced failure: refused, as Exim's auth_check_serv_cond does
    ("${readfile{/nonexistent/file}}", "435 4.7.0"),  # expansion error: the server cannot decide
    ("${lookup{$auth2}lsearch{/nonexistent/passwd}}", "435 4.7.0"),  # a lookup file that cannot be read
    ("maybe", "435 4.7.0"),
]


@pytest.mark.parametrize(("condition", "want"), CONDITIONS, ids=[c[0] or "empty" for c in CONDITIONS])
def test_server_condition_verdicts(condition: str, want: str) -> None:
    step = ServerExchange(plaintext(server_condition=condition), expand_with).start(b64(b"\0ph10\0pw"))
    assert reply(step) == want


def test_log_reasons_are_exims() -> None:
    failed = ServerExchange(plaintext(), expand_with).start(b64(b"\0ph10\0guess"))
    assert isinstance(failed, Failure)
    assert failed.log_reason == "535 Incorrect authentication data (set_id=ph10)"
    assert failed.failed_id == "ph10" and failed.text == "Incorrect authentication data"
    deferred = ServerExchange(plaintext(server_condition="${readfile{/nonexistent/x}}"), expand_with).start(
        b64(b"\0ph10\0guess")
    )
    assert isinstance(deferred, Failure)
    assert deferred.log_reason.startswith("435 Unable to authenticate at present (set_id=ph10): server_condition: ")
    assert "/nonexistent/x" in deferred.log_reason
    assert ServerExchange(plaintext(), expand_with).start("*!").log_reason == "501 Invalid base64 data"  # type: ignore[union-attr]


SECRET_LEAKS = [
    # Expansion errors quote the values they choke on; the password must not reach the log.
    ("a number test", "${if ={$auth3}{1}}", "correct-horse-battery"),
    ("a short password", "${if ={$auth3}{1}}", "abc"),
    ("a lookup keyed by it", "${lookup{$auth3}lsearch{/nonexistent/$auth3}}", "correct-horse-battery"),
    ("a non-boolean result", "$auth3", "correct-horse-battery"),
]


@pytest.mark.parametrize(("condition", "password"), [c[1:] for c in SECRET_LEAKS], ids=[c[0] for c in SECRET_LEAKS])
def test_passwords_never_reach_the_log_or_the_reply(condition: str, password: str) -> None:
    exchange = ServerExchange(plaintext(server_condition=condition), expand_with)
    step = exchange.start(b64(b"\0ph10\0" + password.encode()))
    assert isinstance(step, Failure) and step.code == 435
    for text in (step.log_reason, step.text, repr(step), repr(exchange)):
        assert password not in text, text


def test_withhold() -> None:
    assert withhold('"hunter22" is not a number', ["hunter22"]) == '"<client data>" is not a number'
    assert "abc" not in withhold("abc is bad", ["abc"])
    assert withhold("nothing to hide", ["hunter22", ""]) == "nothing to hide"


def test_secrets_are_not_in_repr_and_are_forgotten() -> None:
    data = ServerData(expand_with)
    data.add(b"\0ph10\0" + PASSWORD.encode())
    assert PASSWORD not in repr(data)
    exchange = ServerExchange(plaintext(), expand_with)
    step = exchange.start(b64(b"\0ph10\0" + PASSWORD.encode()))
    assert isinstance(step, Success)
    assert PASSWORD not in repr(step) + repr(exchange)
    assert exchange._data.items == []  # forgotten once the exchange is over


def test_auth_variables_are_tainted_values_never_expanded() -> None:
    seen: list[dict[str, object]] = []

    def spy(text: str, extra: dict[str, object]) -> str:
        seen.append(extra)
        return expand_with(text, extra)

    # A user name that looks like an expansion is just text, wherever it goes.
    user = b"${if eq{a}{a}{ph10}{x}}"
    auth = plaintext(server_condition="${if eq{$auth2}{ph10}{yes}{no}}", server_set_id="<$auth2>")
    step = ServerExchange(auth, spy).start(b64(b"\0" + user + b"\0pw"))
    assert isinstance(step, Failure) and step.failed_id == "<${if eq{a}{a}{ph10}{x}}>"
    assert is_tainted(step.failed_id)
    values = [seen[-1][name] for name in ("auth1", "auth2", "auth3", "1", "2", "3")]
    assert values[:3] == ["", user.decode(), "pw"] and values[3:] == values[:3]
    assert all(is_tainted(v) for v in values)


def test_a_tainted_value_may_key_a_lookup_but_never_name_its_file(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(f"ph10: {PASSWORD}\n")
    by_key = "${lookup{$auth2}lsearch{" + str(passwd) + "}{${if eq{$value}{$auth3}}}{no}}"
    assert reply(ServerExchange(plaintext(server_condition=by_key), expand_with).start(
        b64(b"\0ph10\0" + PASSWORD.encode()))) == "235 2.7.0"
    # A client's user name can at most be one checked path component (issue 11's rule): "../passwd"
    # cannot climb out of the directory the configuration names.
    (tmp_path / "sub").mkdir()
    by_name = "${lookup{ph10}lsearch{" + str(tmp_path) + "/sub/$auth2}{${if eq{$value}{$auth3}}}{no}}"
    step = ServerExchange(plaintext(server_condition=by_name), expand_with).start(
        b64(b"\0../passwd\0" + PASSWORD.encode())
    )
    assert reply(step) == "435 4.7.0"
    assert "ainted" in step.log_reason  # type: ignore[union-attr]


def test_server_set_id() -> None:
    step = ServerExchange(plaintext(server_set_id="${uc:$auth2}"), expand_with).start(
        b64(b"\0ph10\0" + PASSWORD.encode())
    )
    assert isinstance(step, Success)
    assert step.authenticated_id == "PH10" and step.log_field == "plain:PH10"
    assert step.variables == {"authenticated_id": "PH10", "sender_host_authenticated": "plain"}
    # Unset (or empty): authenticated, without an id.
    for options in ({"server_set_id": ""}, {}):
        auth = PlaintextAuthenticator(
            "plain", PlaintextOptions(driver="plaintext", public_name="PLAIN", server_condition="yes", **options),
            ("t", 1),
        )
        step = ServerExchange(auth, expand_with).start(b64(b"\0u\0p"))
        assert isinstance(step, Success) and step.authenticated_id is None and step.log_field == "plain"
    # An id that cannot be expanded after success is a temporary failure (Exim).
    step = ServerExchange(plaintext(server_set_id="${readfile{/nonexistent/id}}"), expand_with).start(
        b64(b"\0ph10\0" + PASSWORD.encode())
    )
    assert reply(step) == "435 4.7.0" and "server_set_id" in step.log_reason  # type: ignore[union-attr]


def test_an_id_never_carries_a_line_break() -> None:
    auth = plaintext(server_condition="yes", server_set_id="$auth2")
    step = ServerExchange(auth, expand_with).start(b64(b"\0ph10\r\nX-Forged: yes\0pw"))
    assert isinstance(step, Success) and step.authenticated_id is not None
    assert "\r" not in step.authenticated_id and "\n" not in step.authenticated_id
    assert is_tainted(step.authenticated_id)


def test_items_are_bounded() -> None:
    many = ": ".join(f"q{n}" for n in range(40))
    auth = plaintext("X-MANY", server_prompts=many, server_condition="${if eq{$auth3}{a2}}")
    exchange = ServerExchange(auth, expand_with)
    step = exchange.start(b64(b"\0".join(b"a%d" % n for n in range(5))))
    asked = 0
    while isinstance(step, Challenge):
        asked += 1
        step = exchange.respond(b64(b"x"))
    assert asked == 15 and reply(step) == "235 2.7.0"
    # 100 NUL-separated items in one line are no more than 20 items.
    data = ServerData(expand_with)
    data.add(b"\0".join([b"x"] * 100))
    assert len(data.items) == 20


def test_lines_nobody_asked_for_are_refused_not_raised() -> None:
    exchange = ServerExchange(plaintext(), expand_with)
    exchange.start(b64(b"\0ph10\0" + PASSWORD.encode()))
    assert reply(exchange.respond(b64(b"more"))) == "503 5.5.1"
    with pytest.raises(ValueError):
        exchange.start(None)


def test_server_debug_print() -> None:
    printed: list[str] = []
    auth = plaintext(server_debug_print="user=$auth2 from $sender_host_address")
    ServerExchange(auth, expand_with, debug=printed.append).start(b64(b"\0ph10\0pw"))
    assert printed == ["user=ph10 from 192.0.2.9"]
    ServerExchange(auth, expand_with).start(b64(b"\0ph10\0pw"))  # not debugging: not expanded
    assert len(printed) == 1


def test_server_and_client_sides() -> None:
    assert plaintext().is_server and not plaintext().is_client
    client_only = PlaintextAuthenticator("p", PlaintextOptions(driver="plaintext", client_send="^u^p"), ("t", 1))
    assert not client_only.is_server
    assert cram().is_server and not CramMd5Authenticator("c", CramMd5Options(driver="cram_md5"), ("t", 1)).is_server


def test_server_mechanisms() -> None:
    logged: list[str] = []
    client_only = PlaintextAuthenticator(
        "out", PlaintextOptions(driver="plaintext", public_name="XOUT", client_send="^u^p"), ("t", 1)
    )
    authenticators = [
        plaintext("PLAIN"),
        client_only,
        plaintext("LOGIN", server_advertise_condition="${if eq{$sender_host_address}{192.0.2.9}{yes}{no}}"),
        cram(server_advertise_condition="${if eq{a}{b}{yes}fail}"),  # forced: hidden, not logged
        plaintext("X-BROKEN", server_advertise_condition="${readfile{/nonexistent/x}}"),
        plaintext("PLAIN", server_condition="no"),  # a second PLAIN: advertised once, the first one is used
    ]
    names = server_mechanisms(authenticators, lambda text: expand_with(text, {}), log=logged.append)
    assert names == ["PLAIN", "LOGIN"]
    assert len(logged) == 1 and logged[0].startswith("x-broken authenticator: server_advertise_condition: ")
    assert find_server_authenticator(authenticators, "login", names) is authenticators[2]
    assert find_server_authenticator(authenticators, "PLAIN", names) is authenticators[0]
    assert find_server_authenticator(authenticators, "CRAM-MD5", names) is None  # not advertised here
    assert find_server_authenticator(authenticators, "XOUT", ["XOUT"]) is None  # client side only
