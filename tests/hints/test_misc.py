"""The misc hints database: ETRN serialisation (smtp_etrn_serialize), through `mta -bs` sessions.

The ETRN command is `/bin/sleep`, so the first ETRN's run is still going when the second arrives."""

from __future__ import annotations

import subprocess
import time

from mta.hints.misc import serialize_end, serialize_start
from tests.support.mta import MTA, MtaEnv

ETRN_CONFIG = """
acl_smtp_etrn = accept
smtp_etrn_command = /bin/sleep {seconds}
{extra}
"""


def session(env: MtaEnv, *commands: str) -> list[str]:
    script = "EHLO client.example\r\n" + "".join(f"{c}\r\n" for c in commands) + "QUIT\r\n"
    result = env.run("-bs", input=script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The banner, the EHLO lines, then one reply per command, then the QUIT's.
    return [line for line in lines if line[:3].isdigit() and line[3:4] == " "][2:-1]


def test_a_repeated_etrn_gets_458_until_the_first_run_ends(mta_env: MtaEnv) -> None:
    mta_env.write_config(ETRN_CONFIG.format(seconds=3, extra=""))
    started = time.monotonic()
    first = subprocess.Popen([MTA, "-C", str(mta_env.config), "-bs"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stdin is not None
    first.stdin.write(b"EHLO a.example\r\nETRN #example.org\r\nETRN #example.org\r\nETRN example.net\r\nQUIT\r\n")
    first.stdin.close()
    first.stdin = None  # written and closed: communicate() below only reads
    try:
        deadline = time.monotonic() + 10
        while sum("received from" in line for line in mta_env.log_lines()) < 3:
            assert time.monotonic() < deadline, mta_env.log_lines()
            time.sleep(0.05)
        # Another session while the first one's command still runs: refused too.
        assert session(mta_env, "ETRN #example.org") == ["458 Already processing #example.org"]
        out, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    replies = [line for line in out.decode().splitlines() if line[:3].isdigit() and line[3:4] == " "][2:-1]
    assert replies == ["250 OK", "458 Already processing #example.org", "250 OK"], err
    assert (mta_env.spool / "db" / "misc").exists()
    # The session's process waited for the command to end and released the argument.
    assert time.monotonic() - started >= 3
    assert session(mta_env, "ETRN #example.org") == ["250 OK"]
    received = [line for line in mta_env.log_lines() if "ETRN #example.org received from" in line]
    assert len(received) == 4  # every ETRN is logged, refused or not


def test_without_serialisation_every_etrn_starts_its_command(mta_env: MtaEnv) -> None:
    mta_env.write_config(ETRN_CONFIG.format(seconds=0, extra="smtp_etrn_serialize = false"))
    assert session(mta_env, "ETRN #example.org", "ETRN #example.org") == ["250 OK", "250 OK"]
    assert not (mta_env.spool / "db" / "misc").exists()


def test_a_stale_record_is_taken_over_and_a_damaged_one_ignored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    directory = str(tmp_path / "db")
    assert serialize_start(directory, "etrn-x", now=1000, stale_after=3600)
    assert not serialize_start(directory, "etrn-x", now=2000, stale_after=3600)
    assert serialize_start(directory, "etrn-x", now=1000 + 3600, stale_after=3600)  # its holder died
    serialize_end(directory, "etrn-x")
    assert serialize_start(directory, "etrn-x", now=5000, stale_after=3600)
    # A record from the future (the clock went back) is not believed for longer than stale_after either way.
    assert serialize_start(directory, "etrn-y", now=9000, stale_after=3600)
    assert serialize_start(directory, "etrn-y", now=100, stale_after=3600)
    from mta.hints.db import HintsDb, hints_key

    HintsDb(directory, "misc").put(hints_key("etrn-z"), b"\x00garbage")
    assert serialize_start(directory, "etrn-z", now=100, stale_after=3600)
