"""Retry rules: ``begin retry`` parsed from a real configuration file, and the error names
they match.  Tables of cases, "got ... want".  (Schedules from fixed times:
test_retry_rules.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.errors import ConfigError
from mta.hints.retry import RetryParams, RetryRule, error_matches, parse_params, parse_retry_rules
from tests.support.mta import MtaEnv

H, M, D = 3600, 60, 86400


def rules_from(tmp_path: Path, text: str) -> list[RetryRule]:
    path = tmp_path / "mta.conf"
    path.write_text(f"spool_directory = {tmp_path}/spool\n\nbegin retry\n{text}")
    return parse_retry_rules(load_config(str(path)).retry_rules)


def test_rules_from_a_configuration_file(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        "# Exim's default rule, then two more\n"
        "*                      *           F,2h,15m; G,16h,1h,1.5; F,4d,6h\n"
        '"*.example.org"        rcpt_4xx    senders=*@lists.example  F,1h,10m\n'
        "slow.example           timeout_connect_MX  H,1d,5m,2 ;\n",
    )
    assert [(r.pattern, r.error, r.senders, r.line) for r in rules] == [
        ("*", "*", None, 5),
        ("*.example.org", "rcpt_4xx", "*@lists.example", 6),
        ("slow.example", "timeout_connect_MX", None, 7),
    ]
    assert rules[0].params == (
        RetryParams("F", 2 * H, 15 * M),
        RetryParams("G", 16 * H, 1 * H, 1.5),
        RetryParams("F", 4 * D, 6 * H),
    )
    assert rules[0].final_cutoff == 4 * D
    assert rules[2].params == (RetryParams("H", D, 5 * M, 2.0),)
    assert rules[0].path == str(tmp_path / "mta.conf")


def test_a_rule_without_parameters_has_no_cutoff(tmp_path: Path) -> None:
    [rule] = rules_from(tmp_path, "*.example lookup\n")
    assert (rule.params, rule.final_cutoff) == ((), 0)


BAD_RULES = [
    ("pattern only", "*\n", "retry rule needs at least a pattern and an error type"),
    ("unknown error", "* rcpt_5xx F,2h,15m\n", 'unknown error type "rcpt_5xx" in retry rule'),
    ("F with a multiplier", "* * F,2h,15m,2\n", 'retry rule: "F,2h,15m,2": F needs a cutoff and an interval'),
    ("G without multiplier", "* * G,2h,15m\n", "G needs a cutoff, an interval and a multiplier"),
    ("multiplier not a number", "* * G,2h,15m,x\n", 'retry rule: "x" is not a number'),
    ("multiplier too small", "* * H,2h,15m,1\n", "the multiplier must be greater than 1"),
    ("unknown algorithm", "* * Q,2h,15m\n", 'unknown retry algorithm "Q" (use F, G or H)'),
    ("zero interval", "* * F,2h,0s\n", "the interval must be more than zero"),
    ("bad time", "* * F,2 hours,15m\n", "is not a time"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BAD_RULES], ids=[c[0] for c in BAD_RULES])
def test_bad_rules_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        rules_from(tmp_path, "* * F,1h,5m\n" + text)
    got = str(caught.value)
    assert message in got, f"got {got!r} want {message!r}"
    assert f"{tmp_path / 'mta.conf'}:5" in got, got


def test_a_bad_rule_stops_the_command_line(mta_env: MtaEnv) -> None:
    mta_env.write_config("\nbegin retry\n* * F,2h\n")
    result = mta_env.run("-bV")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f'mta: configuration error: {mta_env.config}:7: retry rule: "F,2h": F needs a cutoff and an interval '
        "(F,2h,15m)"
    )


def test_params_skip_empty_parts() -> None:
    assert parse_params(" ; f,1h,10m ;; ") == (RetryParams("F", H, 10 * M),)


MATCHES = [
    # (rule's error, failure's error, want)
    ("*", "refused_MX", True),
    ("refused", "refused", True),
    ("refused", "refused_MX", True),
    ("refused_MX", "refused_A", False),
    ("timeout_connect", "timeout_connect_A", True),
    ("timeout", "timeout_MX", True),
    ("timeout", "lookup", False),
    ("rcpt_4xx", "rcpt_451", True),
    ("rcpt_45x", "rcpt_452", True),
    ("rcpt_45x", "rcpt_421", False),
    ("rcpt_451", "rcpt_4510", False),
    ("rcpt_4xx", "mail_451", False),
    ("mail_4xx", "mail_421", True),
    ("data_4xx", "data_452", True),
    ("quota", "quota_7d", True),
    ("quota_7d", "quota", False),
    ("lost_connection", "lost_connection", True),
    ("auth_failed", "tls_required", False),
]


@pytest.mark.parametrize(("rule_error", "error", "want"), MATCHES, ids=[f"{r}~{e}" for r, e, _ in MATCHES])
def test_error_matches(rule_error: str, error: str, want: bool) -> None:
    got = error_matches(rule_error, error)
    assert got is want, f"got {got} want {want}"
