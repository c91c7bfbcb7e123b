"""mta.process_info: what a process reports to `mta-what`, in this process, through a real SIGUSR1."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta import process_info


@pytest.fixture
def report(tmp_path: Path) -> Iterator[Path]:
    previous = process_info.set_activity("testing")
    process_info.set_report_path(str(tmp_path))
    try:
        yield tmp_path / process_info.REPORT_NAME
    finally:
        process_info.set_activity(previous)
        process_info._report_path = None
        process_info.sessions.clear()


def test_sigusr1_appends_one_line_per_activity(report: Path) -> None:
    old_handler = signal.getsignal(signal.SIGUSR1)
    process_info.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        process_info.sessions[7] = "handling incoming connection from [192.0.2.1]"
        process_info.sessions[8] = "handling incoming connection from [192.0.2.2]"
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old_handler)
    pid = os.getpid()
    assert report.read_text() == (
        f"{pid:5d} testing\n"
        f"{pid:5d} handling incoming connection from [192.0.2.1]\n"
        f"{pid:5d} handling incoming connection from [192.0.2.2]\n"
    )
    assert report.stat().st_mode & 0o777 == 0o640


def test_a_line_from_message_data_stays_one_line(report: Path) -> None:
    process_info.set_activity("delivering X to host (evil@x\nforged line\x1b[2J)")
    process_info.write_report()
    assert report.read_text() == f"{os.getpid():5d} delivering X to host (evil@x\\nforged line\\033[2J)\n"


def test_parallel_deliveries_one_line_each_while_they_run(report: Path) -> None:
    async def deliver(host: str, port: int, recipients: list[str], started: asyncio.Event,
                      finish: asyncio.Event) -> None:
        process_info.remote_delivery("1xZ2Tx-000000005zT-0nM1", host, "192.0.2.9", port, recipients)
        started.set()
        await finish.wait()

    async def main() -> tuple[list[str], list[str]]:
        finish = asyncio.Event()
        started = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(deliver("mx1.example.org", 25, ["a@example.org"], started[0], finish)),
            asyncio.create_task(deliver("mx2.example.net", 2525, ["b@example.net", "c@example.net"], started[1],
                                        finish)),
        ]
        await asyncio.gather(*(event.wait() for event in started))
        during = process_info.lines()
        finish.set()
        await asyncio.gather(*tasks)
        return during, process_info.lines()

    during, after = asyncio.run(main())
    assert during == [
        "delivering 1xZ2Tx-000000005zT-0nM1 to mx1.example.org [192.0.2.9] (a@example.org)",
        "delivering 1xZ2Tx-000000005zT-0nM1 to mx2.example.net [192.0.2.9]:2525 (b@example.net, ...)",
    ]
    assert after == ["testing"]  # finished tasks say nothing more
    # Without an event loop (mua_wrapper's blocking client) the text is the process's own.
    process_info.remote_delivery("1xZ2Tx-000000005zT-0nM1", "smart.example", None, None, [])
    assert process_info.lines() == ["delivering 1xZ2Tx-000000005zT-0nM1 to smart.example ()"]


def test_nothing_is_written_before_the_configuration_names_the_spool(tmp_path: Path) -> None:
    process_info._report_path = None
    process_info.write_report()
    assert list(tmp_path.iterdir()) == []
