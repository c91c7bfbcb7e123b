"""The default configuration is never an open relay, whatever the address trick.

The RCPT ACL of etc/mta.conf runs through the engine as the SMTP session
would run it: the RCPT argument parsed by mta.message.address into mta's
internal form (an unqualified one qualified), from a client that is not in
relay_from_hosts and did not authenticate.  Each trick of
research/security.md §3 must be refused, or accepted only for an address
that routing then delivers on this machine.  Tricks the address parser
already refuses never reach the ACL (the session answers 501).

The host under test is relay.example (its primary_hostname); target.example
is someone else's domain.  DNS is a loopback server that knows nothing, so
remote lookups fail fast.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.errors import AddressError
from mta.message.address import parse_envelope_address, qualify
from mta.receive.acl import AclContext, AclEngine, AclStage
from mta.route.context import RoutingContext
from mta.route.engine import RoutingEngine
from mta.route.item import AddressItem
from mta.runtime import build_runtime
from tests.support.dnsserver import DnsTestServer

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "etc" / "mta.conf"
LOCAL_TRANSPORTS = {"local_delivery", "address_pipe", "address_file", "address_directory"}

# research/security.md §3, by number; each RCPT argument as a client sends it.
TRICKS = [
    ("1 plain relay", "<user@target.example>"),
    ("2 percent hack", "<user%target.example@relay.example>"),
    ("3 percent hack via the relay's IP literal", "<user%target.example@[127.0.0.1]>"),
    ("4 quoted local part with @", '<"user@target.example"@relay.example>'),
    ("5 quoted percent hack", '<"user%target.example"@relay.example>'),
    ("6 double @", "<user@target.example@relay.example>"),
    ("7 source route", "<@relay.example:user@target.example>"),
    ("8 multi-hop source route", "<@relay.example,@other.example:user@target.example>"),
    ("9 bang path", "<target.example!user@relay.example>"),
    ("10 bare bang path", "<target.example!user>"),
    ("11 quoted bang path", '<"target.example!user"@relay.example>'),
    ("12 trailing dot", "<user@target.example.>"),
    ("13a percent hack with trailing dot", "<user%target.example@relay.example.>"),
    ("13b upper-case local domain", "<user@RELAY.EXAMPLE>"),
    ("14 foreign IP literal", "<user@[198.51.100.7]>"),
    ("15a suffix confusion", "<user@relay.example.target.example>"),
    ("15b prefix confusion", "<user@target.example.relay.example>"),
    ("16 backslash-escaped @", "<user\\@target.example@relay.example>"),
    ("20 postmaster elsewhere", "<postmaster@target.example>"),
    ("21a localhost", "<user@localhost>"),
    ("21b percent hack via localhost", "<user%target.example@localhost>"),
    ("22 quoted full address, unqualified", '<"user@target.example">'),
    ("23a pipe in the local part", "<user|/bin/sh@relay.example>"),
    ("23b file as the local part", "</tmp/x@relay.example>"),
    ("23c traversal", "<../../x@relay.example>"),
    ("23d leading dot", "<.hidden@relay.example>"),
    ("23e traversal elsewhere", "<a/../../x@target.example>"),
    ("positive control: postmaster here", "<postmaster@relay.example>"),
    ("positive control: postmaster, upper case", "<Postmaster@Relay.Example>"),
]

CLIENTS = ["203.0.113.9", "2001:db8:ffff::9"]
HELOS = ["relay.example", "[127.0.0.1]", "localhost", "[203.0.113.9]"]
SENDERS = ["postmaster@relay.example", "", "user@[127.0.0.1]", "user@target.example"]


@pytest.fixture(scope="module")
def relay_host(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The default configuration, as shipped, for the host relay.example."""
    root = tmp_path_factory.mktemp("relay")
    (root / "aliases").write_text("postmaster: root\n")
    with DnsTestServer({}) as dns:
        text = f"primary_hostname = relay.example\ndns_servers = {dns.server_spec}\n" + DEFAULT_CONFIG.read_text()
        (root / "mta.conf").write_text(text)
        macros = {"SPOOL": str(root / "spool"), "ALIASES": str(root / "aliases"), "MAIL_DIR": str(root / "mail")}
        runtime = build_runtime(load_config(str(root / "mta.conf"), macros))
        yield runtime, AclEngine(runtime)


def _check(relay_host, argument: str, host: str, helo: str, sender: str, strip_dot: bool = False) -> str:  # type: ignore[no-untyped-def]
    """What becomes of one RCPT: "syntax" (refused by the parser), the ACL's verb, or "local"."""
    runtime, engine = relay_host
    try:
        address = parse_envelope_address(argument, strip_trailing_dot=strip_dot)
    except AddressError:
        return "syntax"
    address = qualify(address, runtime.config.qualify_recipient)
    ctx = AclContext(
        AclStage.RCPT,
        host_address=host,
        helo_name=helo,
        sender_address=sender,
        recipient=address,
        rcpt_count=1,
        smtp_command=f"RCPT TO:{argument}",
    )
    result = asyncio.run(engine.check(ctx))
    if not result.accepted:
        return result.verb
    # Accepted: it must be delivered here, to a mailbox, never sent on.
    routing = RoutingEngine(runtime.directors, runtime.routers, runtime.config)
    outcome = routing.route(
        [AddressItem(address)], RoutingContext(runtime.config, sender, transports=runtime.transports)
    )
    assert outcome.accepted and not outcome.failed and not outcome.deferred, (argument, outcome)
    for item in outcome.accepted:
        assert item.transport_name in LOCAL_TRANSPORTS and not item.hosts, (argument, item)
    return "local"


@pytest.mark.parametrize(("trick", "argument"), TRICKS, ids=[t for t, _ in TRICKS])
def test_no_address_trick_relays(relay_host, trick: str, argument: str) -> None:  # type: ignore[no-untyped-def]
    for host in CLIENTS:
        for strip_dot in (False, True):
            verdict = _check(relay_host, argument, host, "relay.example", "postmaster@relay.example", strip_dot)
            if trick.startswith("positive control"):
                assert verdict == "local", (argument, host)
            else:
                assert verdict in ("syntax", "deny", "defer"), (argument, host, strip_dot, verdict)


@pytest.mark.parametrize(
    "argument",
    ["<user@target.example>", "<user%target.example@relay.example>", '<"user@target.example"@relay.example>'],
)
def test_no_helo_or_sender_makes_a_client_trusted(relay_host, argument: str) -> None:  # type: ignore[no-untyped-def]
    for host, helo, sender in itertools.product(CLIENTS, HELOS, SENDERS):
        assert _check(relay_host, argument, host, helo, sender) in ("deny", "defer"), (host, helo, sender)


def test_relay_denial_says_relay_not_permitted(relay_host) -> None:  # type: ignore[no-untyped-def]
    _runtime, engine = relay_host
    ctx = AclContext(AclStage.RCPT, host_address="203.0.113.9", helo_name="x", sender_address="a@b.example",
                     recipient="user@target.example")  # fmt: skip
    result = asyncio.run(engine.check(ctx))
    assert (result.verb, result.user_message) == ("deny", "relay not permitted")


def test_the_relay_hosts_and_authenticated_clients_may_relay(relay_host) -> None:  # type: ignore[no-untyped-def]
    _runtime, engine = relay_host
    for fields in ({"host_address": "127.0.0.1"}, {"host_address": "::1"},
                   {"host_address": "203.0.113.9", "authenticator": "PLAIN", "authenticated_id": "joe"}):  # fmt: skip
        ctx = AclContext(AclStage.RCPT, sender_address="a@b.example", recipient="user@target.example", **fields)
        assert asyncio.run(engine.check(ctx)).verb == "accept", fields
        assert ctx.message.submission is not None  # control = submission


def test_unknown_local_users_are_refused_at_rcpt(relay_host) -> None:  # type: ignore[no-untyped-def]
    _runtime, engine = relay_host
    ctx = AclContext(AclStage.RCPT, host_address="203.0.113.9", sender_address="", recipient="nosuchuser@relay.example")
    result = asyncio.run(engine.check(ctx))
    assert (result.verb, result.user_message) == ("deny", "Unknown user")


def test_a_local_submission_over_smtp_is_accepted(relay_host) -> None:  # type: ignore[no-untyped-def]
    _runtime, engine = relay_host
    ctx = AclContext(
        AclStage.RCPT, host_address=None, sender_address="root@relay.example", recipient="x@target.example"
    )
    assert asyncio.run(engine.check(ctx)).verb == "accept"
