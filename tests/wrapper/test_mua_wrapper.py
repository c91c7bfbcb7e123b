"""mua_wrapper = true: one synchronous SMTP transaction, exit 0 or exit 1 with the reason.

One test (or group) per numbered point of the issue, against real aiosmtpd
smart hosts on loopback (tests/support/sink.py) and raw fake servers that
refuse or hang (tests/support/fakesmtp.py), through the real `mta` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.mta import COVERAGE_VARIABLES, MTA, MtaEnv
from tests.support.nobody import Nobody
from tests.support.sink import SmtpSink, free_port
from tests.support.tls import Pki, pki
from tests.support.users import absent_group, absent_user

__all__ = ["pki"]

MESSAGE = "From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: report\n\nHello Bob.\n"


def wrapper_config(env: MtaEnv, hosts: str, extra_main: str = "", transport: str = "", routers: str = "") -> None:
    """A mua_wrapper config: everything to `hosts` (Exim's host list syntax) by SMTP."""
    env.config.write_text(
        f"""\
mua_wrapper = true
primary_hostname = laptop.example.com
qualify_domain = example.com
domainlist local_domains =
spool_directory = {env.root}/no-such-spool
log_file_path = {env.root}/log/%slog
{extra_main}
begin routers
{routers}
smarthost:
  driver = domainlist
  transport = smarthost_smtp
  route_list = * "{hosts}" byname
  self = send

begin transports
smarthost_smtp:
  driver = smtp
  allow_localhost
  connect_timeout = 2s
  command_timeout = 2s
  data_timeout = 2s
  final_timeout = 2s
{transport}
"""
    )


def with_aliases(env: MtaEnv, aliases: str, options: str = "") -> None:
    """Make example.com local with an aliasfile director reading `aliases` (after wrapper_config)."""
    path = env.root / "aliases"
    path.write_text(aliases)
    env.config.write_text(
        env.config.read_text().replace("domainlist local_domains =\n", "domainlist local_domains = example.com\n")
        + f"\nbegin directors\naliases:\n  driver = aliasfile\n  file = {path}\n  search_type = lsearch\n{options}"
    )


def host_spec(*servers: SmtpSink | FakeSmtpServer | int) -> str:
    """`127.0.0.1::port` items of a colon-separated host list."""
    ports = [s if isinstance(s, int) else s.port for s in servers]
    return " : ".join(f"127.0.0.1::{p}" for p in ports)


def closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


def log(env: MtaEnv) -> str:
    path = env.root / "log" / "mainlog"
    return path.read_text() if path.exists() else ""


# -- 1. no daemon, no queue --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["-bd"], ["-bd", "-q30m"], ["-bs"], ["-q"], ["-qf"], ["-M", "1xVaDV-0000000057p-1zBZ"]],
    ids=["bd", "bd-q", "bs", "q", "qf", "M"],
)
def test_daemon_and_queue_modes_are_refused(mta_env: MtaEnv, sink: SmtpSink, args: list[str]) -> None:
    wrapper_config(mta_env, host_spec(sink))
    result = mta_env.run(*args)
    assert result.returncode == 1
    assert "mua_wrapper is set" in result.stderr
    assert len(result.stderr.splitlines()) == 1


# -- 2. synchronous delivery; queueing settings ignored ----------------------------------------


@pytest.mark.parametrize("flags", [[], ["-odq"], ["-odb"], ["-odi"]], ids=["default", "odq", "odb", "odi"])
def test_delivered_before_exit_whatever_the_queueing_settings(
    mta_env: MtaEnv, sink: SmtpSink, flags: list[str]
) -> None:
    wrapper_config(mta_env, host_spec(sink), extra_main="queue_only = true\nqueue_smtp_domains = *\n")
    result = mta_env.run(*flags, "-t", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    # Delivered by the time the command returned: no background process, no queue.
    assert [m.rcpt_tos for m in sink.messages] == [["bob@example.org"]]
    assert b"Subject: report" in sink.messages[0].content
    assert not (mta_env.root / "no-such-spool").exists()


# -- 3. aliasing allowed, but one transaction to one host list ---------------------------------


def test_aliases_may_expand_to_several_remote_addresses(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink))
    with_aliases(mta_env, "team: carol@example.org, dave@example.org\n")
    result = mta_env.run("team@example.com", "bob@example.org", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert len(sink.messages) == 1  # one transaction
    assert sorted(sink.messages[0].rcpt_tos) == ["bob@example.org", "carol@example.org", "dave@example.org"]


def test_addresses_routed_to_different_hosts_fail_the_whole_message(mta_env: MtaEnv, sink: SmtpSink) -> None:
    other = SmtpSink().start()
    try:
        routers = f"""\
special:
  driver = domainlist
  transport = smarthost_smtp
  route_list = example.net "{host_spec(other)}" byname
  self = send
"""
        wrapper_config(mta_env, host_spec(sink), routers=routers)
        result = mta_env.run("bob@example.org", "eve@example.net", input=MESSAGE)
        assert result.returncode == 1
        assert "same transport and hosts" in result.stderr
        assert sink.messages == [] and other.messages == []
    finally:
        other.stop()


def test_routing_failure_fails_the_whole_message(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink))
    # Only example.org has a route: the second address cannot be routed.
    mta_env.config.write_text(mta_env.config.read_text().replace("  route_list = * ", "  route_list = example.org "))
    result = mta_env.run("bob@example.org", "mallory@unrouted.example", input=MESSAGE)
    assert result.returncode == 1
    assert "mallory@unrouted.example" in result.stderr and "Unrouteable address" in result.stderr
    assert sink.messages == []


def test_a_defer_alias_fails_the_whole_message_with_its_reason(mta_env: MtaEnv, sink: SmtpSink) -> None:
    """A routing deferral is a failure like any other: there is no queue to keep the message in."""
    wrapper_config(mta_env, host_spec(sink))
    with_aliases(mta_env, "team: :defer: the team list is being rebuilt\nbob: bob@example.org\n", "  allow_defer\n")
    result = mta_env.run("bob@example.com", "team@example.com", input=MESSAGE)
    assert result.returncode == 1
    assert result.stderr.startswith("mta: routing failed for team@example.com: "), result.stderr
    assert "the team list is being rebuilt" in result.stderr
    assert sink.messages == []  # bob's copy was not sent either: one transaction or none
    assert any(" ** " in line and "the team list is being rebuilt" in line for line in log(mta_env).splitlines())


def test_a_dns_timeout_fails_the_whole_message_with_its_reason(
    mta_env: MtaEnv, sink: SmtpSink, dns_server: DnsTestServer
) -> None:
    dns_server.never_answer("slow.example.net")
    routers = """\
dnslookup:
  driver = lookuphost
  domains = slow.example.net
  transport = smarthost_smtp
"""
    wrapper_config(
        mta_env,
        host_spec(sink),
        extra_main=f"dns_servers = {dns_server.server_spec}\ndns_retrans = 1s\ndns_retry = 1\n",
        routers=routers,
    )
    result = mta_env.run("bob@example.org", "carol@slow.example.net", input=MESSAGE)
    assert result.returncode == 1
    assert result.stderr.startswith("mta: routing failed for carol@slow.example.net: "), result.stderr
    assert "timed out" in result.stderr
    assert dns_server.query_count("slow.example.net") >= 2  # asked, and asked again: a real timeout
    assert sink.messages == []


def test_aliases_that_discard_everything_deliver_nothing_and_succeed(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink))
    with_aliases(mta_env, "devnull: :blackhole:\n", "  allow_blackhole\n")
    result = mta_env.run("devnull@example.com", input=MESSAGE)
    assert (result.returncode, result.stderr) == (0, "")
    assert sink.messages == []
    assert log(mta_env).splitlines()[-1].endswith(" Completed")


def test_a_local_transport_is_refused(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink), extra_main="domainlist local_domains = example.com\n",
                   transport=f"local_mbox:\n  driver = appendfile\n  file = {mta_env.root}/mbox\n")
    mta_env.config.write_text(
        mta_env.config.read_text().replace("domainlist local_domains =\n", "")
        + "\nbegin directors\neveryone:\n  driver = smartuser\n  transport = local_mbox\n"
    )
    result = mta_env.run("bob@example.com", "carol@example.org", input=MESSAGE)
    assert result.returncode == 1
    assert result.stderr == (
        "mta: bob@example.com routes to the local_mbox transport; mua_wrapper delivers only by SMTP\n"
    )
    assert sink.messages == [] and not (mta_env.root / "mbox").exists()


@pytest.mark.parametrize(
    ("args", "message_text", "extra_main", "reason"),
    [
        ([], MESSAGE, "", "no recipients given on the command line (use -t to take them from the headers)"),
        (["-t"], "Subject: nobody\n\nhi\n", "", "no recipients found in To:, Cc: or Bcc: (with -t)"),
        (["bob@example.org"], MESSAGE + "x" * 2000, "message_size_limit = 1K\n", "message too big"),
        (["bob@exa mple.org"], MESSAGE, "", 'bad recipient address "bob@exa mple.org"'),
    ],
    ids=["no-recipients", "t-without-recipients", "too-big", "bad-recipient"],
)
def test_a_refused_submission_says_why(
    mta_env: MtaEnv, sink: SmtpSink, args: list[str], message_text: str, extra_main: str, reason: str
) -> None:
    wrapper_config(mta_env, host_spec(sink), extra_main=extra_main)
    result = mta_env.run(*args, input=message_text)
    assert result.returncode == 1
    assert result.stderr.startswith(f"mta: {reason}"), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert sink.messages == []


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_mta_user_must_exist_and_an_unknown_mta_group_means_its_own(mta_env: MtaEnv, sink: SmtpSink) -> None:
    ghost = absent_user("ghost")
    wrapper_config(mta_env, host_spec(sink), extra_main=f"mta_user = {ghost}\n")
    refused = mta_env.run("bob@example.org", input=MESSAGE)
    assert refused.returncode == 1
    assert refused.stderr == f'mta: configuration error: mta_user "{ghost}" does not exist\n'
    assert sink.messages == []
    wrapper_config(mta_env, host_spec(sink), extra_main=f"mta_user = nobody\nmta_group = {absent_group('ghost')}\n")
    sent = mta_env.run("bob@example.org", input=MESSAGE)
    assert (sent.returncode, sent.stderr) == (0, "")
    assert [m.rcpt_tos for m in sink.messages] == [["bob@example.org"]]


# -- 4. no partial delivery: 4xx and 5xx alike fail everything ---------------------------------


@pytest.mark.parametrize("reply", ["550 5.1.1 No such user here", "451 4.3.0 Try again later"], ids=["5xx", "4xx"])
def test_one_refused_recipient_of_three_fails_all(mta_env: MtaEnv, sink: SmtpSink, reply: str) -> None:
    sink.rcpt_replies["carol@example.org"] = reply
    wrapper_config(mta_env, host_spec(sink))
    result = mta_env.run("bob@example.org", "carol@example.org", "dave@example.org", input=MESSAGE)
    assert result.returncode == 1
    assert sink.messages == []  # nothing was sent to anybody
    assert "carol@example.org" in result.stderr and reply in result.stderr
    assert "host 127.0.0.1 [127.0.0.1]" in result.stderr


def test_4xx_at_mail_fails(mta_env: MtaEnv, sink: SmtpSink) -> None:
    sink.mail_reply = "421 4.7.0 Too busy"
    wrapper_config(mta_env, host_spec(sink))
    result = mta_env.run("bob@example.org", input=MESSAGE)
    assert result.returncode == 1
    assert "421 4.7.0 Too busy" in result.stderr


# -- 5. several smart hosts: go on after a connection failure ----------------------------------


def test_next_smart_host_after_refused_connection(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(closed_port(), sink))
    result = mta_env.run("bob@example.org", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert len(sink.messages) == 1


def test_next_smart_host_after_a_silent_one(mta_env: MtaEnv, sink: SmtpSink) -> None:
    with FakeSmtpServer(greeting=None) as silent:
        wrapper_config(mta_env, host_spec(silent, sink))
        started = time.monotonic()
        result = mta_env.run("bob@example.org", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert len(sink.messages) == 1
    assert time.monotonic() - started < 10


def test_all_smart_hosts_failing_is_a_failure(mta_env: MtaEnv) -> None:
    with FakeSmtpServer(greeting=None) as silent:
        wrapper_config(mta_env, host_spec(closed_port(), silent))
        started = time.monotonic()
        result = mta_env.run("bob@example.org", input=MESSAGE)
    assert result.returncode == 1
    assert time.monotonic() - started < 10  # bounded by the timeouts, never a hang
    assert "bob@example.org" in result.stderr


# -- 6. failure: stderr, log, exit 1, nothing left, never a bounce ------------------------------


def test_failure_is_reported_and_leaves_nothing(mta_env: MtaEnv, sink: SmtpSink) -> None:
    sink.rcpt_replies["bob@example.org"] = "550 5.1.1 No such user"
    wrapper_config(mta_env, host_spec(sink))
    result = mta_env.run("-t", input=MESSAGE)
    assert result.returncode == 1
    assert result.stderr.startswith("mta: delivery to bob@example.org failed: ")
    assert "550 5.1.1 No such user" in result.stderr
    lines = log(mta_env).splitlines()
    assert any(" <= root@example.com U=root P=local S=" in line for line in lines), lines
    assert any(" ** " in line and "550 5.1.1 No such user" in line for line in lines), lines
    assert not (mta_env.root / "no-such-spool").exists()  # no spool, so no bounce either
    assert sink.messages == []


def test_an_unwritable_log_is_not_an_error(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink), extra_main="")
    mta_env.config.write_text(mta_env.config.read_text().replace(
        f"log_file_path = {mta_env.root}/log/%slog", "log_file_path = /proc/no/such/dir/%slog"))
    result = mta_env.run("bob@example.org", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(sink.messages) == 1


# -- 7. no retry data ---------------------------------------------------------------------------


def test_no_retry_data_is_read_or_written(mta_env: MtaEnv) -> None:
    wrapper_config(mta_env, host_spec(closed_port()), extra_main="")
    mta_env.config.write_text(mta_env.config.read_text() + "\nbegin retry\nthis is not a retry rule\n")
    for _ in range(2):
        result = mta_env.run("bob@example.org", input=MESSAGE)
        assert result.returncode == 1
        assert "Connection refused" in result.stderr  # tried each time: no retry time kept
    assert not (mta_env.root / "no-such-spool").exists()


# -- 8. max_rcpt unlimited, fallback_hosts ignored, privileges dropped --------------------------


def test_max_rcpt_does_not_split_the_transaction(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink), transport="  max_rcpt = 2\n")
    rcpts = [f"user{i}@example.org" for i in range(5)]
    result = mta_env.run(*rcpts, input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert [sorted(m.rcpt_tos) for m in sink.messages] == [sorted(rcpts)]


def test_fallback_hosts_are_ignored(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(closed_port()), transport=f"  fallback_hosts = 127.0.0.1::{sink.port}\n")
    result = mta_env.run("bob@example.org", input=MESSAGE)
    assert result.returncode == 1
    assert sink.messages == []


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_drops_to_mta_user_before_talking_to_the_network(open_env: MtaEnv) -> None:
    """The AUTH secret is read after the drop: a root-only file cannot be read, a file of mta_user can."""
    secret = open_env.root / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    server = None
    from tests.support.fakesmtp import SmtpServer

    server = SmtpServer(users={"alice": "s3cret"}, auth_in_clear=True).start()
    try:
        wrapper_config(
            open_env,
            host_spec(server),
            extra_main="mta_user = nobody\nmta_group = nogroup\n",
            transport="  hosts_require_auth = *\n  hosts_avoid_tls = *\n",
        )
        open_env.config.write_text(open_env.config.read_text()
                                  + f"\nbegin authenticators\nplain:\n  driver = plaintext\n  public_name = PLAIN\n"
                                  f"  client_send = ^alice^${{readfile{{{secret}}}{{}}}}\n")
        refused = open_env.run("bob@example.org", input=MESSAGE)
        assert refused.returncode == 1  # root's 0600 file is out of reach once we are nobody
        os.chown(secret, *_nobody_ids())
        accepted = open_env.run("bob@example.org", input=MESSAGE)
        assert accepted.returncode == 0, accepted.stderr
        assert len(server.messages) == 1
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_starts_tls_after_the_drop(open_env: MtaEnv, pki: Pki) -> None:
    """ssl is imported only once the server offers STARTTLS, after the drop to nobody: with a
    Python under /root (as here) that works only because mta keeps its directories reachable."""
    from tests.support.fakesmtp import SmtpServer

    with SmtpServer(starttls=pki.server_context()) as server:
        wrapper_config(open_env, host_spec(server), extra_main="mta_user = nobody\nmta_group = nogroup\n")
        result = open_env.run("bob@example.org", input=MESSAGE)
        assert result.returncode == 0, result.stderr
        [message] = server.messages
    assert message.tls  # unverified (tls_try_verify_hosts): our test CA is not the system's


def _nobody_ids() -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


# -- 9. no root, no spool --------------------------------------------------------------------------


def test_an_ordinary_user_with_no_writable_directory_can_send(open_env: MtaEnv, nobody: Nobody, sink: SmtpSink) -> None:
    wrapper_config(open_env, host_spec(sink))
    open_env.config.write_text(open_env.config.read_text().replace(
        f"log_file_path = {open_env.root}/log/%slog", "log_file_path = /var/log/mta-none/%slog"))
    open_env.config.chmod(0o644)
    result = nobody.run(open_env, "-t", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert len(sink.messages) == 1
    assert sink.messages[0].mail_from == "nobody@example.com"
    assert list(open_env.root.iterdir()) == [open_env.config]  # nothing written anywhere


# -- 10. a light start-up path ------------------------------------------------------------------


# Not on the path (docs/performance.md, "mua_wrapper"): the event loop and DNS code, and what
# start-up work trimmed away: the retry hints (hashlib, typing), socket's and signal's enum
# classes, ssl before a server offers STARTTLS, the idna codec for an address, ipaddress and the
# expansion items, json; string, importlib and warnings (a compiled pattern, and import_module); select;
# re (the patterns on the path have str stand-ins), enum, and collections and functools (mta.memo);
# the expander itself and its lookups (the path's defaults, helo_data and received_header_text,
# expand nothing); modules for one small function: the spooled message's helpers (header_lookup
# lives with the headers), lists' lookup items, and the grouping of several addresses.
NOT_ON_THE_PATH = (
    "asyncio",
    "aiosmtpd",
    "aiosmtplib",
    "dns",
    "mta.hints",
    "hashlib",
    "typing",
    "socket",
    "signal",
    "ssl",
    "encodings.idna",
    "ipaddress",
    "mta.expand.items",
    "mta.expand.expander",
    "mta.expand.lookups",
    "json",
    "string",
    "importlib",
    "warnings",
    "select",
    "re",
    "enum",
    "collections",
    "functools",
    "mta.deliver.message",
    "mta.config.list_lookups",
    "mta.deliver.grouping",
)


def test_the_path_imports_no_asyncio_server_or_dns_code(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink))
    probe = (
        "import sys; from mta.cli import main; rc = main(['-C', sys.argv[1], 'bob@example.org']);"
        f"print(rc, sorted(m for m in {NOT_ON_THE_PATH!r} if m in sys.modules))"
    )
    # Not measured: coverage itself imports much of the list.
    env = {name: value for name, value in os.environ.items() if name not in COVERAGE_VARIABLES}
    result = subprocess.run(
        [sys.executable, "-c", probe, str(mta_env.config)],
        input=MESSAGE.encode(),
        capture_output=True,
        timeout=30,
        env=env,
    )
    assert result.stdout.decode().split("\n")[0] == "0 []", result.stderr.decode()
    assert len(sink.messages) == 1


# -- a real mail client, and cron ---------------------------------------------------------------


def _mailx() -> str | None:
    for name in ("bsd-mailx", "mail.mailutils"):
        for directory in ("/usr/bin", "/bin"):
            path = Path(directory) / name
            if path.exists():
                return str(path)
    return None


def _sendmail_wrapper(env: MtaEnv) -> Path:
    script = env.root / "sendmail"
    script.write_text(f"#!/bin/sh\nexec {MTA} -C {env.config} \"$@\"\n")
    script.chmod(0o755)
    return script


@pytest.mark.skipif(_mailx() is None, reason="no command-line mail client (scripts/test installs bsd-mailx)")
def test_a_real_mail_client_sends_through_mta(mta_env: MtaEnv, sink: SmtpSink) -> None:
    wrapper_config(mta_env, host_spec(sink))
    sendmail = _sendmail_wrapper(mta_env)
    mailrc = mta_env.root / "mailrc"
    mailrc.write_text(f"set sendmail={sendmail}\n")
    home = mta_env.root / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "MAILRC": str(mailrc), "LOGNAME": "root", "USER": "root"}
    mailx = _mailx()
    assert mailx is not None
    result = subprocess.run([mailx, "-s", "from mailx", "bob@example.org"], input=b"Sent by mailx.\n", env=env,
                            capture_output=True, timeout=30, stdin=None)
    assert result.returncode == 0, result.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["bob@example.org"]]
    assert b"Subject: from mailx" in sink.messages[0].content
    assert b"Sent by mailx." in sink.messages[0].content


def test_from_a_cron_like_environment(mta_env: MtaEnv, sink: SmtpSink) -> None:
    """No HOME, no TTY, a minimal PATH, a new session: as cron runs `sendmail -t`."""
    wrapper_config(mta_env, host_spec(sink))
    sendmail = _sendmail_wrapper(mta_env)
    job = "Subject: Cron <root@host> run-parts /etc/cron.daily\nTo: root\n\nThe job's output.\n"
    result = subprocess.run(
        [str(sendmail), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-t"],
        input=job.encode(),
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        start_new_session=True,  # no controlling terminal
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # no HOME, no TTY: nothing complained
    [message] = sink.messages
    assert message.rcpt_tos == ["root@example.com"]  # qualified with qualify_domain
    assert message.mail_from == "root@example.com"  # the caller, found without HOME or LOGNAME
    assert b"From: CronDaemon <root@example.com>" in message.content
    assert b"Subject: Cron <root@host> run-parts /etc/cron.daily" in message.content
