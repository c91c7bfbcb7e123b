"""The class of issue 9's high finding: hostile local parts, through every transport kind that takes addresses.

Each hostile local part is a recipient of one message per transport
configuration, submitted with the real CLI as root and delivered as a real
user.  Whatever the transport, message data must never run a command,
reach a shell, be expanded, become an option of a command, name a file
outside the configured directory, or change an SMTP conversation:

- pipe without a shell: each address is exactly one argument (never split,
  never expanded); an argument whose leading "-" comes from the address is
  refused;
- pipe with use_shell: any command that would contain message data is
  refused (deferred), and nothing runs;
- appendfile with a file named from the local part: never a file outside
  the directory the configuration names;
- smtp: each address goes out in exactly one RCPT command, as written.

A canary file that each hostile command would create must never appear,
and nothing of /etc/shadow may appear anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.message.address import parse_envelope_address, split_address
from tests.e2e.conftest import E2E
from tests.support.fakesmtp import FakeSmtpServer

HOSTILE = {
    "backquote": '"x`touch {canary}`"',
    "dollar-paren": '"x$(touch {canary})"',
    "semicolon": '"x;touch {canary}"',
    "pipe-char": '"x|touch {canary}"',
    "quote-break": '"x\\"; touch {canary}; \\""',
    "lookup": "x${{lookup{{root}}lsearch{{/etc/shadow}}}}",
    "run": '"x${{run{{/bin/touch {canary}}}}}"',
    "header": '"x$h_subject:"',
    "space": '"a b c"',
    "dash-option": "-oQ{canary}",
    "dotdot": '"../../../../../tmp/x{token}"',
    "slash": '"a/b"',
    "leading-dot": '".profile"',
    "plain": "plain{token}",
}

DIRECTORS = """\
catchall:
  driver = smartuser
  domains = example.com
  transport = {transport}
  user = {user}
"""


@pytest.fixture
def canary(e2e: E2E) -> Path:
    return Path(f"/tmp/mta-canary-{e2e.token}")


def hostile_addresses(e2e: E2E, canary: Path, domain: str) -> dict[str, str]:
    """Case name -> the address in mta's canonical form (what a transport must see)."""
    addresses = {}
    for name, template in HOSTILE.items():
        local_part = template.format(canary=canary, token=e2e.token)
        addresses[name] = parse_envelope_address(f"{local_part}@{domain}")
    return addresses


def submit_all(e2e: E2E, addresses: dict[str, str]) -> str:
    sent = e2e.env.run("-odi", "-f", "<>", *addresses.values(),
                       input="Subject: hostile\n\nhello\n")
    assert sent.returncode == 0, sent.stderr
    (message_id, *_bounces) = e2e.received_ids()
    return message_id


def assert_nothing_escaped(e2e: E2E, canary: Path) -> None:
    assert not canary.exists(), "a hostile local part ran a command"
    shadow_root = [line for line in Path("/etc/shadow").read_text().splitlines() if line.startswith("root:")]
    everything = "\n".join(e2e.env.log_lines())
    for path in e2e.root.rglob("*"):
        if path.is_file():
            everything += path.read_text(errors="replace")
    assert not any(line in everything for line in shadow_root), "data from /etc/shadow leaked"


def recorder(e2e: E2E) -> tuple[Path, Path]:
    """A pipe command that records its arguments, one file per run, NUL-separated."""
    out = e2e.root / "argv"
    out.mkdir(mode=0o777)
    out.chmod(0o1777)
    text = f'#!/bin/sh\nf=$(mktemp {out}/run.XXXXXX)\nprintf "%s\\0" "$@" > "$f"\ncat >/dev/null\n'
    script = e2e.script("record", text)
    return script, out


def recorded_runs(out: Path) -> list[list[str]]:
    return [p.read_bytes().decode().split("\0")[:-1] for p in sorted(out.iterdir())]


def deliver_through_pipe(e2e: E2E, canary: Path, options: str) -> tuple[dict[str, str], str, Path]:
    """Every hostile address to a recording pipe transport with `options` ({script} is the
    recorder); returns the addresses, the message id and the recorder's output directory."""
    user = e2e.user("alice")
    script, out = recorder(e2e)
    transport = "record_pipe:\n  driver = pipe\n" + options.format(script=script)
    e2e.write_config(directors=DIRECTORS.format(transport="record_pipe", user=user.name), transports=transport)
    addresses = hostile_addresses(e2e, canary, "example.com")
    return addresses, submit_all(e2e, addresses), out


def test_pipe_without_shell_gives_each_address_as_one_argument(e2e: E2E, canary: Path) -> None:
    addresses, message_id, out = deliver_through_pipe(e2e, canary, "  command = {script} --to $pipe_addresses\n")
    runs = recorded_runs(out)
    option_like = {name for name, address in addresses.items() if address.startswith("-")}
    assert option_like == {"dash-option"}
    assert sorted(runs) == sorted(["--to", a] for n, a in addresses.items() if n not in option_like)
    (refused,) = [line for line in e2e.log_for(message_id) if line.startswith("** ")]
    assert f"<{addresses['dash-option']}>" in refused and 'starts with "-"' in refused
    assert_nothing_escaped(e2e, canary)


def test_pipe_argument_made_from_the_local_part(e2e: E2E, canary: Path) -> None:
    options = '  command = {script} $local_part --user=$local_part "${{lc:$local_part}} x"\n'
    addresses, _message_id, out = deliver_through_pipe(e2e, canary, options)
    expected = []
    for name, address in addresses.items():
        bare = split_address(address)[0]  # the local part without its quoting, as $local_part has it
        if name != "dash-option":
            expected.append([bare, f"--user={bare}", f"{bare.lower()} x"])
    runs = recorded_runs(out)
    assert [r for r in runs if r not in expected] == [] and [e for e in expected if e not in runs] == []
    assert_nothing_escaped(e2e, canary)


@pytest.mark.parametrize("variable", ["$pipe_addresses", "$local_part", "${lc:$local_part}", "$h_subject:"])
def test_use_shell_refuses_every_command_with_message_data(e2e: E2E, canary: Path, variable: str) -> None:
    options = "  use_shell\n  command = {script} " + variable.replace("{", "{{").replace("}", "}}") + "\n"
    addresses, message_id, out = deliver_through_pipe(e2e, canary, options)
    assert recorded_runs(out) == []  # nothing ran at all
    lines = [line for line in e2e.log_for(message_id) if line.startswith("== ")]
    assert len(lines) == len(addresses)
    assert all("(command for record_pipe transport) not permitted" in line and "Tainted" in line for line in lines)
    assert_nothing_escaped(e2e, canary)


def test_appendfile_named_by_the_local_part_stays_in_its_directory(e2e: E2E, canary: Path) -> None:
    user = e2e.user("alice")
    boxes = e2e.root / "boxes"
    boxes.mkdir(mode=0o777)
    boxes.chmod(0o1777)
    transport = f"by_name:\n  driver = appendfile\n  file = {boxes}/$local_part\n"
    e2e.write_config(directors=DIRECTORS.format(transport="by_name", user=user.name), transports=transport)
    addresses = hostile_addresses(e2e, canary, "example.com")
    submit_all(e2e, addresses)
    # The traversal case aims at /tmp/x<token>; nothing with the token may appear outside the test's root.
    escaped = [p for p in Path("/tmp").glob(f"*{e2e.token}*") if p != e2e.root and p != canary]
    assert escaped == [], f"files outside the test's directory: {escaped}"
    for path in boxes.rglob("*"):
        # Whatever was delivered is one plain file directly in boxes/, named by a local part.
        assert path.parent == boxes and path.is_file(), path
        assert not path.name.startswith(".") and "/" not in path.name
    assert not (boxes / ".profile").exists()
    assert_nothing_escaped(e2e, canary)


def test_smtp_sends_each_address_in_exactly_one_rcpt(e2e: E2E, canary: Path) -> None:
    with FakeSmtpServer() as server:
        routers = f"""
begin routers
to_fake:
  driver = domainlist
  transport = fake_smtp
  route_list = example.net "127.0.0.1::{server.port}" byname
  self = send
"""
        transports = "fake_smtp:\n  driver = smtp\n  allow_localhost\n  hosts_avoid_tls = *\n"
        e2e.write_config(transports=transports)
        e2e.env.config.write_text(e2e.env.config_text.replace("begin transports", routers + "\nbegin transports"))
        addresses = hostile_addresses(e2e, canary, "example.net")
        submit_all(e2e, addresses)
        commands = [c for conn in server.connections for c in conn.commands]
    rcpts = [c for c in commands if c.upper().startswith("RCPT")]
    assert sorted(rcpts) == sorted(f"RCPT TO:<{a}>" for a in addresses.values())
    assert not any(c.upper().startswith(("VRFY", "EXPN", "NOOP", "HELP")) for c in commands)
    assert all("\r" not in c and "\n" not in c for c in commands)
    assert_nothing_escaped(e2e, canary)


def test_the_canary_would_be_seen(e2e: E2E, canary: Path) -> None:
    """The checks above can fail: a trusted alias pipe that does run `touch` leaves the canary."""
    e2e.write_aliases(f'canary: "|/usr/bin/touch {canary}"\n')
    e2e.write_config()
    try:
        e2e.submit("Subject: x\n\nhi\n", "-odi", "canary@example.com")
        assert canary.exists()
    finally:
        if canary.exists():
            os.unlink(canary)
