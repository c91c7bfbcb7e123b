"""mta-fixdb and mta-next over hints written by the real mta (tests/support/hints_world.py),
mta-next compared with exinext on the research samples, and every hints tool's answer to bad
arguments: one line, a non-zero status, never a traceback."""

from __future__ import annotations

import calendar
import time
from pathlib import Path

import pytest

from mta.hints import ratelimit
from mta.hints.db import HintsDb
from mta.hints.retry_db import RetryDb, RetryRecord
from tests.support.hints_world import HintsWorld, built, run_tool, sample_epoch, utc, without_exit_line, world
from tests.support.mta import MtaEnv
from tests.support.retry_time import retry_records
from tests.support.samples import sample_text

__all__ = ["built", "world"]  # fixtures


# -- mta-fixdb --------------------------------------------------------------------------------


def test_fixdb_shows_a_record_with_numbered_fields(world: HintsWorld) -> None:
    (rec,) = retry_records(world.spool).values()
    result = run_tool("fixdb", str(world.spool), "retry", input=f"{world.host_key}\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Modifying mta hints database {world.spool / 'db' / 'retry'}\n"
        f"> {utc(rec.time_stamp)}\n"
        f"0 error number: 111 Connection refused\n"
        f"1 extra data:   {rec.more_errno}\n"
        f"2 first failed: {utc(rec.first_failed)}\n"
        f"3 last try:     {utc(rec.last_try)}\n"
        f"4 next try:     {utc(rec.next_try)}\n"
        f"5 expired:      no\n"
        "> \n"
    )


def test_fixdb_edits_fields_by_number_and_deletes(world: HintsWorld) -> None:
    requests = f"{world.host_key} 4 2701021530\n5 yes\n0 110\n{world.host_key} d\nq\n"
    result = run_tool("fixdb", str(world.spool), "retry", input=requests)
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert "4 next try:     02-Jan-2027 15:30:00" in out
    assert "5 expired:      yes" in out
    assert "0 error number: 110 Connection refused" in out
    assert out.endswith("> deleted\n> ")  # q ends it without the newline of an end of input
    assert retry_records(world.spool) == {}


def test_fixdb_edits_are_what_delivery_reads(world: HintsWorld) -> None:
    before = int(time.time())
    result = run_tool("fixdb", "--spool", str(world.spool), "retry", input=f"{world.host_key} 2 01:02:03:04:05\n")
    assert result.returncode == 0, result.stdout
    rec = retry_records(world.spool)[world.host_key]
    assert rec.first_failed == calendar.timegm((2001, 2, 3, 4, 5, 0))
    assert rec.time_stamp >= before  # stamped when changed, as exim_fixdb does


def test_fixdb_says_what_is_wrong_with_each_request_and_exits_1(world: HintsWorld) -> None:
    requests = (f"d\nT:nowhere.example:192.0.2.9\n{world.host_key} 4 99999\n5 maybe\n0 x\n9 1\n3\n"
                f"{world.host_key} x\nT:nowhere.example:192.0.2.9 d\n")
    result = run_tool("fixdb", str(world.spool), "retry", input=requests)
    assert result.returncode == 1
    replies = [line for line in result.stdout.splitlines() if not line[:1].isdigit()]  # not the records
    assert replies == [
        f"Modifying mta hints database {world.spool / 'db' / 'retry'}",
        "> No previous record name is set",
        "> record T:nowhere.example:192.0.2.9 not found",
        "> bad time value",
        '> "yes" or "no" expected',
        "> bad number",
        "> unknown field number",
        "> value missing",
        "> field number or d expected",
        "> not found",
        "> ",
    ]
    assert "Traceback" not in result.stderr
    assert retry_records(world.spool)[world.host_key].errno == 111  # nothing changed


def test_fixdb_wait_records_are_shown_not_changed(world: HintsWorld) -> None:
    host = f"127.0.0.1:{world.port}"
    result = run_tool("fixdb", str(world.spool), "wait-remote_smtp", input=f"{host}\n{host} 0 x\n")
    lines = result.stdout.splitlines()
    assert sorted(lines[1].removeprefix("> ").split()) == sorted(world.message_ids)
    assert lines[2] == "> Can't change contents of wait database record"


def test_fixdb_ratelimit_fields_and_filter(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    db = HintsDb(str(spool / "db"), "ratelimit")
    db.put(b"1h/per_rcpt/unique/192.0.2.7", ratelimit.encode(
        ratelimit.RatelimitRecord(1_800_000_000.5, 3.0, 1_799_990_000, bytes(14))))
    requests = "1h/per_rcpt/unique/192.0.2.7 2 7.25\n5 bob@example.net\n4 bob@example.net\n4 carol@example.net\n"
    result = run_tool("fixdb", str(spool), "ratelimit", input=requests)
    assert result.returncode == 0, result.stdout
    assert "2 sender rate:  7.250" in result.stdout
    assert "1 fract. time: .500000" in result.stdout
    filter_replies = [line.removeprefix("> ") for line in result.stdout.splitlines()
                      if line.removeprefix("> ").startswith(("added", "seen", "unseen"))]
    assert filter_replies == ["added bob@example.net", "seen bob@example.net", "unseen carol@example.net"]
    rec = ratelimit.decode(db.get(b"1h/per_rcpt/unique/192.0.2.7") or b"")
    assert rec.rate == 7.25 and ratelimit.bloom_add(rec.bloom, "bob@example.net")[1]


# -- mta-next ---------------------------------------------------------------------------------


def next_lines(world: HintsWorld, *args: str) -> list[str]:
    result = run_tool("next", "-C", str(world.env.config), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_next_finds_the_host_an_address_or_domain_routes_to(world: HintsWorld) -> None:
    (rec,) = retry_records(world.spool).values()
    expected = [
        f"Transport: 127.0.0.1 [127.0.0.1]:{world.port} error 111: Connection refused",
        f"  first failed: {utc(rec.first_failed)}",
        f"  last tried:   {utc(rec.last_try)}",
        f"  next try at:  {utc(rec.next_try)}",
    ]
    assert next_lines(world, "bob@example.net") == expected
    assert next_lines(world, "EXAMPLE.NET") == expected
    assert next_lines(world, "example.com") == ["No remote hosts found for example.com",
                                                "No retry data found for example.com"]


def test_next_shows_routing_and_message_records_and_the_cutoff(world: HintsWorld) -> None:
    db = RetryDb.for_spool(str(world.spool))
    now = int(time.time())
    db.put("R:example.org", RetryRecord(now - 5 * 86400, now, now + 3600, True, -1, 0, "timeout", "DNS timeout"))
    for message_id in (world.message_ids[0], "1xV6uq-0005Vj-1t"):
        db.put(f"T:mx.example.org:192.0.2.5:{message_id}", RetryRecord(now, now, now + 900, False, -44, 451,
                                                                       "mail_4xx", "451 busy", now))
    lines = next_lines(world, "example.org")
    assert lines[:5] == [
        "Route: example.org error -1: DNS timeout",
        f"  first failed: {utc(now - 5 * 86400)}",
        f"  last tried:   {utc(now)}",
        f"  next try at:  {utc(now + 3600)}",
        "  past final cutoff time",
    ]
    # The domain routes to the refusing host too, whose record follows in key order.
    assert lines[5].startswith(f"Transport: 127.0.0.1 [127.0.0.1]:{world.port} error 111")
    for message_id in (world.message_ids[0], "1xV6uq-0005Vj-1t"):
        assert next_lines(world, message_id)[0] == (
            f"Transport: mx.example.org [192.0.2.5] {message_id} error -44: 451 busy")


@pytest.mark.parametrize("key", ["T:[127.0.0.3]:127.0.0.3:2526", "T:127.0.0.3:127.0.0.3:2526"])
def test_next_matches_exinext_on_the_samples(mta_env: MtaEnv, key: str) -> None:
    """exinext's samples: a bare IP (no router takes the domain) and an address routed to the host;
    the record written with our key and with Exim 4.96's."""
    mta_env.write_config("""
begin routers
down:
  driver = domainlist
  domains = example.net
  transport = remote_smtp
  route_list = * "127.0.0.3::2526" byname
  self = send
begin transports
remote_smtp:
  driver = smtp
""")
    times = [sample_epoch(t) for t in ("22-Nov-2026 12:43:32", "22-Nov-2026 12:43:53", "22-Nov-2026 12:58:53")]
    RetryDb.for_spool(str(mta_env.spool)).put(key, RetryRecord(*times, False, 111, 65, "refused_A",
                                                               "Connection refused", times[1]))
    for subject, sample in (("127.0.0.3", "exinext.txt"), ("bob@example.net", "exinext-address.txt")):
        result = run_tool("next", "-C", str(mta_env.config), subject)
        assert result.stdout == without_exit_line(sample_text(sample))


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(("tool", "args", "status", "message"), [
    ("dumpdb", ["SPOOL", "callout"], 2, "unknown hints database 'callout'"),
    ("dumpdb", ["SPOOL", "wait-"], 2, "unknown hints database 'wait-'"),
    ("dumpdb", ["SPOOL", "wait-nosuch"], 1, "no wait-nosuch database in"),
    ("dumpdb", ["/nonexistent/spool", "retry"], 1, "spool directory /nonexistent/spool does not exist"),
    ("dumpdb", ["SPOOL", "retry", "more"], 2, "too many arguments: more"),
    ("dumpdb", ["--spool", "SPOOL", "SPOOL", "retry"], 2, "the spool is given twice"),
    ("dumpdb", ["-x", "SPOOL", "retry"], 2, "unrecognized arguments: -x"),
    ("dumpdb", ["retry"], 1, "/etc/mta/mta.conf: configuration file not found"),
    ("tidydb", ["-t", "soon", "SPOOL", "retry"], 2, "-t soon: not a time"),
    ("tidydb", [], 2, "the following arguments are required"),
    ("fixdb", ["SPOOL", "ratelimit"], 1, "no ratelimit database in"),
    ("fixdb", ["SPOOL", "../retry"], 2, "unknown hints database '../retry'"),
    ("next", [], 2, "the following arguments are required"),
    ("next", ["--spool", "/nonexistent/spool", "bob"], 1, "spool directory /nonexistent/spool does not exist"),
    ("next", ["-C", "/nonexistent.conf", "bob"], 1, "/nonexistent.conf: configuration file not found"),
    ("next", ["--spool", "SPOOL", "a b"], 2, "'a b' is not an address, a domain or a message id"),
])
def test_bad_arguments_are_one_line_and_a_non_zero_status(built: HintsWorld, tool: str, args: list[str],
                                                          status: int, message: str) -> None:
    args = [str(built.spool) if a == "SPOOL" else a for a in args]
    result = run_tool(tool, *args)
    assert result.returncode == status, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"mta-{tool}: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    if status == 2:
        assert result.stderr.endswith(f"(see mta-{tool} --help)\n")


@pytest.mark.parametrize("tool", ["dumpdb", "tidydb", "fixdb", "next"])
def test_help(tool: str) -> None:
    result = run_tool(tool, "--help")
    assert result.returncode == 0 and f"usage: mta-{tool}" in result.stdout and "--spool" in result.stdout
