"""mta-grep (exigrep) on Exim's own sample log, on real logs made by mta, and against Exim's exigrep."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest

from tests.spool_tools.conftest import run, tool
from tests.support.adminlogs import World
from tests.support.exim_tools import ShortIds, run_exim_tool
from tests.support.samples import sample_text


def groups(output: str) -> list[str]:
    """The output's groups (a message's lines, or one other line), each without its blank line."""
    return [g for g in output.split("\n\n") if g]


def message_lines(world: World, message_id: str) -> list[str]:
    return [line for line in world.lines() if line.split(" ", 3)[2:3] == [message_id]]


@pytest.fixture
def sample_log(tmp_path: Path) -> Path:
    path = tmp_path / "mainlog"
    path.write_text(sample_text("mainlog.txt"))
    return path


def test_exim_sample_gives_exigreps_output(sample_log: Path) -> None:
    """The sample's exigrep run, byte for byte: a delay warning naming the id (completed), then
    the message itself, still open at the end of the log."""
    expected = sample_text("exigrep.txt").split("\n# exit status")[0]
    assert tool("grep", "1xV6uq-0005Vj-1t", str(sample_log)).stdout == expected + "\n"


def test_a_message_is_shown_whole_by_its_23_character_id(world: World) -> None:
    [message_id] = world.ids("<= alice@example.com")
    out = tool("grep", "carol@example", str(world.mainlog)).stdout
    # Deferred (later@example.net): not completed, so it comes last, with exigrep's banner; every
    # line of the message is there, those that do not mention carol too.
    assert out == f"+++ {message_id} has not completed +++\n" + "".join(
        line + "\n" for line in message_lines(world, message_id)
    ) + "\n"
    assert any(" == later@example.net " in line for line in out.splitlines())


def test_completed_messages_and_other_lines(world: World) -> None:
    [bounce] = world.ids("<= <> ")
    [original] = world.ids("<= alice@example.com")
    out = run("grep", "-M", "ghost@example.com", str(world.mainlog)).stdout
    found = groups(out)
    # -M: the bounce names the original (R=ID) after it matched, so it comes with it.
    assert found[0].splitlines() == message_lines(world, bounce)
    assert found[0].endswith(" Completed")
    assert found[1].splitlines() == [f"+++ {original} has not completed +++", *message_lines(world, original)]
    assert len(found) == 2
    # Without -M the bounce does not mention ghost@: only the original.
    assert [g.splitlines()[0] for g in groups(run("grep", "ghost@example.com", str(world.mainlog)).stdout)] == [
        f"+++ {original} has not completed +++"
    ]
    # A line of no message is printed alone, a blank line after it (as exigrep).
    [reject] = [line for line in world.lines() if "rejected RCPT" in line]
    assert run("grep", "relay not permitted", str(world.mainlog)).stdout == reject + "\n\n"


def test_options(world: World, tmp_path: Path) -> None:
    log = str(world.mainlog)
    [erin] = world.ids("<= erin@example.org")
    erin_group = "".join(line + "\n" for line in message_lines(world, erin)) + "\n"
    # Case: insensitive by default, -I makes it sensitive.
    assert run("grep", "<= ERIN@", log).stdout == erin_group
    assert run("grep", "-I", "<= ERIN@", log).stdout == ""
    # -l: the pattern is text ("[" alone is a bad regular expression).
    assert run("grep", "-l", "(client.example.org) [127.0.0.1] P=", log).stdout == erin_group
    bad = run("grep", "[127", log, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("mta-grep: bad pattern '[127'") and bad.stdout == ""
    # -v: the messages none of whose lines match, and the other lines that do not match.
    inverted = run("grep", "-v", "example", log).stdout
    assert all("example" not in g for g in groups(inverted))
    assert "daemon started" in inverted and erin not in inverted
    # -t: only messages more than N seconds on the queue (none here); open ones still show.
    assert [g.splitlines()[0][:3] for g in groups(run("grep", "-t", "3600", " <= ", log).stdout)] == ["+++"] * 2
    # --incomplete: only the messages that have not completed.
    incomplete = groups(run("grep", "--incomplete", "@example", log).stdout)
    assert [g.split()[1] for g in incomplete] == [*world.ids("<= alice@example.com"), *world.ids("<= henry@")]


def test_compressed_logs_and_the_configurations_main_log(world: World, tmp_path: Path) -> None:
    text = world.mainlog.read_bytes()
    expected = tool("grep", "dave@", str(world.mainlog)).stdout
    assert expected
    for name, compress in (("mainlog.02.gz", gzip.compress), ("mainlog.03.bz2", bz2.compress),
                           ("mainlog.04.xz", lzma.compress)):
        (tmp_path / name).write_bytes(compress(text))
        assert run("grep", "dave@", str(tmp_path / name)).stdout == expected, name
    # No LOG: the main log of -C's configuration, or of --spool's spool; '-' is standard input.
    assert tool("grep", "-C", str(world.config), "dave@").stdout == expected
    assert run("grep", "--spool", str(world.spool), "dave@").stdout == expected
    assert run("grep", "dave@", "-", input=text.decode()).stdout == expected


def test_hostile_log_text(tmp_path: Path) -> None:
    """A remote reply saying "Completed" does not end a message's group (exigrep looks for the
    word anywhere); control characters from the log reach the terminal escaped."""
    log = tmp_path / "mainlog"
    log.write_text(
        "2026-11-22 12:00:00 1xV6uq-000000005Vj-1t2a <= a@example.org U=root P=local S=300\n"
        "2026-11-22 12:00:01 1xV6uq-000000005Vj-1t2a ** b@example.net R=r T=t: SMTP error from remote mail "
        "server after RCPT TO:<b@example.net>: 550 Completed\n"
        "2026-11-22 12:00:01 1xV6uq-000000005Vj-1t2a => c@example.net R=r T=t H=x [192.0.2.1] C=\"250 \x1b[2J\"\n"
        "2026-11-22 12:00:02 1xV6uq-000000005Vj-1t2a Completed\n"
    )
    out = tool("grep", "a@example.org", str(log)).stdout
    assert len(groups(out)) == 1 and out.count("\n") == 5
    assert "\x1b" not in out and "\\033[2J" in out


@pytest.mark.parametrize("pattern", ["1xV6uq-0005Vj-1t", "alice", "example.net", "Completed", "queue run"])
def test_same_as_exims_exigrep_on_the_sample(sample_log: Path, pattern: str) -> None:
    ours = run("grep", pattern, str(sample_log)).stdout
    theirs = run_exim_tool("exigrep", "--no-pager", pattern, str(sample_log))
    # exigrep prints the messages left open at the end in Perl's hash order: compare as sets.
    assert sorted(groups(ours)) == sorted(groups(theirs))
    assert ours.replace("\n\n", "\n").split("+++")[0] == theirs.replace("\n\n", "\n").split("+++")[0]


@pytest.mark.parametrize("args", [["example.org"], ["-M", "ghost@"], ["-l", "[127.0.0.2]"], ["-I", "Completed"],
                                  ["-t", "0", "bob"]])
def test_same_as_exims_exigrep_on_a_real_log(world: World, tmp_path: Path, args: list[str]) -> None:
    """Exim's exigrep, on the same log with its ids shortened to the 16 characters it knows."""
    short = ShortIds()
    mapped = tmp_path / "mainlog"
    mapped.write_text(short(world.mainlog.read_text()))
    ours = run("grep", *args, str(world.mainlog)).stdout
    theirs = short.back(run_exim_tool("exigrep", "--no-pager", *args, str(mapped)))
    assert ours and sorted(groups(ours)) == sorted(groups(theirs))
