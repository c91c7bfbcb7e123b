"""`mta -bt` and `mta -bv` against real users, alias files and .forward files, in Exim's shape.

The outputs are compared with the Exim samples kept in tests/data/exim-samples
(bt-alias-chain.txt, bv-bad-address.txt) after the sample's names are replaced
by this test's; a missing sample is a failure, not a skip.  Unknown users
have random names checked absent from this machine.
Neither mode delivers anything.
"""

from __future__ import annotations

from tests.e2e.conftest import DOMAIN, E2E
from tests.support.mta import MtaEnv
from tests.support.samples import SAMPLES


def sample(name: str) -> tuple[str, int]:
    """The output recorded in a sample file (after its `# command` line) and its exit status."""
    path = SAMPLES / name
    assert path.exists(), f"Exim sample {path} is missing from the repository"
    lines = path.read_text().splitlines(keepends=True)
    status = int(lines[-1].removeprefix("# exit status:").strip())
    return "".join(lines[1:-1]), status


def test_bt_alias_chain_matches_exim(e2e: E2E) -> None:
    alice = e2e.user("alice")
    e2e.write_aliases(f"sales: help\nhelp: {alice.name}\n")
    e2e.write_config()
    proc = e2e.env.run("-bt", f"sales@{DOMAIN}")
    assert (proc.stdout, proc.returncode) == (
        f"{alice.address}\n"
        f"    <-- help@{DOMAIN}\n"
        f"    <-- sales@{DOMAIN}\n"
        "  router = localuser, transport = local_mbox\n",
        0,
    ), proc.stderr
    exim_output, exim_status = sample("bt-alias-chain.txt")
    assert (proc.stdout, proc.returncode) == (exim_output.replace("alice@", f"{alice.name}@"), exim_status)
    assert not e2e.mbox_path(alice).exists()  # an address test delivers nothing
    assert e2e.env.message_ids() == []


def test_bt_shows_forward_file_and_pipe_items(e2e: E2E) -> None:
    bob = e2e.user("bob")
    e2e.write_forward(bob, f"{bob.home}/Maildir/\n")
    e2e.write_aliases("alerts: |/usr/bin/tee -a /var/log/alerts.out\n")
    e2e.write_config()
    proc = e2e.env.run("-bt", bob.address, f"alerts@{DOMAIN}")
    assert (proc.stdout, proc.returncode) == (
        f"{bob.home}/Maildir/\n"
        f"    <-- {bob.address}\n"
        "  router = userforward, transport = address_directory\n"
        "|/usr/bin/tee -a /var/log/alerts.out\n"
        f"    <-- alerts@{DOMAIN}\n"
        "  router = system_aliases, transport = address_pipe\n",
        0,
    ), proc.stderr
    assert not (bob.home / "Maildir").exists()


def test_bt_unknown_user_is_undeliverable(e2e: E2E) -> None:
    e2e.write_config()
    mallory = e2e.nobody_called("mallory")
    proc = e2e.env.run("-bt", f"{mallory}@{DOMAIN}")
    assert (proc.stdout, proc.returncode) == (f"{mallory}@{DOMAIN} is undeliverable: Unknown user\n", 2)


def test_bt_alias_loop_is_undeliverable_with_its_chain(e2e: E2E) -> None:
    loopa, loopb = e2e.nobody_called("loopa"), e2e.nobody_called("loopb")
    e2e.write_aliases(f"{loopa}: {loopb}\n{loopb}: {loopa}\n")
    e2e.write_config()
    proc = e2e.env.run("-bt", f"{loopa}@{DOMAIN}", timeout=20)
    assert (proc.stdout, proc.returncode) == (
        f"{loopa}@{DOMAIN} is undeliverable: Unknown user\n"
        f"    <-- {loopb}@{DOMAIN}\n"
        f"    <-- {loopa}@{DOMAIN}\n",
        2,
    )


def test_bt_exit_status_is_the_worst_of_several_addresses(e2e: E2E) -> None:
    alice = e2e.user("alice")
    mallory = e2e.nobody_called("mallory")
    e2e.write_config()
    proc = e2e.env.run("-bt", alice.address, f"{mallory}@{DOMAIN}")
    assert proc.returncode == 2
    assert proc.stdout == (
        f"{alice.address}\n  router = localuser, transport = local_mbox\n"
        f"{mallory}@{DOMAIN} is undeliverable: Unknown user\n"
    )


def test_bv_unknown_user_matches_exim(e2e: E2E) -> None:
    e2e.write_config()
    mallory = e2e.nobody_called("mallory")
    proc = e2e.env.run("-bv", f"{mallory}@{DOMAIN}")
    assert (proc.stdout, proc.returncode) == (f"{mallory}@{DOMAIN} failed to verify: Unknown user\n", 2)
    exim_output, exim_status = sample("bv-bad-address.txt")
    assert (proc.stdout, proc.returncode) == (exim_output.replace("mallory@", f"{mallory}@"), exim_status)


def test_bv_good_addresses_verify(e2e: E2E) -> None:
    alice, erin = e2e.user("alice"), e2e.user("erin")
    e2e.write_aliases(f"sales: help\nhelp: {alice.name}\n")
    # erin's .forward would be refused (world-writable), but userforward has no_verify: -bv skips it.
    e2e.write_forward(erin, "somebody@elsewhere.example\n", mode=0o666)
    e2e.write_config()
    proc = e2e.env.run("-bv", alice.address, f"sales@{DOMAIN}", erin.address)
    assert (proc.stdout, proc.returncode) == (
        f"{alice.address} verified\nsales@{DOMAIN} verified\n{erin.address} verified\n",
        0,
    ), proc.stderr


def test_bt_of_a_world_writable_forward_cannot_be_resolved(e2e: E2E) -> None:
    erin = e2e.user("erin")
    forward = e2e.write_forward(erin, "somebody@elsewhere.example\n", mode=0o666)
    e2e.write_config()
    proc = e2e.env.run("-bt", erin.address)
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{erin.address} cannot be resolved at this time: ")
    assert str(forward) in proc.stdout and "writable" in proc.stdout


def test_bt_verbose_traces_every_driver_considered(mta_env: MtaEnv) -> None:
    mta_env.write_config(
        "begin directors\n"
        "nothing:\n  driver = smartuser\n  local_parts = nobody-here\n  new_address = x@example.com\n"
        "everyone:\n  driver = smartuser\n  transport = mbox\n"
        "begin transports\nmbox:\n  driver = appendfile\n  file = /var/mail/everyone\n"
    )
    result = mta_env.run("-v", "-bt", "alice@example.com")
    assert result.returncode == 0, result.stderr
    trace = result.stderr.splitlines()
    assert "director everyone: considering alice@example.com" in trace
    assert "director nothing: considering alice@example.com" not in trace  # its local_parts did not match
    assert result.stdout.splitlines() == ["alice@example.com", "  router = everyone, transport = mbox"]
