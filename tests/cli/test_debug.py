"""-d[+selector...] and -v: debug output on stderr, as Exim's (mta.debug).

Each test runs the real CLI and reads what it wrote: the routing steps of
-bt -d+route, the expansions of -be -d+expand, the SMTP dialogue of a
delivery with -v or -d+transport, the ACL and SMTP lines of -bh -d+acl.
"""

from __future__ import annotations

import re

import pytest
from aiosmtpd.smtp import AuthResult

from mta import debug
from tests.support.mta import SMARTHOST_CONFIG, MtaEnv
from tests.support.sink import SmtpSink

ALIASES = """
begin directors
system_aliases:
  driver = aliasfile
  file = {root}/aliases
  search_type = lsearch
localuser:
  driver = localuser
  transport = local_delivery
begin transports
local_delivery:
  driver = appendfile
  file = {root}/mail/$local_part
"""


def aliases_env(env: MtaEnv) -> MtaEnv:
    (env.root / "aliases").write_text("postmaster: root\nsales: nosuchuser\n")
    env.write_config(ALIASES.format(root=env.root))
    return env


# -- selectors -------------------------------------------------------------


def test_selector_lists_start_from_exim_default_set() -> None:
    assert "route" in debug.parse("") and "expand" not in debug.parse("")  # Exim's D_default
    assert {"route", "transport", "expand"} <= debug.parse("+route+transport+expand")
    assert debug.parse("-all+acl") == {"acl", "any"}  # no "v": -d-all+acl is not -v
    assert "pid" in debug.parse("+all") and "v" in debug.parse("+all")
    assert debug.parse("-all") == frozenset()
    assert "noutf8" in debug.parse("+noutf8")  # accepted (and ignored)


@pytest.mark.parametrize("word", ["+nosuch", "route", "+route+", "+rout"])
def test_bad_selector_is_refused(word: str) -> None:
    with pytest.raises(debug.SelectorError):
        debug.parse(word)


def test_unknown_selector_is_a_usage_error(mta_env: MtaEnv) -> None:
    result = mta_env.run("-d+nosuch", "-bt", "x@example.com")
    assert result.returncode == 1
    assert 'unknown debug selector "nosuch"' in result.stderr
    assert result.stdout == ""


# -- routing, configuration, expansions -------------------------------------


def test_bt_with_route_debugging_shows_each_director_and_verdict(mta_env: MtaEnv) -> None:
    env = aliases_env(mta_env)
    result = env.run("-bt", "-d-all+route", "postmaster@example.com")
    assert result.returncode == 0, result.stderr
    assert "root@example.com" in result.stdout  # the -bt answer itself is unchanged, on stdout
    err = result.stderr.splitlines()
    assert f"configuration file is {env.config}" in err
    expected = [
        "routing postmaster@example.com",
        "--------> system_aliases director <--------",
        "calling system_aliases director",
        "system_aliases director generated root@example.com",
        "routing root@example.com",
        "--------> system_aliases director <--------",
        "system_aliases director declined for root@example.com",
        "--------> localuser director <--------",
        "routed by localuser director",
        "  transport: local_delivery",
    ]
    at = 0
    for want in expected:  # in this order
        assert want in err[at:], (want, result.stderr)
        at = err.index(want, at) + 1


def test_included_files_are_named(mta_env: MtaEnv) -> None:
    extra = mta_env.root / "extra.conf"
    extra.write_text("message_size_limit = 10M\n")
    mta_env.write_config(f".include {extra}\n")
    result = mta_env.run("-d", "-bP", "message_size_limit")
    assert result.returncode == 0, result.stderr
    assert f"reading included file {extra}" in result.stderr
    assert re.search(r"^mta version \S+ uid=\d+ gid=\d+ pid=\d+ D=\+", result.stderr, re.M)


def test_be_with_expand_debugging_shows_strings_in_and_out(mta_env: MtaEnv) -> None:
    env = aliases_env(mta_env)
    lookup = f"${{lookup{{postmaster}}lsearch{{{env.root}/aliases}}}}"
    result = env.run("-d-all+expand+lookup", "-be", "${lc:AbC}", lookup, "${if eq{a}}")
    err = result.stderr.splitlines()
    assert err[err.index("expanding: ${lc:AbC}") + 1] == "   result: abc"
    assert f'search_find: file="{env.root}/aliases"' in err
    assert '  type=lsearch key="postmaster"' in err
    assert "lookup yielded: root" in err
    assert "failed to expand: ${if eq{a}}" in err
    assert any(line.startswith("   error message: missing 2nd string") for line in err)


def test_expansion_debugging_escapes_control_characters(mta_env: MtaEnv) -> None:
    result = mta_env.run("-d-all+expand", "-be", "${lc:A\x1b[31mB}")
    assert "\x1b" not in result.stderr
    assert "expanding: ${lc:A\\033[31mB}" in result.stderr
    assert "   result: a\\033[31mb" in result.stderr


def test_hidden_option_values_never_appear(mta_env: MtaEnv) -> None:
    mta_env.write_config(
        "hide acl_smtp_helo = ${if eq{$sender_helo_name}{s3cr3t-word}{accept}{deny}}\n"
        "begin acl\n"
    )
    result = mta_env.run("-d+all", "-bh", "192.0.2.1", input="EHLO s3cr3t-word\r\nQUIT\r\n")
    assert result.returncode == 0, result.stderr
    assert "expanding: <hidden>" in result.stderr
    hidden = result.stderr.replace("SMTP<< EHLO s3cr3t-word", "").replace("Hello s3cr3t-word", "")
    assert "s3cr3t-word" not in hidden, result.stderr


def test_pid_and_timestamp_prefix_lines(mta_env: MtaEnv) -> None:
    result = mta_env.run("-d-all+expand+pid+timestamp", "-be", "${lc:X}")
    line = next(line for line in result.stderr.splitlines() if "expanding:" in line)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} +\d+ expanding: \$\{lc:X\}", line), line


# -- SMTP dialogues ---------------------------------------------------------


def _credentials_ok(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    return AuthResult(success=True)


@pytest.fixture
def auth_sink():  # type: ignore[no-untyped-def]
    server = SmtpSink(authenticator=_credentials_ok, auth_require_tls=False).start()
    try:
        yield server
    finally:
        server.stop()


def test_v_shows_the_smtp_dialogue_of_a_delivery_and_nothing_more(mta_env: MtaEnv, sink: SmtpSink) -> None:
    mta_env.write_config(SMARTHOST_CONFIG.format(port=sink.port))
    result = mta_env.run("-v", "-odf", "-f", "alice@example.com", "bob@example.org", input="Subject: x\n\nhi\n")
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert f"Connecting to 127.0.0.1 [127.0.0.1]:{sink.port} ..." in err
    assert any(line.startswith("  SMTP<< 220 ") for line in err)
    assert "  SMTP>> EHLO mail.example.com" in err
    mail = next(line for line in err if line.startswith("  SMTP>> MAIL FROM:"))
    assert mail.startswith("  SMTP>> MAIL FROM:<alice@example.com>")
    assert "  SMTP>> RCPT TO:<bob@example.org>" in err
    assert "  SMTP>> DATA" in err
    assert any(re.search(r" => bob@example.org R=smarthost T=remote_smtp", line) for line in err)  # log lines
    # -v is not -d: no routing or configuration lines.
    assert not any(line.startswith(("routing ", "configuration file", "mta version")) for line in err)
    assert sink.messages


def test_transport_debugging_masks_authentication_data(mta_env: MtaEnv, auth_sink: SmtpSink) -> None:
    mta_env.write_config(
        SMARTHOST_CONFIG.format(port=auth_sink.port)
        + "  hosts_require_auth = *\n"
        "begin authenticators\n"
        "plain:\n"
        "  driver = plaintext\n"
        "  public_name = PLAIN\n"
        "  client_send = ^bob^Pa55-w0rd-xyz\n"
    )
    result = mta_env.run("-d-all+transport+expand", "-odf", "bob@example.org", input="Subject: x\n\nhi\n")
    assert result.returncode == 0, result.stderr
    assert "  SMTP>> AUTH PLAIN ****" in result.stderr
    assert "Pa55-w0rd-xyz" not in result.stderr
    assert "YgBQYTU1" not in result.stderr  # nor its base64 (AGJvYgBQYTU1LXcwcmQteHl6)
    assert "  SMTP<< 235 " in result.stderr, result.stderr


def test_bh_with_acl_debugging_shows_decisions_and_dialogue(mta_env: MtaEnv) -> None:
    mta_env.write_config("acl_smtp_rcpt = check_rcpt\nbegin acl\ncheck_rcpt:\n  deny message = no relay\n")
    session = "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nQUIT\r\n"
    result = mta_env.run("-bh", "192.0.2.1", "-d-all+acl+receive", input=session)
    err = result.stderr.splitlines()
    assert "SMTP<< RCPT TO:<b@example.net>" in err
    assert 'using ACL "check_rcpt"' in err
    assert any(line.startswith("SMTP>> 550 no relay") for line in err)
    assert "550 no relay" in result.stdout


def test_docs_list_every_selector_as_used_or_ignored() -> None:
    from pathlib import Path

    from mta.log import KNOWN_SELECTORS

    docs = Path(__file__).resolve().parents[2] / "docs"
    troubleshooting = (docs / "troubleshooting.md").read_text()
    shown = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", troubleshooting, re.M))
    documented = {name for pair in shown for name in pair if name}
    assert documented & debug.NAMES == debug.USED
    ignored = troubleshooting.split("accepted and ignored because", 1)[1].split("The values", 1)[0]
    assert set(re.findall(r"`([a-z_0-9]+)`", ignored)) == debug.NAMES - debug.USED
    logging = (docs / "logging.md").read_text()
    assert all(f"`{name}`" in logging for name in KNOWN_SELECTORS)
