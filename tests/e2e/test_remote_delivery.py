"""Remote delivery end to end: `mta -odi` puts the message on the spool, routes it
(domainlist, lookuphost against a DNS server on loopback, ipliteral) and the smtp
transport hands it to a real aiosmtpd sink; the main log and the queue show the
outcome of every recipient.
"""

from __future__ import annotations

import email
import email.policy
import re

from tests.support.dnsserver import DnsTestServer
from tests.support.mta import MtaEnv
from tests.support.samples import sample_text
from tests.support.sink import Received, SmtpSink, free_port

MESSAGE = "From: alice@example.com\nTo: carol@example.org, dave@example.org\nSubject: notes\n\n.hidden line\nbody\n"

TRANSPORT = """
begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
  connect_timeout = 2s
  command_timeout = 2s
"""


def smarthost(env: MtaEnv, hosts: str) -> None:
    env.write_config(
        f"""
begin routers
smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = * "{hosts}" byname
  self = send
{TRANSPORT}"""
    )


def body_lines(env: MtaEnv) -> list[str]:
    return [line.split(" ", 3)[3] for line in env.log_lines()]


def test_smart_host_delivery_logs_host_and_confirmation(mta_env: MtaEnv, sink: SmtpSink) -> None:
    smarthost(mta_env, f"127.0.0.1::{sink.port}")
    result = mta_env.run("-odi", "-t", "-f", "alice@example.com", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    [message] = sink.messages
    assert sorted(message.rcpt_tos) == ["carol@example.org", "dave@example.org"]  # one transaction
    assert message.mail_from == "alice@example.com"
    assert b"\r\n.hidden line\r\n" in message.content  # dot-stuffing undone by the server: sent right
    lines = body_lines(mta_env)
    # Exim's shape: the first of a transaction "=>", the others "->", with R= T= H= C=.
    deliveries = [line for line in lines if line.startswith(("=> ", "-> "))]
    assert [d.split()[0] for d in deliveries] == ["=>", "->"]
    for line in deliveries:
        assert re.fullmatch(
            r'[=-]> \S+@example\.org R=smarthost T=remote_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\] '
            r'C="250 2\.0\.0 Ok: queued"',
            line,
        ), line
    assert lines[-1] == "Completed"
    assert mta_env.message_ids() == []


def test_per_recipient_outcomes(mta_env: MtaEnv, sink: SmtpSink) -> None:
    """250 for one, 550 for another, 451 for a third: delivered, bounced, deferred.

    The sender is remote, so the bounce for the 550 goes out through the same smart
    host: the sink sees it arrive from <>, naming the refused recipient and the reply."""
    sink.rcpt_replies["bad@example.org"] = "550 5.1.1 No such user"
    sink.rcpt_replies["later@example.org"] = "451 4.2.1 Mailbox busy"
    smarthost(mta_env, f"127.0.0.1::{sink.port}")
    result = mta_env.run("-odi", "-f", "alice@example.net", "good@example.org", "bad@example.org",
                         "later@example.org", input="Subject: x\n\nhello\n")
    assert result.returncode == 0, result.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["good@example.org"], ["alice@example.net"]]
    lines = body_lines(mta_env)
    delivered = r"=> good@example\.org R=smarthost T=remote_smtp H=127\.0\.0\.1 .*"
    assert any(re.fullmatch(delivered, line) for line in lines)
    assert any(line.startswith("** bad@example.org R=smarthost T=remote_smtp: SMTP error from remote mail server "
                               "after RCPT TO:<bad@example.org>: 550 5.1.1 No such user") for line in lines), lines
    assert any(line.startswith("== later@example.org R=smarthost T=remote_smtp defer") and "451 4.2.1 Mailbox busy"
               in line for line in lines), lines
    assert_bounce_for_550(mta_env, sink.messages[1])
    # The deferred recipient stays queued; the delivered and the bounced one are done.
    [message_id] = [i for i in mta_env.message_ids() if "<alice@example.net>" in mta_env.run("-bp", i).stdout]
    listing = mta_env.run("-bp", message_id).stdout
    assert "        D good@example.org" in listing and "        D bad@example.org" in listing
    assert "          later@example.org" in listing


def assert_bounce_for_550(mta_env: MtaEnv, bounce: Received) -> None:
    """An RFC 3464 report from <> to the sender, for bad@ only (later@ is merely deferred)."""
    assert bounce.mail_from == "<>"  # aiosmtpd keeps the null reverse-path as written
    report = email.message_from_bytes(bounce.content.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert report["To"] == "alice@example.net"
    assert report["X-Failed-Recipients"] == "bad@example.org"
    assert report.get_content_type() == "multipart/report"
    explanation, status = list(report.iter_parts())[:2]
    text = explanation.get_content()
    assert "  bad@example.org\n" in text
    assert "550 5.1.1 No such user" in text
    assert "later@example.org" not in text
    fields = status.get_payload()[1] if status.is_multipart() else status.get_content()
    fields_text = str(fields)
    assert "Final-Recipient: rfc822;bad@example.org" in fields_text
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in fields_text
    bounce_line = next(line for line in mta_env.log_lines() if " <= <> " in line)
    bounce_id = bounce_line.split()[2]
    assert any(f"{bounce_id} => alice@example.net" in line for line in mta_env.log_lines())


def test_connection_refused_defers_and_a_retry_delivers(mta_env: MtaEnv) -> None:
    port = free_port()
    smarthost(mta_env, f"127.0.0.1::{port}")
    result = mta_env.run("-odi", "-f", "alice@example.com", "bob@example.net", input="Subject: x\n\nhi\n")
    assert result.returncode == 0
    lines = body_lines(mta_env)
    assert "H=127.0.0.1 [127.0.0.1] Connection refused" in lines
    assert any(line.startswith("== bob@example.net R=smarthost T=remote_smtp defer (111): Connection refused")
               for line in lines), lines
    [message_id] = mta_env.message_ids()
    late = SmtpSink(port=port).start()
    try:
        retry = mta_env.run("-M", message_id)
        assert retry.returncode == 0, retry.stderr
        assert [m.rcpt_tos for m in late.messages] == [["bob@example.net"]]
    finally:
        late.stop()
    assert mta_env.message_ids() == []


def test_next_host_after_a_refusing_one(mta_env: MtaEnv, sink: SmtpSink) -> None:
    smarthost(mta_env, f"127.0.0.1::{free_port()} : 127.0.0.1::{sink.port}")
    result = mta_env.run("-odi", "bob@example.net", input="Subject: x\n\nhi\n")
    assert result.returncode == 0
    assert len(sink.messages) == 1
    assert mta_env.message_ids() == []


def test_lookuphost_follows_mx_records_from_dns(mta_env: MtaEnv, dns_server: DnsTestServer) -> None:
    # 127.0.0.1 is an interface address of this host, so an MX there would be
    # "ourselves" and cut from the list: the sink listens on 127.0.0.2.
    sink = SmtpSink(host="127.0.0.2").start()
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")]},
            "mx1.example.org": {"A": ["127.0.0.9"]},  # nothing listens there on the sink's port
            "mx2.example.org": {"A": ["127.0.0.2"]},
        }
    )
    try:
        assert_lookuphost_delivery(mta_env, dns_server, sink)
    finally:
        sink.stop()


def assert_lookuphost_delivery(mta_env: MtaEnv, dns_server: DnsTestServer, sink: SmtpSink) -> None:
    mta_env.write_config(
        f"""
dns_servers = {dns_server.server_spec}
begin routers
dnslookup:
  driver = lookuphost
  transport = remote_smtp
  self = send
{TRANSPORT}  port = {sink.port}
"""
    )
    test = mta_env.run("-bt", "carol@example.org")
    assert test.returncode == 0, test.stderr
    assert test.stdout.splitlines() == [
        "carol@example.org",
        "  router = dnslookup, transport = remote_smtp",
        "  host mx1.example.org [127.0.0.9] MX=10",
        "  host mx2.example.org [127.0.0.2] MX=20",
    ]
    result = mta_env.run("-odi", "carol@example.org", input="Subject: x\n\nhi\n")
    assert result.returncode == 0
    assert [m.rcpt_tos for m in sink.messages] == [["carol@example.org"]]
    assert any("=> carol@example.org R=dnslookup T=remote_smtp H=mx2.example.org [127.0.0.2]" in line
               for line in mta_env.log_lines())


def test_unknown_domain_is_bounced_not_retried(mta_env: MtaEnv, dns_server: DnsTestServer) -> None:
    dns_server.set_records({"example.org": {"MX": [(10, "mx1.example.org")]}})
    mta_env.write_config(
        f"""
dns_servers = {dns_server.server_spec}
begin routers
dnslookup:
  driver = lookuphost
  transport = remote_smtp
  cannot_route_message = Unrouteable mail domain
{TRANSPORT}"""
    )
    result = mta_env.run("-odi", "-f", "", "bob@nowhere.example", input="Subject: x\n\nhi\n")
    assert result.returncode == 0
    assert any(line.endswith("** bob@nowhere.example: Unrouteable mail domain") for line in mta_env.log_lines())


def test_ip_literal_domain(mta_env: MtaEnv, sink: SmtpSink) -> None:
    mta_env.write_config(
        f"""
begin routers
literal:
  driver = ipliteral
  transport = remote_smtp
  self = send
{TRANSPORT}  port = {sink.port}
"""
    )
    result = mta_env.run("-odi", "postmaster@[127.0.0.1]", input="Subject: x\n\nhi\n")
    assert result.returncode == 0, result.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["postmaster@[127.0.0.1]"]]


def test_bt_for_a_remote_address_has_exims_shape(mta_env: MtaEnv) -> None:
    mta_env.write_config(
        """
begin routers
smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = example.org 127.0.0.2 byname ; example.net 127.0.0.3 byname
  self = send
begin transports
remote_smtp:
  driver = smtp
"""
    )
    result = mta_env.run("-bt", "bob@example.org")
    assert result.returncode == 0
    assert result.stdout == sample_text("bt-remote-manualroute.txt").replace("# exit status: 0\n", "")


def test_size_refusal_after_data_fails_the_address(mta_env: MtaEnv, sink: SmtpSink) -> None:
    sink.data_reply = "552 5.3.4 Message too big"
    smarthost(mta_env, f"127.0.0.1::{sink.port}")
    result = mta_env.run("-odi", "-f", "alice@example.com", "bob@example.net", input="Subject: x\n\nhi\n")
    assert result.returncode == 0
    assert "** bob@example.net R=smarthost T=remote_smtp: SMTP error from remote mail server after end of data: " \
        "552 5.3.4 Message too big" in body_lines(mta_env)
    assert sink.messages == []


def test_a_spool_error_during_delivery_is_reported_and_keeps_the_message(mta_env: MtaEnv, sink: SmtpSink) -> None:
    """The journal cannot be written (its path is a directory): one clear line, exit 1, message kept, no traceback."""
    smarthost(mta_env, f"127.0.0.1::{sink.port}")
    assert mta_env.run("-odq", "bob@example.net", input="Subject: x\n\nhi\n").returncode == 0
    [message_id] = mta_env.message_ids()
    (mta_env.spool / "input" / f"{message_id}-J").mkdir()
    result = mta_env.run("-M", message_id)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"mta: delivery of {message_id} failed: ")
    assert result.stderr.rstrip().endswith("(the message stays on the spool)")
    assert mta_env.message_ids() == [message_id]
