"""log_selector items that add fields to the log lines, checked on real runs of mta."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mta.log import Logger, parse_selector
from mta.receive.reception import Arrival, arrival_log_text
from tests.support.mta import SMARTHOST_CONFIG, MtaEnv
from tests.support.sink import SmtpSink


def test_delivery_fields(mta_env: MtaEnv, sink: SmtpSink) -> None:
    mta_env.write_config(
        "log_selector = +sender_on_delivery +return_path_on_delivery +delivery_size +queue_time +deliver_time "
        "+queue_time_overall -smtp_confirmation\n" + SMARTHOST_CONFIG.format(port=sink.port)
    )
    result = mta_env.run("-odf", "-f", "alice@example.com", "bob@example.org", input="Subject: x\n\nhi\n")
    assert result.returncode == 0, result.stderr
    lines = mta_env.log_lines()
    delivery = next(line for line in lines if " => " in line)
    # Exim's order: F= P= before R=, S= after T=, QT= DT= at the end; no C= (switched off).
    assert re.search(
        r" => bob@example.org F=<alice@example.com> P=<alice@example.com> R=smarthost T=remote_smtp S=\d+ "
        r"H=127.0.0.1 \[127.0.0.1\] QT=\d+s DT=\d+s$",
        delivery,
    ), delivery
    assert re.search(r" Completed QT=\d+s$", lines[-1]), lines[-1]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", "H=(c.example) [192.0.2.9] P=esmtp S=10"),
        ("+incoming_port", "H=(c.example) [192.0.2.9]:4567 P=esmtp S=10"),
        ("+incoming_port +incoming_interface", "H=(c.example) [192.0.2.9]:4567 I=[192.0.2.1]:25 P=esmtp S=10"),
    ],
)
def test_incoming_port_and_interface(tmp_path: Path, selector: str, expected: str) -> None:
    arrival = Arrival(
        "a@example.org", ["b@example.com"], "esmtp", "mta", 8, 8, host_address="192.0.2.9", host_port=4567,
        helo_name="c.example", interface_address="192.0.2.1", interface_port=25, local=False,
    )
    logger = Logger(str(tmp_path), selectors=parse_selector(selector))
    assert arrival_log_text(logger, arrival, 10, []) == f"a@example.org {expected}"


def test_arguments(mta_env: MtaEnv) -> None:
    mta_env.write_config("log_selector = +arguments\n")
    result = mta_env.run("-odq", "-f", "a@example.com", "b@example.com", input="Subject: x\n\nhi\n")
    assert result.returncode == 0, result.stderr
    first = mta_env.log_lines()[0]
    assert re.search(r" cwd=\S+ 7 args: mta -C \S+ -odq -f a@example.com b@example.com$", first), first
