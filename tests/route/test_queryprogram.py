"""The queryprogram router, end to end: real shell scripts run as real child processes.

The scripts live in a directory every user can read, because when the tests
run as root the router runs them as mta_user (mail), never as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mta.config.loader import Config, load_config
from mta.errors import ConfigError, DeferError, FailError
from mta.route.context import RoutingContext
from mta.route.engine import RoutingEngine, RoutingOutcome
from mta.route.item import AddressItem
from mta.route.routers._common import FreezeError
from mta.route.routers.queryprogram import parse_keyed_fields, split_addresses, split_command
from mta.runtime import build_driver
from mta.taint import Tainted, is_tainted
from tests.support.dnsserver import DnsTestServer
from tests.support.users import absent_group, absent_user

BASE = """\
spool_directory = {spool}
primary_hostname = mail.example.com
domainlist local_domains = example.com
dns_servers = {dns}
"""

FALLBACK = """\
fallback:
  driver = domainlist
  transport = remote_smtp
  route_list = * 198.51.100.99
"""

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def scripts() -> Iterator[Path]:
    """A directory of scripts readable (and an out/ directory writable) by anyone."""
    directory = Path(tempfile.mkdtemp(prefix="mta-qp-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        out = directory / "out"
        out.mkdir()
        out.chmod(0o777)
        yield directory
    finally:
        shutil.rmtree(directory)


def script(directory: Path, body: str, name: str = "query") -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).strip() + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def dns(dns_server: DnsTestServer) -> DnsTestServer:
    dns_server.set_records(
        {
            "smart.example.net": {"A": ["198.51.100.25"]},
            "hubmx.example.org": {"MX": [(10, "hub1.example.org"), (20, "hub2.example.org")]},
            "hub1.example.org": {"A": ["198.51.100.51"]},
            "hub2.example.org": {"A": ["198.51.100.52"]},
        }
    )
    return dns_server


def load(tmp_path: Path, dns: DnsTestServer, routers: str) -> tuple[Config, RoutingEngine]:
    path = tmp_path / "mta.conf"
    path.write_text(BASE.format(spool=tmp_path / "spool", dns=dns.server_spec) + "begin routers\n" + routers)
    config = load_config(str(path))
    return config, RoutingEngine([], [build_driver(spec)[0] for spec in config.drivers["routers"]], config)


def qp_router(command: str, extra: str = "") -> str:
    return (
        "qp:\n  driver = queryprogram\n  transport = remote_smtp\n  domains = qp.example\n"
        f"  command = {command}\n  timeout = 10s\n{extra}"
    )


def route(
    tmp_path: Path, dns: DnsTestServer, routers: str, address: str = "bob@qp.example", **ctx_fields: Any
) -> RoutingOutcome:
    config, engine = load(tmp_path, dns, routers)
    ctx_fields.setdefault("sender_address", "sender@example.com")
    return engine.route([AddressItem(address)], RoutingContext(config, **ctx_fields))


def reply_router(scripts: Path, reply: str, extra: str = "") -> str:
    """A queryprogram whose command prints `reply`."""
    (scripts / "reply.txt").write_text(reply + "\n")
    (scripts / "reply.txt").chmod(0o644)
    return qp_router(str(script(scripts, f"cat {scripts}/reply.txt")), extra) + FALLBACK


def accepted(outcome: RoutingOutcome) -> AddressItem:
    assert not outcome.failed and not outcome.deferred, (outcome.failed, outcome.deferred)
    assert len(outcome.accepted) == 1, outcome.accepted
    return outcome.accepted[0]


def failed(outcome: RoutingOutcome) -> FailError:
    assert not outcome.accepted and not outcome.deferred, (outcome.accepted, outcome.deferred)
    return outcome.failed[0][1]


def deferred(outcome: RoutingOutcome) -> DeferError:
    assert not outcome.accepted and not outcome.failed, (outcome.accepted, outcome.failed)
    return outcome.deferred[0][1]


def rows(item: AddressItem) -> list[tuple[str, str | None, int | None]]:
    return [(h.name, h.address, h.port) for h in item.hosts]


# -- replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "transport", "hosts", "data"),
    [
        ("ACCEPT", "remote_smtp", [], None),
        (
            'ACCEPT TRANSPORT=special HOSTS=198.51.100.1::2525 DATA="hello world"',
            "special",
            [("198.51.100.1", "198.51.100.1", 2525)],
            "hello world",
        ),
        ("ACCEPT hosts=smart.example.net lookup=byname", "remote_smtp", [("smart.example.net", "198.51.100.25", None)],
         None),
        (
            "accept HOSTS=hubmx.example.org LOOKUP=bydns",
            "remote_smtp",
            [("hub1.example.org", "198.51.100.51", None), ("hub2.example.org", "198.51.100.52", None)],
            None,
        ),
        ("ACCEPT HOSTS = \"198.51.100.1 : 198.51.100.2\"", "remote_smtp",
         [("198.51.100.1", "198.51.100.1", None), ("198.51.100.2", "198.51.100.2", None)], None),
        ("ACCEPT smart.example.net byname special", "special", [("smart.example.net", "198.51.100.25", None)], None),
        ("ACCEPT 198.51.100.1:198.51.100.2", "remote_smtp",
         [("198.51.100.1", "198.51.100.1", None), ("198.51.100.2", "198.51.100.2", None)], None),
        ("\n\n  ACCEPT DATA=x  \nignored second line", "remote_smtp", [], "x"),
    ],
    ids=["bare", "keyed", "lowercase-keys", "bydns", "quoted-hosts", "positional", "positional-list", "first-line"],
)
def test_accept(
    tmp_path: Path, dns: DnsTestServer, scripts: Path, reply: str, transport: str, hosts: list[Any], data: str | None
) -> None:
    item = accepted(route(tmp_path, dns, reply_router(scripts, reply)))
    assert item.router_name == "qp"
    assert item.transport_name == transport
    assert rows(item) == hosts
    assert item.address_data == data


@pytest.mark.parametrize(
    ("reply", "extra", "router_name"),
    [("PASS", "  no_more\n", "fallback"), ("DECLINE", "", "fallback"), ("decline not mine", "", "fallback")],
)
def test_pass_and_decline_go_on(
    tmp_path: Path, dns: DnsTestServer, scripts: Path, reply: str, extra: str, router_name: str
) -> None:
    assert accepted(route(tmp_path, dns, reply_router(scripts, reply, extra))).router_name == router_name


def test_decline_respects_no_more(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    assert failed(route(tmp_path, dns, reply_router(scripts, "DECLINE", "  no_more\n"))).message == (
        "Unrouteable address"
    )


@pytest.mark.parametrize(
    ("reply", "kind", "message"),
    [
        ("FAIL no such user here", "failed", "no such user here"),
        ("FAIL", "failed", "forced rejection"),
        ("DEFER try later", "deferred", "try later"),
        ("DEFER", "deferred", "forced defer"),
        ("FREEZE look at me", "frozen", "look at me"),
        ("BOGUS stuff", "deferred", "qp router: bad command yield: BOGUS stuff"),
        ("", "deferred", "qp router: command failed to return data"),
        ("ACCEPT HOSTS=nowhere.example.org", "deferred", 'lookup of host "nowhere.example.org" failed in qp router'),
        ("ACCEPT HOSTS=x LOOKUP=sideways", "deferred", 'qp router: bad lookup type "sideways" yielded by command'),
        ("ACCEPT HOSTS=198.51.100.1::0", "deferred", "qp router: bad host list yielded by command"),
        ("ACCEPT HOSTS=\"unterminated", "deferred", "qp router: bad ACCEPT data yielded by command"),
        ("REDIRECT |/bin/sh", "deferred", "qp router: error in redirect data"),
        ("REDIRECT /etc/passwd", "deferred", "qp router: error in redirect data"),
        ("REDIRECT a@b@c", "deferred", "qp router: error in redirect data"),
        ("REDIRECT", "deferred", "qp router: error in redirect data: no addresses supplied"),
    ],
)
def test_refusals(tmp_path: Path, dns: DnsTestServer, scripts: Path, reply: str, kind: str, message: str) -> None:
    outcome = route(tmp_path, dns, reply_router(scripts, reply))
    if kind == "failed":
        assert failed(outcome).message == message
    else:
        error = deferred(outcome)
        assert error.message.startswith(message), error.message
        assert isinstance(error, FreezeError) == (kind == "frozen")


def test_unknown_transport_defers_when_transports_are_known(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    outcome = route(tmp_path, dns, reply_router(scripts, "ACCEPT TRANSPORT=nosuch"), transports={"remote_smtp": None})
    assert deferred(outcome).message == "qp router: unknown transport name nosuch yielded by command"


def test_redirect_replaces_the_address(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    outcome = route(tmp_path, dns, reply_router(scripts, 'REDIRECT a@example.net, <b@example.org> carol "d e"@x.ex'))
    assert not outcome.failed and not outcome.deferred
    got = sorted(item.address for item in outcome.accepted)
    assert got == ['"d e"@x.ex', "a@example.net", "b@example.org", "carol@mail.example.com"]
    for item in outcome.accepted:
        assert item.router_name == "fallback"
        assert item.parent is not None and item.parent.address == "bob@qp.example"
        assert is_tainted(item.address)


# -- the program: exit status, signals, timeout -----------------------------------------------


def test_non_zero_exit_defers_with_stderr(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, "echo ACCEPT\necho 'database is down' >&2\nexit 3")
    error = deferred(route(tmp_path, dns, qp_router(str(command))))
    assert error.message == "qp router: command returned non-zero code 3: database is down"


def test_killed_command_defers(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, "kill -9 $$")
    assert deferred(route(tmp_path, dns, qp_router(str(command)))).message == "qp router: command killed by signal 9"


def test_missing_program_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    error = deferred(route(tmp_path, dns, qp_router("/nonexistent/query")))
    assert error.message.startswith("qp router couldn't create child process for /nonexistent/query")


def test_timeout_kills_the_whole_process_group(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    out = scripts / "out"
    command = script(scripts, f"sleep 60 &\necho $! > {out}/child\necho $$ > {out}/parent\nwait")
    started = time.monotonic()
    error = deferred(route(tmp_path, dns, qp_router(str(command)).replace("timeout = 10s", "timeout = 1s")))
    assert error.message == "qp router: command timed out"
    assert time.monotonic() - started < 6
    for name in ("parent", "child"):
        assert gone(int((out / name).read_text())), name


def gone(pid: int, wait: float = 3.0) -> bool:
    """True once `pid` has ended: SIGKILL reaches the other members of a group a moment later."""
    deadline = time.monotonic() + wait
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def running(pid: int) -> bool:
    """True if `pid` is alive; a zombie is dead (a container's init may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_long_output_is_read_to_the_end(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    # Far more than a pipe holds: the router must keep reading or the program never ends.
    command = script(scripts, 'echo "ACCEPT DATA=big"\nhead -c 3000000 /dev/zero')
    item = accepted(route(tmp_path, dns, qp_router(str(command))))
    assert item.address_data == "big"


def test_endless_output_times_out(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, "exec yes ACCEPT")
    started = time.monotonic()
    error = deferred(route(tmp_path, dns, qp_router(str(command)).replace("timeout = 10s", "timeout = 1s")))
    assert error.message == "qp router: command timed out"
    assert time.monotonic() - started < 6


def test_output_that_is_not_utf8_defers(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, "printf 'ACCEPT DATA=\\377\\n'")
    assert deferred(route(tmp_path, dns, qp_router(str(command)))).message == "qp router: command output is not UTF-8"


# -- identity, environment, arguments ---------------------------------------------------------


def data_of(tmp_path: Path, dns: DnsTestServer, command: str, extra: str = "", **kw: Any) -> str:
    item = accepted(route(tmp_path, dns, qp_router(command, extra), **kw))
    assert item.address_data is not None
    return item.address_data


ID_SCRIPT = 'echo "ACCEPT DATA=$(id -u):$(id -g):$(id -G)"'


def test_runs_as_an_unprivileged_user(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    uid, gid, groups = data_of(tmp_path, dns, str(script(scripts, ID_SCRIPT))).split(":")
    if AS_ROOT:
        mail = pwd.getpwnam("mail")
        assert uid != "0"
        assert (int(uid), int(gid)) == (mail.pw_uid, mail.pw_gid)
        assert groups.split() == [gid]  # no supplementary groups inherited from root
    else:
        assert int(uid) == os.getuid()


@pytest.mark.skipif(not AS_ROOT, reason="changing user needs root")
def test_command_user_and_group(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = str(script(scripts, ID_SCRIPT))
    nobody = pwd.getpwnam("nobody")
    uid, gid, _ = data_of(tmp_path, dns, command, "  command_user = nobody\n").split(":")
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    uid, gid, _ = data_of(tmp_path, dns, command, "  command_user = nobody\n  command_group = mail\n").split(":")
    assert (int(uid), int(gid)) == (nobody.pw_uid, pwd.getpwnam("mail").pw_gid)
    uid, _, _ = data_of(tmp_path, dns, command, "  command_user = 4242\n  command_group = 4242\n").split(":")
    assert uid == "4242"


@pytest.mark.skipif(not AS_ROOT, reason="changing user needs root")
def test_root_is_refused(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    error = deferred(route(tmp_path, dns, qp_router(str(script(scripts, ID_SCRIPT)), "  command_user = root\n")))
    assert "refusing to run the command as root" in error.message


@pytest.mark.parametrize(
    ("extra", "message"),
    [(f"  command_user = {absent_user('ghost')}\n", "is not a known user"),
     (f"  command_group = {absent_group('ghost')}\n", "known group")],
    ids=["user", "group"],  # the names are random: ids must not be, for pytest-xdist
)
def test_unknown_user_or_group_defers(
    tmp_path: Path, dns: DnsTestServer, scripts: Path, extra: str, message: str
) -> None:
    assert message in deferred(route(tmp_path, dns, qp_router(str(script(scripts, ID_SCRIPT)), extra))).message


def test_environment_is_minimal(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(
        scripts,
        'echo "ACCEPT DATA=\\"$LOCAL_PART|$DOMAIN|$SENDER|$PATH|${HOME-unset}|${MTA_TEST_SECRET-unset}|$(umask)\\""',
    )
    os.environ["MTA_TEST_SECRET"] = "leaked"
    try:
        data = data_of(tmp_path, dns, str(command))
    finally:
        del os.environ["MTA_TEST_SECRET"]
    assert data == "bob|qp.example|sender@example.com|/bin:/usr/bin|unset|unset|0077"


def test_current_directory(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = str(script(scripts, 'echo "ACCEPT DATA=$(pwd)"'))
    assert data_of(tmp_path, dns, command) == "/"
    assert data_of(tmp_path, dns, command, f"  current_directory = {scripts}/out\n") == f"{scripts}/out"


def test_each_argument_is_expanded_separately(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, 'echo "ACCEPT DATA=\\"$#|$1|$2|$3\\""')
    data = data_of(tmp_path, dns, f'{command} $local_part "$domain x" \'lit x\'', address='"a b;c"@qp.example')
    # The local part stays one argument although it contains a space.
    assert data == "3|a b;c|qp.example x|lit x"


def test_tainted_value_is_allowed_as_an_argument(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, 'echo "ACCEPT DATA=$1"')
    data = data_of(tmp_path, dns, f"{command} $sender_address", sender_address=Tainted("evil;rm@example.com"))
    assert data == "evil;rm@example.com"


def test_tainted_command_name_is_refused(tmp_path: Path, dns: DnsTestServer, scripts: Path) -> None:
    command = script(scripts, 'echo "ACCEPT"')
    outcome = route(tmp_path, dns, qp_router("$sender_address"), sender_address=Tainted(str(command)))
    assert "tainted command name" in deferred(outcome).message
    # The local part is message data too, even when it looks like a path.
    local_part = str(command).replace("/", "=")
    outcome = route(tmp_path, dns, qp_router("${tr{$local_part}{=}{/}}"), f"{local_part}@qp.example")
    assert "tainted command name" in deferred(outcome).message


@pytest.mark.parametrize("option", ["command_user", "command_group", "current_directory"])
def test_tainted_identity_or_directory_is_refused(
    tmp_path: Path, dns: DnsTestServer, scripts: Path, option: str
) -> None:
    command = str(script(scripts, 'echo "ACCEPT"'))
    outcome = route(tmp_path, dns, qp_router(command, f"  {option} = $sender_address\n"), sender_address=Tainted("x"))
    assert f'tainted {option} "x" refused' in deferred(outcome).message


def test_relative_command_from_expansion_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    outcome = route(tmp_path, dns, qp_router("${lc:BIN/ECHO}"))
    assert "is not an absolute path" in deferred(outcome).message


@pytest.mark.parametrize(
    ("command", "message"),
    [("echo ACCEPT", "is not an absolute path"), ('"/bin/echo', "unterminated quote"), ("", "command must be set")],
)
def test_check_refuses_bad_commands(tmp_path: Path, dns: DnsTestServer, command: str, message: str) -> None:
    option = f"  command = {command}\n" if command else ""
    config, engine = load(tmp_path, dns, "qp:\n  driver = queryprogram\n" + option)
    with pytest.raises(ConfigError, match=message):
        engine.routers[0].check(config)


# -- parsing helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("/bin/x a b", ["/bin/x", "a", "b"]),
        ('/bin/x "a b" \'c d\'', ["/bin/x", "a b", "c d"]),
        ('/bin/x "a\\"b"', ["/bin/x", 'a"b']),
        ("  /bin/x  ", ["/bin/x"]),
    ],
)
def test_split_command(text: str, want: list[str]) -> None:
    assert split_command(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("HOSTS=a:b LOOKUP=byname", {"hosts": "a:b", "lookup": "byname"}),
        ('data="x y" Transport=t', {"data": "x y", "transport": "t"}),
        ("DATA = spaced OTHER=ignored", {"data": "spaced"}),
        ("DATA=", {"data": ""}),
    ],
)
def test_parse_keyed_fields(text: str, want: dict[str, str]) -> None:
    assert parse_keyed_fields(text) == want


@pytest.mark.parametrize("text", ["HOSTS", "=x", "HOSTS x=y"])
def test_parse_keyed_fields_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_keyed_fields(text)


def test_split_addresses() -> None:
    assert split_addresses('a@b, c@d e@f,,"g h"@i <j k@l>') == ["a@b", "c@d", "e@f", '"g h"@i', "<j k@l>"]
