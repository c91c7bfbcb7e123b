"""The smtp transport's option table: parsing, start-up checks, the generated docs, start-up cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mta.config.options import OptionSetting, build_options, format_all, reference_markdown
from mta.drivers import load_driver_class
from mta.errors import ConfigError
from mta.transports import TRANSPORTS
from mta.transports.smtp import SmtpOptions, SmtpTransport
from mta.transports.smtp_plan import SmtpJob
from tests.support.fakesmtp import outgoing, recipients, smtp_env, smtp_transport

REPO = Path(__file__).resolve().parents[2]


def parse(*lines: str) -> SmtpOptions:
    settings = []
    for n, line in enumerate(lines, 1):
        name, eq, value = line.partition("=")
        settings.append(OptionSetting(name.strip(), value.strip() if eq else None, "test.conf", n))
    options, _hidden = build_options(SmtpOptions, settings, 'transport "remote_smtp"')
    return options


def test_defaults_are_exims() -> None:
    o = SmtpOptions(driver="smtp")
    assert (o.connect_timeout, o.command_timeout, o.data_timeout, o.final_timeout) == (300, 300, 300, 600)
    assert (o.max_rcpt, o.connection_max_messages, o.size_addition, o.hosts_max_try) == (100, 500, 1024, 5)
    assert o.tls_try_verify_hosts == "*" and o.tls_tempfail_tryclear and o.multi_domain
    assert not o.allow_localhost and o.helo_data == "$primary_hostname" and o.protocol == "smtp"


def test_option_lines() -> None:
    o = parse("driver = smtp", "protocol = smtps", "connect_timeout = 30s", "no_tls_tempfail_tryclear",
              "max_rcpt = 2", "hosts = a.example : b.example::2525", "allow_localhost")
    assert (o.protocol, o.connect_timeout, o.tls_tempfail_tryclear, o.max_rcpt) == ("smtps", 30, False, 2)
    assert o.hosts == "a.example : b.example::2525" and o.allow_localhost
    lines = format_all(o)
    assert "protocol = smtps" in lines and "no_tls_tempfail_tryclear" in lines and "max_rcpt = 2" in lines


@pytest.mark.parametrize(
    "line", ["protocol = lmtp", "hosts_max_try = 0", "max_rcpt = -1", "connect_timeout = soon", "no_such = 1"]
)
def test_bad_option_lines(line: str) -> None:
    with pytest.raises(ConfigError):
        parse("driver = smtp", line)


def test_registry_and_port_check() -> None:
    assert load_driver_class(TRANSPORTS, "smtp") is SmtpTransport
    smtp_transport(port="submission").check(None)
    smtp_transport(port="${if true{25}}").check(None)  # expanded at delivery time
    with pytest.raises(ConfigError, match="not a port number or a known service name"):
        smtp_transport(port="no-such-service").check(None)


@pytest.mark.parametrize(
    ("options", "want"),
    [({}, 25), ({"protocol": "smtps"}, 465), ({"port": "submission"}, 587), ({"port": "2525"}, 2525)],
)
def test_port(options: dict[str, str], want: int) -> None:
    items = recipients("bob@example.org", hosts=[])
    job = SmtpJob(smtp_transport(hosts="192.0.2.1", **options), outgoing(), items, smtp_env())
    assert job.port == want
    assert [(h.name, h.address, h.port) for h in job.hosts] == [("192.0.2.1", "192.0.2.1", None)]


def test_hosts_option_forms() -> None:
    items = recipients("bob@example.org", hosts=[])
    text = "<; mx.example ; 192.0.2.7:2525 ; [2001:db8::1]:587 ; 2001:db8::2 ; relay.example:submission"
    job = SmtpJob(smtp_transport(hosts=text), outgoing(), items, smtp_env())
    assert [(h.name, h.address, h.port) for h in job.hosts] == [
        ("mx.example", None, None),
        ("192.0.2.7", "192.0.2.7", 2525),
        ("2001:db8::1", "2001:db8::1", 587),
        ("2001:db8::2", "2001:db8::2", None),
        ("relay.example", None, 587),
    ]


def test_no_hosts_defers() -> None:
    items = recipients("bob@example.org", hosts=[])
    job = SmtpJob(smtp_transport(), outgoing(), items, smtp_env())
    error = job.outcomes[items[0]]
    assert type(error).__name__ == "DeferError" and "no hosts" in str(error)


def test_docs_tables_are_generated_from_the_options() -> None:
    text = (REPO / "docs" / "smtp.md").read_text()
    tables = [
        reference_markdown("Options of the smtp transport", SmtpOptions, private_only=True),
    ]
    for table in tables:
        assert table in text, f"docs/smtp.md is out of date; regenerate:\n{table}"


def test_blocking_client_imports_nothing_heavy() -> None:
    code = (
        "import sys, mta.transports.smtp_sync\n"
        "print(sorted(m for m in ('asyncio', 'aiosmtplib', 'dns', 'ssl', 'aiosmtpd') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_transport_module_import_is_cheap() -> None:
    code = (
        "import sys, mta.transports.smtp\n"
        "print(sorted(m for m in ('asyncio', 'aiosmtplib', 'ssl') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
