"""mta-qsumm (exiqsumm) on Exim's sample listing, on mta's own queue, and against Exim's exiqsumm."""

from __future__ import annotations

import re

import pytest

from tests.spool_tools.conftest import run, tool
from tests.support.adminlogs import World
from tests.support.exim_tools import run_exim_tool
from tests.support.mta import MTA
from tests.support.samples import sample_text

# A listing with what exiqsumm distinguishes: ages in m/h/d, sizes in bytes/K/M, a frozen
# bounce, delivered (D) recipients, an IP-literal domain, both id forms, upper-case domains.
LISTING = """\
25m  2.9K 1xV6uq-000000005Vj-1t2a <alice@example.com>
        D carol@example.org
          bob@Example.NET
          dave@example.org

 3h   369 1xV6v0-0005WP-1f <> *** frozen ***
          ghost@example.com

 2d   12M 1xV6v2-000000005WW-1k3b <bob@example.net>
          frank@example.org

 2h  1.5K 1xV6v3-0005WX-1m <carol@example.org> (carol)
          henry@example.org
          erin@[192.0.2.7]

"""


def test_exim_sample_gives_exiqsumms_output() -> None:
    listing = sample_text("bp.txt").split("\n# exit status")[0] + "\n"
    expected = sample_text("exiqsumm.txt").split("\n# exit status")[0] + "\n"
    assert tool("qsumm", input=listing).stdout == expected


def test_counts_deliveries_not_messages() -> None:
    """One line per recipient domain (lower-cased), counting undelivered recipients; volumes
    from the listing's size column, added as exiqsumm adds them ("2.9K" is 2969.6 bytes)."""
    assert run("qsumm", input=LISTING).stdout == (
        "\nCount  Volume  Oldest  Newest  Domain\n-----  ------  ------  ------  ------\n\n"
        "    1    1536      2h      2h  [192.0.2.7]\n"
        "    1     369      3h      3h  example.com\n"
        "    1    2969     25m     25m  example.net\n"
        "    3    12MB      2d     25m  example.org\n"
        "---------------------------------------------------------------\n"
        "    6    12MB      2d     25m  TOTAL\n\n"
    )


def test_real_queue(world: World) -> None:
    """The world's queue: one message partly delivered (its undelivered later@example.net
    counts), one queued to three recipients; D lines are not counted."""
    out = tool("qsumm", input=world.bp).stdout
    rows = {line.split()[-1]: line.split() for line in out.splitlines()[4:] if re.match(r" +\d", line)}
    sizes = {line.split()[2]: int(line.split()[1]) for line in world.bp.splitlines() if re.match(r" *\d+m ", line)}
    [alice] = world.ids("<= alice@example.com")
    [henry] = world.ids("<= henry@example.org")
    assert rows["example.net"][:2] == ["3", str(sizes[alice] + 2 * sizes[henry])]
    assert rows["example.com"][:2] == ["1", str(sizes[henry])]
    assert rows["TOTAL"][:2] == ["4", str(sizes[alice] + 3 * sizes[henry])]


def test_lists_the_queue_itself(world: World) -> None:
    """-C or --spool (or --queue, or a terminal on stdin): the queue itself, standard input unread;
    listings named as files are read as standard input would be."""
    listing = run("qsumm", input=_bp(world)).stdout
    assert _without_ages(tool("qsumm", "--spool", str(world.spool)).stdout) == _without_ages(listing)
    assert _without_ages(run("qsumm", "-C", str(world.config), input="junk").stdout) == _without_ages(listing)
    assert run("qsumm", str(world.root / "bp.txt")).stdout == run("qsumm", input=world.bp).stdout
    bad = run("qsumm", "--queue", str(world.root / "bp.txt"), check=False)
    assert bad.returncode == 2 and "not both" in bad.stderr


def _bp(world: World) -> str:
    import subprocess

    return subprocess.run([MTA, "-C", str(world.config), "-bp"], capture_output=True, text=True, check=True).stdout


def _without_ages(out: str) -> str:
    return re.sub(r" +\d+[mhd] +\d+[mhd] ", " ", out)


@pytest.mark.parametrize("options", [[], ["-c"], ["-b", "-f"], ["-s"], ["-a", "-b", "-f", "-s"]])
def test_same_as_exims_exiqsumm(world: World, options: list[str]) -> None:
    """exiqsumm reads the listing by its columns, so mta's 23-character ids need no mapping.
    With -a and -c, exiqsumm leaves ties in Perl's hash order (we sort them by domain):
    the lines are compared as a set, and ours must be in order."""
    for listing in (LISTING, world.bp):
        ours = run("qsumm", *options, input=listing).stdout
        theirs = run_exim_tool("exiqsumm", *options, input=listing)
        if "-a" in options or "-c" in options:
            assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
            rows = [line.split() for line in ours.splitlines()[4:-3]]
            if "-c" in options:
                assert rows == sorted(rows, key=lambda r: (-int(r[0]), " ".join(r[4:])))
        else:
            assert ours == theirs
