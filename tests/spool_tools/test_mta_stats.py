"""mta-stats (eximstats): the report of real logs made by mta, of Exim's sample log, of a
hand-written log of every kind of line, and the same report from Exim's eximstats."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.spool_tools.conftest import run, tool
from tests.support.adminlogs import World
from tests.support.exim_tools import ShortIds, run_exim_tool
from tests.support.samples import sample_text

MIXED = Path(__file__).resolve().parents[1] / "data" / "admin-logs" / "mixed-mainlog"
OURS_ONLY = re.compile(r"Volume per (?:hour|\d+ minutes|day)\n-+\n.*?\n\n", re.S)


def without_our_sections(report: str) -> str:
    """The report with the two sections eximstats does not have taken out."""
    return OURS_ONLY.sub("", report)


def sections(report: str) -> dict[str, str]:
    """Each section's text by its title (the line above a line of dashes)."""
    found = re.findall(r"^(\S[^\n]*)\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", report, re.S | re.M)
    return {title: body for title, body in found}


def test_exim_sample_gives_eximstats_output(tmp_path: Path) -> None:
    """The first 120 lines of eximstats' report on its sample log, exactly."""
    log = tmp_path / "mainlog"
    log.write_text(sample_text("mainlog.txt"))
    expected = sample_text("eximstats.txt").split("\n# ")[0]
    ours = without_our_sections(tool("stats", str(log)).stdout)
    assert "\n".join(ours.split("\n")[:120]) + "\n" == expected


def test_real_log_figures(world: World) -> None:
    """The grand totals and tables say what the log says, counted here independently."""
    lines = world.lines()
    arrivals = [line for line in lines if " <= " in line]
    deliveries = [line for line in lines if " => " in line]
    more = [line for line in lines if " -> " in line]
    received_bytes = sum(int(re.search(r" S=(\d+)", line).group(1)) for line in arrivals)  # type: ignore[union-attr]
    report = tool("stats", str(world.mainlog)).stdout
    received = re.search(r"^  Received +(\d+) +(\d+) +(\d+) +(\d+) +([\d.]+)% +(\d+) +([\d.]+)%$", report, re.M)
    assert received, report
    assert [int(received.group(i)) for i in (1, 2, 4, 6)] == [received_bytes, len(arrivals), 1, 1]
    # 1 delayed (later@example.net), 1 with a failed address (ghost@example.com)
    delivered = re.search(r"^  Delivered +\d+ +(\d+) +(\d+) +(\d+)$", report, re.M)
    assert delivered and [int(delivered.group(i)) for i in (1, 2)] == [len(deliveries), len(deliveries) + len(more)]
    # The relay refused at RCPT, and (as eximstats counts it) the refused connection of the
    # deferred delivery: both from 127.0.0.1.
    assert re.search(r"^  Rejects +2 +1$", report, re.M)
    found = sections(report)
    assert found["Deliveries by transport"].splitlines()[1:4] == [
        f"  address_pipe        {_s(world, 'address_pipe')}           1",
        f"  box                 {_s(world, 'box')}           3",
        f"  remote_smtp         {_s(world, 'remote_smtp')}           2",
    ]
    histogram = found["Messages received per hour (each dot is 1 message)"].splitlines()
    for hour, count in Counter(int(line[11:13]) for line in arrivals).items():
        assert f"{hour:02d}-{hour + 1:02d} {count:6d} {'.' * count}" in histogram
    relayed = found["Relayed messages"]
    assert "(relay.example.org)[127.0.0.2] frank@example.org \n      => 127.0.0.1[127.0.0.1] grace@example.org" in (
        relayed
    )
    assert "Top 50 mail rejection reasons by message count" in found
    assert "Rejected RCPT: relay not permitted" in found["Top 50 mail rejection reasons by message count"]
    assert "1 ghost@example.com: Unknown user" in found["List of errors"]
    day = arrivals[0][:10]
    assert re.search(rf"^{day} +{len(arrivals)} +{received_bytes} +{len(deliveries)} ", found["Volume per day"], re.M)


def _s(world: World, transport: str) -> str:
    """The volume column of a transport: the sizes of the messages it delivered (one => each)."""
    sizes = {line.split()[2]: int(re.search(r" S=(\d+)", line).group(1))  # type: ignore[union-attr]
             for line in world.lines() if " <= " in line}
    total = sum(sizes[line.split()[2]] for line in world.lines() if " => " in line and f" T={transport}" in line)
    return f"{total:6d}"


def test_json_has_the_same_figures(world: World) -> None:
    doc = json.loads(run("stats", "-json", "-byemail", str(world.mainlog)).stdout)
    lines = world.lines()
    assert doc["grand_total"]["received"]["messages"] == sum(" <= " in line for line in lines)
    assert doc["grand_total"]["delivered"]["addresses"] == sum((" => " in line) or (" -> " in line) for line in lines)
    assert doc["grand_total"]["rejects"] == {"messages": 2, "hosts": 1}
    assert {t["transport"]: t["messages"] for t in doc["transports"]} == {"address_pipe": 1, "box": 3,
                                                                           "remote_smtp": 2}
    [senders] = [t for t in doc["top"] if t["table"] == "sending email"]
    assert '"<script>alert(1)</script>"@example.com' in {row["key"] for row in senders["by_count"]}
    assert sum(slot["received"] for slot in doc["per_interval"]["slots"]) == doc["grand_total"]["received"]["messages"]
    assert doc["errors"] == [{"count": 1, "text": "ghost@example.com: Unknown user"}]


def test_several_outputs_files_and_compressed_logs(world: World, tmp_path: Path) -> None:
    packed = tmp_path / "mainlog.01.gz"
    packed.write_bytes(gzip.compress(world.mainlog.read_bytes()))
    text, page, data = tmp_path / "r.txt", tmp_path / "r.html", tmp_path / "r.json"
    out = tool("stats", f"-txt={text}", f"-html={page}", f"-json={data}", str(packed))
    assert out.stdout == ""
    assert text.read_text() == run("stats", str(world.mainlog)).stdout
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert json.loads(data.read_text())["generator"] == "mta-stats"
    # No log named: the configuration's main log.
    assert run("stats", "-C", str(world.config)).stdout == text.read_text()
    # Two logs: each line counted once per log it is in.
    double = run("stats", "-json", str(world.mainlog), str(packed)).stdout
    assert json.loads(double)["grand_total"]["received"]["messages"] == 2 * json.loads(
        data.read_text())["grand_total"]["received"]["messages"]


def test_no_log_lines(tmp_path: Path) -> None:
    empty = tmp_path / "mainlog"
    empty.write_text("not a log line\n")
    result = run("stats", str(empty), check=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "mta-stats: no valid log lines read\n")
    assert "Grand total summary" in run("stats", "-emptyok", str(empty)).stdout


OPTION_SETS = [
    [],
    ["-bydomain", "-byemail", "-byedomain", "-byhost", "-bylocaldomain", "-include_original_destination"],
    ["-nvr", "-t3", "-h4", "-q1,100,2*3600,86400", "-tnl", "-t_remote_users"],
    ["-show_dt", "-show_rt1,5", "-utc", "-pattern", "Refused", "/refused/", "-nr/relay/", "-nt/pipe/"],
    ["-ne", "-nr", "-nt", "-h0", "-q0", "-t1"],
]


@pytest.mark.parametrize("args", OPTION_SETS, ids=lambda a: " ".join(a) or "defaults")
def test_same_as_exims_eximstats_on_every_kind_of_line(tmp_path: Path, args: list[str]) -> None:
    """The hand-written log has both id forms, time zones, pids, milliseconds, syslog lines, two
    days, every kind of rejection eximstats names, SpamAssassin lines, relays and long errors.
    Both run with a time zone east of UTC, so that eximstats' offset arithmetic is exercised."""
    short = ShortIds()
    mapped = tmp_path / "mainlog"
    mapped.write_text(short(MIXED.read_text()))
    env = {"TZ": "Europe/Berlin"}
    ours = without_our_sections(run("stats", *args, str(MIXED), env=env).stdout)
    theirs = run_exim_tool("eximstats", *args, str(mapped), env=env)
    assert ours == theirs


@pytest.mark.parametrize("args", [[], ["-bydomain", "-byemail", "-byedomain"]], ids=["defaults", "by-sender"])
def test_same_as_exims_eximstats_on_a_real_log(world: World, tmp_path: Path, args: list[str]) -> None:
    short = ShortIds()
    mapped = tmp_path / "mainlog"
    mapped.write_text(short(world.mainlog.read_text()))
    ours = without_our_sections(run("stats", *args, str(world.mainlog)).stdout)
    assert ours == run_exim_tool("eximstats", *args, str(mapped))


def test_volume_per_day_spans_days() -> None:
    found = sections(run("stats", str(MIXED)).stdout)
    assert found["Volume per day"].splitlines()[2:5] == [
        "2026-11-21          1       1200           2       2400",
        "2026-11-22          7     1440MB           8       10MB",
        "2026-11-23          0          0           1     1431MB",
    ]
