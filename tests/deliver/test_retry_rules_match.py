"""Which retry rule applies: patterns (address, domain, ``*``, ``^regex``, ``*@domain``, named lists,
negation), error names, ``senders=``, a host's name before the mail domain, and the default rule.

A real configuration and runtime; the message is only its sender, id and arrival time.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from mta.config.loader import load_config
from mta.deliver.retrying import DeliveryRetry
from mta.runtime import build_runtime
from tests.support.mta import MtaEnv

RULES = r"""
addresslist vips = boss@example.org : *@vip.example
begin retry
alice@example.org          *            F,1h,1m
+vips                      *            F,1h,2m
slow.example               quota        F,1h,3m
*@lists.example            rcpt_4xx     senders=:  F,1h,4m
"^\N[^@]+@host\d+\.example$\N"  *       F,1h,5m
mx1.relay.example          refused      F,1h,6m
!*.nowhere.example         timeout      F,1h,7m
*                          *            F,1h,8m
"""


def retry_for(env: MtaEnv, rules: str, sender: str = "sender@example.com") -> DeliveryRetry:
    env.write_config(rules)
    runtime = build_runtime(load_config(str(env.config)))
    message = SimpleNamespace(sender_address=sender, message_id="1xZ2cX-000000001go-2Wop", received_time=time.time())
    return DeliveryRetry(runtime, message, now=time.time(), ignore_retry=False, queue_run=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subject", "domain", "error", "sender", "minutes"),
    [
        ("alice@example.org", None, "rcpt_451", "x@y", 1),
        ("boss@example.org", None, None, "x@y", 2),
        ("*@vip.example", None, None, "x@y", 2),  # a routing retry: the domain only
        ("bob@slow.example", None, "quota", "x@y", 3),
        ("bob@slow.example", None, "refused_A", "x@y", 8),  # the error does not match: next rule
        ("dev@lists.example", None, "rcpt_452", "", 4),  # senders=: only the null sender
        ("dev@lists.example", None, "rcpt_452", "x@y", 8),
        ("postmaster@host42.example", None, None, "x@y", 5),
        ("mx1.relay.example", "relay.example", "refused_MX", "x@y", 6),  # a host: its name first
        ("mx2.relay.example", "relay.example", "refused_MX", "x@y", 8),
        ("mx.other.example", "other.example", "timeout_connect_A", "x@y", 7),
        ("mx.a.nowhere.example", "a.nowhere.example", "timeout_A", "x@y", 8),  # negated pattern
    ],
)
def test_first_matching_rule(mta_env: MtaEnv, subject: str, domain: str | None, error: str | None, sender: str,
                             minutes: int) -> None:
    rule = retry_for(mta_env, RULES, sender).find_rule(subject, domain, error)
    assert rule is not None and rule.params[0].interval == minutes * 60, f"got {rule} want F,1h,{minutes}m"


def test_the_mail_domain_is_the_second_chance_of_a_host(mta_env: MtaEnv) -> None:
    retry = retry_for(mta_env, "begin retry\nrelay.example  *  F,1h,9m\n")
    rule = retry.find_rule("mx9.hosting.example", "relay.example", "refused_A")
    assert rule is not None and rule.params[0].interval == 9 * 60
    assert retry.find_rule("mx9.hosting.example", "other.example", "refused_A") is None


def test_no_rules_at_all_means_the_default_rule(mta_env: MtaEnv) -> None:
    rule = retry_for(mta_env, "").find_rule("bob@example.net", None, "rcpt_451")
    assert rule is not None and str(rule) == "* * F,2h,15m; G,16h,1h,1.5; F,4d,6h"


def test_a_rule_that_cannot_be_matched_is_skipped_with_a_panic_line(mta_env: MtaEnv) -> None:
    retry = retry_for(mta_env, "begin retry\n^(unclosed  *  F,1h,1m\n*  *  F,1h,2m\n")
    rule = retry.find_rule("bob@example.net", None, None)
    assert rule is not None and rule.params[0].interval == 120
    assert "cannot be matched" in (mta_env.spool / "log" / "paniclog").read_text()
