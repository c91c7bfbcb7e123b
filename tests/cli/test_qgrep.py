"""`mta-qgrep` (exiqgrep and exipick) on a spool made by the real mta.

Five messages are queued with the real CLI (-odq) and changed as deliveries
and administrators change them: a recipient delivered, a bounce frozen with
`mta -Mf`, a big message, a sender full of terminal escapes and shell
syntax, a message moved to an Exim 4.96 (16-character) id.  The many
selections are run through spool_tools.qgrep.select in this process (the
same code the command runs); the command itself runs as a subprocess for
what only a process shows: exit statuses, one-line errors, the console
script and `python -m`, a terminal-safe listing, a pipeline into
`xargs mta -Mrm`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.spool.ids import message_time
from spool_tools.admin_command import UsageError
from spool_tools.qgrep import build_parser, select
from tests.support.mta import MTA, MtaEnv
from tests.support.queue import ACCEPT_ALL_RCPT, change, old_form_id, rename_message, submit_batch

QGREP = str(Path(MTA).with_name("mta-qgrep"))
HOSTILE = "evil\x1b[2J$(touch {marker})`id`@example.com"


class World:
    def __init__(self, env: MtaEnv, ids: dict[str, str], marker: Path) -> None:
        self.env, self.ids, self.marker = env, ids, marker
        self.letter = {message_id: letter for letter, message_id in ids.items()}

    def select(self, *args: str) -> str:
        out = io.StringIO()
        assert select(build_parser().parse_args(["-C", str(self.env.config), *args]), out) == 0
        return out.getvalue()

    def letters(self, *args: str) -> str:
        """The messages chosen, as letters in listing order ("EAB")."""
        return "".join(self.letter[line.split()[0]] for line in self.select("-i", *args).splitlines())

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([QGREP, "-C", str(self.env.config), *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mta-qgrep-"))
    env = MtaEnv(root)
    env.write_config(ACCEPT_ALL_RCPT)
    marker = root / "evaluated"
    now = int(time.time())
    made = submit_batch(env, [
        ("old@example.org", ["frank@example.org", "george@example.com"], "Subject: =?UTF-8?Q?caf=C3=A9?=\n\nhi\n"),
        ("alice@example.net", ["bob@example.org", "carol@example.org"], "Subject: Quarterly report\n\nhi\n"),
        ("", ["ghost@example.com"], "Subject: q\n\nhi\n"),
        ("Big.Sender@Example.COM", ["dave@example.net"], "Subject: q\n\n" + ("z" * 99 + "\n") * 200),
        ("d@example.org", ["eve@example.org"], "Subject: q\n\nhi\n"),
    ])
    ids = dict(zip("EABCD", made, strict=True))
    # E waits under the id Exim 4.96 would have given it (it sorts first: it is the oldest).
    old = old_form_id(int(message_time(ids["A"])) - 100, 4242, 7)
    rename_message(env, ids["E"], old)
    ids["E"] = old
    change(env, ids["A"], non_recipients={"carol@example.org"}, received_time=now - 7230, deliver_firsttime=False)
    change(env, ids["B"], received_time=now - 630)
    change(env, ids["C"], received_time=now - 3 * 86400)
    change(env, ids["D"], sender_address=HOSTILE.format(marker=marker))
    frozen = env.run("-Mf", ids["B"])
    assert (frozen.returncode, frozen.stdout) == (0, f"Message {ids['B']} is now frozen\n"), frozen.stderr
    yield World(env, ids, marker)
    shutil.rmtree(root, ignore_errors=True)


def test_listing_is_bpu_and_with_a_bp(world: World) -> None:
    """exiqgrep lists what exim -bpu lists (pending recipients), with -a what -bp lists."""
    assert world.command().stdout == world.env.run("-bpu").stdout
    assert world.command("-a").stdout == world.env.run("-bp").stdout
    assert world.letters() == "EABCD"


@pytest.mark.parametrize(("args", "chosen"), [
    (["-f", "alice"], "A"),
    (["-f", "^<>$"], "B"),  # exiqgrep matches "<sender>": the bounces
    (["-f", "big.sender@example.com"], "C"),  # without regard to case
    (["-r", "bob@"], "A"),
    (["-r", "carol"], ""),  # delivered: not listed, not matched
    (["-a", "-r", "carol"], "A"),
    (["-r", r"\.net$"], "C"),
    (["-r", "^frank@"], "E"),  # each recipient on its own
    (["-o", "3600"], "AC"),
    (["-o", "1d"], "C"),
    (["-y", "1h"], "EBD"),
    (["-o", "5m", "-y", "3h"], "AB"),
    (["-s", "K$"], "C"),
    (["-z"], "B"),
    (["-x"], "EACD"),
    (["-xf", "example.org"], "E"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_exiqgrep_options(world: World, args: list[str], chosen: str) -> None:
    assert world.letters(*args) == chosen


@pytest.mark.parametrize(("conditions", "chosen"), [
    (["$message_size > 10K"], "C"),
    (["$message_size <= 2048"], "EABD"),
    (["$message_age > 1h"], "AC"),
    (["$message_age >= 3d"], "C"),
    (["$deliver_freeze"], "B"),
    (["!$deliver_freeze"], "EACD"),
    (["$first_delivery"], "EBCD"),
    (["$sender_address =~ /^alice@/"], "A"),
    (["$sender_address eq alice@example.net"], "A"),
    (["$sender_address eq 'alice@example.net'"], "A"),
    (["$sender_address ne alice@example.net"], "EBCD"),
    (["$sender_address !~ /example/"], "BC"),  # with regard to case
    (["$sender_address = BIG"], "C"),
    (["--caseful", "$sender_address = BIG"], ""),
    (["$sender_address =~ /BIG/i"], "C"),
    (["$sender_address_domain eq example.net"], "A"),
    (["$recipients_count >= 2"], "EA"),
    (["$recipients_del_count == 1"], "A"),
    (["$recipients_undel_count == 1", "$message_size < 1K"], "ABD"),
    (["$each_recipients = example\\.org$"], "AD"),
    (["!$each_recipients = example\\.org$"], "BC"),
    (["--or", "$each_recipients = example\\.org$"], "EAD"),
    (["--or", "$deliver_freeze", "$message_size > 10K"], "BC"),
    (["--not", "$deliver_freeze", "$message_age < 1h"], "AC"),
    (["$h_subject: = ^quarterly"], "A"),
    (["$h_subject: eq café"], "E"),  # RFC 2047 decoded
    (["$rh_subject: =~ /=\\?UTF-8\\?Q/"], "E"),  # raw
    (["$received_protocol eq local-bsmtp", "$sender_host_address eq ''"], "EABCD"),
    (["$sender_address =~ /\\$\\(touch/"], "D"),  # message data is only ever compared
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_exipick_conditions(world: World, conditions: list[str], chosen: str) -> None:
    assert world.letters(*conditions) == chosen


def test_message_ids_in_both_forms(world: World) -> None:
    old, new = world.ids["E"], world.ids["A"]
    assert len(old) == 16 and len(new) == 23
    assert world.letters(new, old) == "EA"
    assert world.letters(f"$message_id eq {old}") == "E"
    assert world.letters(f"$message_exim_id ne {new}", "$recipients_count == 2") == "E"


def test_output_forms(world: World) -> None:
    ids = world.ids
    assert world.select("-c", "-r", "example.org") == "3 matches out of 5 messages\n"
    assert world.select("-b", ids["A"]) == f"{ids['A']} From: <alice@example.net> To: bob@example.org\n"
    both = "bob@example.org;carol@example.org"
    assert world.select("-ab", ids["A"]) == f"{ids['A']} From: <alice@example.net> To: {both}\n"
    assert world.letters("-R") == "DCBAE"
    size = world.env.run("-bp", ids["C"]).stdout.split()[1]
    assert world.select("-i", "--show-vars", "shown_message_size,$recipients:", ids["C"]) == \
        f"{ids['C']} shown_message_size='{size}' recipients='dave@example.net'\n"
    long = world.select("--show-vars", "warning_count", ids["B"]).splitlines()
    assert long[1] == f"  {'warning_count':>25} = '0'" and long[0].endswith(" <> *** frozen ***")
    assert world.select("-b", "--show-vars", "deliver_freeze", ids["B"]).endswith(" Vars: deliver_freeze='1'\n")
    assert sorted(world.letters("--unsorted")) == sorted("EABCD")


@pytest.mark.parametrize(("args", "message"), [
    (["--nosuch"], "unrecognized arguments: --nosuch"),
    (["-f", "("], '-f: bad regular expression "(": missing ), unterminated subpattern at position 0'),
    (["$message_size >> 5"], 'condition "$message_size >> 5": "> 5" is not a number (examples: 1000, 2.5K, 3M'),
    (["$nosuch"], 'condition "$nosuch": unknown variable $nosuch'),
    (["$sender_address > 5"], "$sender_address is not a number; compare it with eq, ne, = or =~"),
    (["message_size > 5"], 'condition "message_size > 5" did not parse: it must start with a $variable'),
    (["$sender_address =~ abc"], "=~ takes a regular expression between slashes"),
    (["$sender_address =~ /(/"], 'bad regular expression "("'),
    (["$sender_address =~ /x/q"], "after the closing / only the flags i, m, s and x may come"),
    (["$each_sender = x"], "is not one of $each_recipients"),
    (["1xZ2Tx-00000005zT-0nM1"], '"1xZ2Tx-00000005zT-0nM1" is not a message id'),
    (["$message_id eq 1xV6uq-0005Vj"], '"1xV6uq-0005Vj" is not a message id'),
    (["-y", "soon"], '-y: "soon" is not a number of seconds'),
    (["-i", "-c"], "choose one of -i, -b and -c"),
    (["--and", "--or"], "choose --and or --or, not both"),
    (["-G", "bulk"], "-G: mta has no named queues"),
    (["--show-vars", "nosuch"], "--show-vars: unknown variable $nosuch"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_arguments_are_refused_before_reading(world: World, args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as refused:
        world.select(*args)
    assert message in str(refused.value)


def test_command_line_errors_are_one_line(world: World) -> None:
    for args in (["--nosuch"], ["$message_size > x"], ["-r", "[a-"]):
        result = world.command(*args)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("mta-qgrep: ") and result.stderr.count("\n") == 1, result.stderr
    missing = subprocess.run([QGREP, "-C", str(world.env.root / "nosuch.conf")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("mta-qgrep: configuration error: ")


def test_hostile_sender_is_shown_escaped_never_run(world: World) -> None:
    result = world.command("-f", "evil")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "<evil\\033[2J$(touch " in result.stdout
    assert not world.marker.exists()
    brief = world.command("-b", "$sender_address =~ /`id`/").stdout
    assert brief.startswith(world.ids["D"] + " From: <evil\\033[2J$(touch ")


def test_console_script_module_and_spool_option(world: World) -> None:
    by_config = world.command("-i")
    assert (by_config.returncode, by_config.stderr) == (0, "")
    by_spool = subprocess.run([sys.executable, "-m", "spool_tools.qgrep", "--spool", str(world.env.spool), "-i"],
                              capture_output=True, text=True, timeout=30)
    assert (by_spool.returncode, by_spool.stdout) == (0, by_config.stdout)
    usage = subprocess.run([QGREP, "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and "$message_size > 10K" in usage.stdout


def test_ids_for_xargs_mta_Mrm(mta_env: MtaEnv) -> None:
    mta_env.write_config(ACCEPT_ALL_RCPT)
    kept, *_bounces = submit_batch(mta_env, [("someone@example.org", ["a@example.org"], "Subject: x\n\nhi\n"),
                                            *[("", ["b@example.org"], "Subject: y\n\nhi\n")] * 2])
    pipeline = f"{QGREP} -C {mta_env.config} -f '^<>$' -i | xargs {MTA} -C {mta_env.config} -Mrm"
    result = subprocess.run(["sh", "-c", pipeline], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.count("has been removed") == 2
    assert mta_env.message_ids() == [kept]
