"""The smtp transport against real servers on loopback, through both clients.

Every scenario runs twice, with the async client (delivery processes) and
the blocking one (mua_wrapper): `smtp_client` is parametrised.  Servers are
aiosmtpd (`SmtpServer`) or, to misbehave, `FakeSmtpServer`; the transport's
timeouts are 1-2 s, and each client run is bounded by CLIENT_WAIT.
"""

from __future__ import annotations

import socket
import time

import pytest

from mta.errors import DeferError, FailError
from mta.route.dns import Host
from mta.transports.base import Delivered
from mta.transports.smtp import SmtpDeferError
from tests.support.fakesmtp import (
    FakeSmtpServer,
    SmtpClient,
    SmtpServer,
    host_of,
    outgoing,
    recipients,
    smtp_env,
    smtp_transport,
    wait_for,
    wire_message,
)
from tests.support.sink import free_port


@pytest.fixture(params=["async", "sync"])
def smtp_client(request: pytest.FixtureRequest) -> SmtpClient:
    return SmtpClient(request.param)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


# -- delivery ---------------------------------------------------------------------


def test_one_recipient_delivered(smtp_client: SmtpClient) -> None:
    body = b"Hello Bob.\n.hidden line\n..two\nend"
    with SmtpServer() as server:
        items = recipients("bob@example.org", hosts=[host_of(server, "smarthost.test")])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(body), items, smtp_env())
    outcome = outcomes[items[0]]
    assert isinstance(outcome, Delivered), outcome
    assert outcome.host is not None and outcome.host.name == "smarthost.test"
    assert (outcome.host.address, outcome.host.port) == (server.host, server.port)
    assert outcome.confirmation == "250 2.0.0 Ok: queued"
    assert outcome.cipher is None and outcome.tls_verified is None and not outcome.reused_connection
    [message] = server.messages
    assert message.mail_from == "alice@example.com" and message.rcpt_tos == ["bob@example.org"]
    # aiosmtpd has removed the dot-stuffing: what arrives is the message itself, in CRLF.
    assert message.content == wire_message(body + b"\n")


def test_many_recipients_one_transaction(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("a@example.org", "b@example.org", "c@example.net", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    assert all(isinstance(o, Delivered) for o in outcomes.values()), outcomes
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org", "b@example.org", "c@example.net"]]
    assert server.connections == 1


def test_dot_stuffing_on_the_wire(smtp_client: SmtpClient) -> None:
    body = b".starts with a dot\nmiddle\n.\n..\nno final newline"
    with FakeSmtpServer() as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(body), items, smtp_env())
    assert isinstance(outcomes[items[0]], Delivered)
    [data] = server.data
    assert data == wire_message(body + b"\n").replace(b"\r\n.", b"\r\n..")
    assert b"\r\n..starts with a dot\r\n" in data and b"\r\n..\r\n...\r\n" in data


def test_mixed_recipient_replies(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        server.rcpt_replies = {
            "nobody@example.org": "550 5.1.1 <nobody@example.org>: no such user",
            "full@example.org": "451 4.2.2 mailbox busy",
        }
        items = recipients("bob@example.org", "nobody@example.org", "full@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    ok, failed, deferred = (outcomes[i] for i in items)
    assert isinstance(ok, Delivered)
    assert isinstance(failed, FailError)
    assert failed.message == (
        "SMTP error from remote mail server after RCPT TO:<nobody@example.org>: "
        "550 5.1.1 <nobody@example.org>: no such user"
    )
    assert (failed.code, failed.esc) == (550, "5.1.1")
    assert isinstance(deferred, DeferError) and not isinstance(deferred, FailError)
    assert deferred.retry_error == "rcpt_451" and deferred.esc == "4.2.2"
    assert [m.rcpt_tos for m in server.messages] == [["bob@example.org"]]


def test_all_recipients_refused_sends_no_data(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(rcpt_replies={"bob@example.org": "550 no"}) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    outcome = outcomes[items[0]]
    assert isinstance(outcome, FailError) and "after RCPT TO:<bob@example.org>: 550 no" in outcome.message
    # DATA went with the pipelined group; its refusal (no valid recipients) is not the recipient's error.
    assert server.connections[0].commands[1:4] == ["MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>",
                                                   "DATA"]
    assert not server.data


def test_data_opened_without_recipients_ends_the_connection(smtp_client: SmtpClient) -> None:
    # RFC 2920 §3.1: a server must refuse DATA when no RCPT was accepted.  One that opens it anyway
    # would take the next command as message text: nothing more is sent on that connection.
    with FakeSmtpServer(rcpt_replies={"bob@example.org": "550 no"}, data_without_recipients=True) as server:
        transport = smtp_transport()
        refused = recipients("bob@example.org", hosts=[host_of(server)])
        good = recipients("carol@example.org", hosts=[host_of(server)])
        one, two = smtp_client.deliver_all(transport, [(outgoing(), refused), (outgoing(), good)], smtp_env())
    assert isinstance(one[refused[0]], FailError) and isinstance(two[good[0]], Delivered)
    first, second = server.connections
    assert first.commands[-1] == "DATA" and not first.data
    assert second.commands[1:3] == ["MAIL FROM:<alice@example.com>", "RCPT TO:<carol@example.org>"]
    assert len(server.data) == 1


def test_4xx_at_mail_defers_all(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        server.mail_reply = "452 4.3.1 insufficient system storage"
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    for outcome in outcomes.values():
        assert type(outcome) is SmtpDeferError, outcome
        assert outcome.retry_error == "mail_452"
        assert outcome.message.startswith("SMTP error from remote mail server after MAIL FROM:<alice@example.com>")
        assert outcome.message.endswith(": 452 4.3.1 insufficient system storage")
    assert not server.messages


def test_5xx_after_data_fails_all(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        server.data_reply = "554 5.7.1 message refused: spam"
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    for outcome in outcomes.values():
        assert isinstance(outcome, FailError)
        assert outcome.message == (
            "SMTP error from remote mail server after end of data: 554 5.7.1 message refused: spam"
        )


def test_5xx_to_data_command_fails_all(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(data_reply="554 5.5.1 no valid recipients") as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    outcome = outcomes[items[0]]
    assert isinstance(outcome, FailError)
    assert outcome.message == "SMTP error from remote mail server after DATA: 554 5.5.1 no valid recipients"


def test_multi_line_final_reply_is_kept_whole(smtp_client: SmtpClient) -> None:
    final = "250-2.0.0 accepted for delivery\n250 2.0.0 queued as 4F2A"
    with FakeSmtpServer(final_reply=final) as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    outcome = outcomes[items[0]]
    assert isinstance(outcome, Delivered)
    assert outcome.confirmation == final


# -- hosts --------------------------------------------------------------------------


def test_greeting_421_moves_to_next_host(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(greeting="421 4.3.2 busy, try later") as busy, SmtpServer() as good:
        items = recipients("bob@example.org", hosts=[host_of(busy, "busy.test"), host_of(good, "good.test")])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    outcome = outcomes[items[0]]
    assert isinstance(outcome, Delivered) and outcome.host is not None and outcome.host.name == "good.test"
    assert len(busy.connections) == 1 and len(good.messages) == 1


def test_refused_then_next_host_then_fallback(smtp_client: SmtpClient) -> None:
    dead = [Host("dead1.test", "127.0.0.1", port=closed_port()), Host("dead2.test", "127.0.0.1", port=closed_port())]
    with SmtpServer() as fallback:
        items = recipients("bob@example.org", hosts=dead, fallback=[host_of(fallback, "fallback.test")])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    outcome = outcomes[items[0]]
    assert isinstance(outcome, Delivered) and outcome.host is not None and outcome.host.name == "fallback.test"


def test_fallback_hosts_option(smtp_client: SmtpClient) -> None:
    with SmtpServer() as fallback:
        items = recipients("bob@example.org", hosts=[Host("dead.test", "127.0.0.1", port=closed_port())])
        transport = smtp_transport(fallback_hosts=f"127.0.0.1::{fallback.port}")
        outcomes = smtp_client.deliver(transport, outgoing(), items, smtp_env())
    assert isinstance(outcomes[items[0]], Delivered)


def test_every_host_refused_defers_with_last_error(smtp_client: SmtpClient) -> None:
    dead = [Host("mx1.test", "127.0.0.1", mx=10, port=closed_port()), Host("mx2.test", "127.0.0.1", mx=20,
                                                                           port=closed_port())]
    items = recipients("bob@example.org", hosts=dead)
    outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert type(outcome) is SmtpDeferError
    assert outcome.message == "all hosts failed; last error: Connection refused"
    assert (outcome.errno, outcome.retry_error) == (111, "refused_MX")
    assert outcome.host is not None and outcome.host.name == "mx2.test"
    assert [h.name for h, _why in outcome.host_errors] == ["mx1.test", "mx2.test"]

    one = recipients("bob@example.org", hosts=[Host("127.0.0.1", "127.0.0.1", port=closed_port())])
    single = smtp_client.deliver(smtp_transport(), outgoing(), one, smtp_env())[one[0]]
    assert isinstance(single, DeferError)
    assert (single.message, single.retry_error) == ("Connection refused", "refused_A")


def test_silent_host_times_out_quickly(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(greeting=None) as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        started = time.monotonic()
        outcome = smtp_client.deliver(smtp_transport(command_timeout=1), outgoing(), items, smtp_env())[items[0]]
        elapsed = time.monotonic() - started
    assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError)
    assert outcome.message == "SMTP timeout after initial connection"
    assert outcome.retry_error == "timeout_A"
    assert elapsed < 3


def test_hosts_max_try(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        dead = [Host(f"dead{n}.test", "127.0.0.1", port=closed_port()) for n in range(3)]
        items = recipients("bob@example.org", hosts=[*dead, host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(hosts_max_try=3), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError)
    assert not server.messages and server.connections == 0


def test_transport_hosts_option_and_override(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        routed = Host("routed.test", "127.0.0.1", port=closed_port())
        transport = smtp_transport(hosts=f"127.0.0.1::{server.port}", hosts_override=True)
        items = recipients("bob@example.org", hosts=[routed])
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
        assert isinstance(outcome, Delivered)
        # Without hosts_override the router's hosts win.
        items = recipients("bob@example.org", hosts=[routed])
        outcome = smtp_client.deliver(smtp_transport(hosts=f"127.0.0.1::{server.port}"), outgoing(), items,
                                      smtp_env())[items[0]]
        assert isinstance(outcome, DeferError)


def test_host_name_is_looked_up(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("bob@example.org", hosts=[Host("localhost", None, port=server.port)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered)
    assert outcome.host is not None and outcome.host.name == "localhost" and outcome.host.address == "127.0.0.1"


def test_unknown_host_name_fails(smtp_client: SmtpClient) -> None:
    items = recipients("bob@example.org", hosts=[Host("no-such-host.invalid", None, port=25)])
    outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, FailError)
    assert outcome.message == "all host address lookups failed permanently"


def test_local_host_is_refused_without_allow_localhost(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("bob@example.org", hosts=[host_of(server)])
        transport = smtp_transport(allow_localhost=False)
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError) and outcome.message == "remote host address is the local host"
    assert server.connections == 0


def test_ipv6_loopback(smtp_client: SmtpClient) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with SmtpServer("::1") as server:
        items = recipients("bob@example.org", hosts=[Host("ip6.test", "::1", port=server.port)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered) and outcome.host is not None and outcome.host.address == "::1"
    assert len(server.messages) == 1


# -- the connection going wrong -------------------------------------------------------


def test_connection_dropped_after_data_defers(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(drop_after_data=True) as server, SmtpServer() as other:
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server), host_of(other)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    assert len(server.data) == 1  # the server had the whole message
    for outcome in outcomes.values():
        assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError), outcome
        assert "end of data" in outcome.message
    # Never offered to another host: that could deliver twice.
    assert not other.messages and other.connections == 0


def test_malformed_reply_defers(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(mail_reply="hello, I am not SMTP") as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError)
    assert "malformed reply line" in outcome.message and not server.data


# -- pipelining ------------------------------------------------------------------------


def test_pipelined_commands_go_in_one_write(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer() as server:
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server)])
        smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    assert b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" in (
        server.connections[0].reads
    )


def test_pipelining_server_answering_each_command_in_turn(smtp_client: SmtpClient) -> None:
    # The fake reads one command, answers it, reads the next: each reply in its own segment.
    with FakeSmtpServer(rcpt_replies={"b@example.org": "550 5.1.1 unknown"}) as server:
        items = recipients("a@example.org", "b@example.org", "c@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    a, b, c = (outcomes[i] for i in items)
    assert isinstance(a, Delivered) and isinstance(c, Delivered) and isinstance(b, FailError)
    assert "RCPT TO:<b@example.org>" in b.message
    assert len(server.data) == 1


def test_pipelined_replies_in_one_segment(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(batch_replies=True, rcpt_replies={"b@example.org": "451 4.7.1 greylisted"}) as server:
        items = recipients("a@example.org", "b@example.org", "c@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())
    a, b, c = (outcomes[i] for i in items)
    assert isinstance(a, Delivered) and isinstance(c, Delivered)
    assert isinstance(b, DeferError) and b.retry_error == "rcpt_451"


def test_server_mishandling_pipelining_corrupts_nothing(smtp_client: SmtpClient) -> None:
    # It advertises PIPELINING but answers only the first command of the group.
    with FakeSmtpServer(answer_first_only=True) as server:
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server)])
        started = time.monotonic()
        outcomes = smtp_client.deliver(smtp_transport(command_timeout=1), outgoing(), items, smtp_env())
        assert time.monotonic() - started < 3
    for outcome in outcomes.values():
        assert isinstance(outcome, DeferError) and not isinstance(outcome, FailError), outcome
        assert outcome.message == "SMTP timeout after RCPT TO:<a@example.org>"
    assert not server.data


def test_hosts_avoid_pipelining(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer() as server:
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server)])
        smtp_client.deliver(smtp_transport(hosts_avoid_pipelining="*"), outgoing(), items, smtp_env())
    reads = server.connections[0].reads
    assert b"MAIL FROM:<alice@example.com>\r\n" in reads and b"RCPT TO:<a@example.org>\r\n" in reads


def test_helo_after_ehlo_refused(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(ehlo_reply="502 5.5.1 EHLO not implemented") as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered)
    assert server.connections[0].commands[:3] == [
        "EHLO client.test.example", "HELO client.test.example", "MAIL FROM:<alice@example.com>"
    ]


# -- size, 8BITMIME, SMTPUTF8, AUTH= ----------------------------------------------------


def test_size_parameter_and_8bitmime(smtp_client: SmtpClient) -> None:
    with SmtpServer(size_limit=100000) as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        seven = outgoing(b"plain ascii\n")
        eight = outgoing("caf\u00e9 cr\u00e8me\n".encode())
        smtp_client.deliver_all(smtp_transport(), [(seven, items), (eight, recipients("b@example.org",
                                hosts=[host_of(server)]))], smtp_env())
    first, second = server.messages
    assert first.mail_options == [f"SIZE={seven.size + 1024}"]
    assert second.mail_options == [f"SIZE={eight.size + 1024}", "BODY=8BITMIME"]


def test_message_larger_than_server_size_fails_up_front(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(extensions=("PIPELINING", "SIZE 100")) as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(b"x" * 500), items, smtp_env())[items[0]]
    assert isinstance(outcome, FailError) and (outcome.code, outcome.esc) == (552, "5.3.4")
    assert not any(c.startswith("MAIL") for c in server.connections[0].commands)


def test_552_after_data_fails(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(final_reply="552 5.3.4 message size exceeds fixed limit") as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, FailError) and outcome.esc == "5.3.4" and len(server.data) == 1


def test_smtputf8_when_needed_and_offered(smtp_client: SmtpClient) -> None:
    with SmtpServer(smtputf8=True) as server:
        items = recipients("j\u00f6ran@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered)
    [message] = server.messages
    assert "SMTPUTF8" in message.mail_options and message.rcpt_tos == ["j\u00f6ran@example.org"]


def test_smtputf8_needed_but_not_offered_fails(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("j\u00f6ran@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, FailError) and outcome.esc == "5.6.7" and "SMTPUTF8" in outcome.message
    assert not server.messages


# -- transactions and connections ----------------------------------------------------------


def test_max_rcpt_splits_into_transactions(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        addresses = [f"r{n}@example.org" for n in range(5)]
        items = recipients(*addresses, hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(max_rcpt=2), outgoing(), items, smtp_env())
    assert all(isinstance(o, Delivered) for o in outcomes.values())
    assert [m.rcpt_tos for m in server.messages] == [addresses[0:2], addresses[2:4], addresses[4:5]]
    assert server.connections == 1


def test_multi_domain_false_splits_by_domain(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("a@one.test", "b@two.test", "c@one.test", hosts=[host_of(server)])
        smtp_client.deliver(smtp_transport(multi_domain=False), outgoing(), items, smtp_env())
    assert [m.rcpt_tos for m in server.messages] == [["a@one.test", "c@one.test"], ["b@two.test"]]


def test_connection_reused_for_the_next_message(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer() as server:
        transport = smtp_transport()
        first = recipients("a@example.org", hosts=[host_of(server)])
        second = recipients("b@example.org", hosts=[host_of(server)])
        one, two = smtp_client.deliver_all(transport, [(outgoing(), first), (outgoing(), second)], smtp_env())
        assert wait_for(lambda: server.connections[0].commands[-1:] == ["QUIT"])
    assert len(server.connections) == 1
    assert isinstance(one[first[0]], Delivered) and not one[first[0]].reused_connection
    assert isinstance(two[second[0]], Delivered) and two[second[0]].reused_connection
    # The first transaction ended with the message taken: no RSET before the next (as Exim).
    assert server.connections[0].commands == [
        "EHLO client.test.example",
        "MAIL FROM:<alice@example.com>", "RCPT TO:<a@example.org>", "DATA",
        "MAIL FROM:<alice@example.com>", "RCPT TO:<b@example.org>", "DATA",
        "QUIT",
    ]


def test_rset_goes_with_the_next_group_after_an_unfinished_transaction(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(rcpt_replies={"bob@example.org": "450 try later"}) as server:
        transport = smtp_transport()
        first = recipients("bob@example.org", hosts=[host_of(server)])
        second = recipients("carol@example.org", hosts=[host_of(server)])
        one, two = smtp_client.deliver_all(transport, [(outgoing(), first), (outgoing(), second)], smtp_env())
    assert isinstance(one[first[0]], DeferError) and isinstance(two[second[0]], Delivered)
    assert len(server.connections) == 1
    assert b"RSET\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n" in (
        server.connections[0].reads
    )


@pytest.mark.parametrize("hang_up_reply", [None, "421 4.4.2 fake.test Error: timeout exceeded"])
def test_cached_connection_dropped_by_the_server_is_replaced(smtp_client: SmtpClient,
                                                             hang_up_reply: str | None) -> None:
    # The server times the idle connection out, but we learn it only from the next group's first
    # reply (EOF, or a 421): the message goes down a new connection, not to a deferral.
    with FakeSmtpServer(hang_up_after=1, hang_up_reply=hang_up_reply) as server:
        transport = smtp_transport()
        first = recipients("a@example.org", hosts=[host_of(server)])
        second = recipients("b@example.org", hosts=[host_of(server)])
        one, two = smtp_client.deliver_all(transport, [(outgoing(), first), (outgoing(), second)], smtp_env())
    assert isinstance(one[first[0]], Delivered)
    outcome = two[second[0]]
    assert isinstance(outcome, Delivered) and not outcome.reused_connection
    assert len(server.connections) == 2 and len(server.data) == 2
    assert server.connections[0].commands[-1] == "MAIL FROM:<alice@example.com>"


def test_connection_max_messages(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        transport = smtp_transport(connection_max_messages=1)
        batches = [(outgoing(), recipients(f"r{n}@example.org", hosts=[host_of(server)])) for n in range(2)]
        results = smtp_client.deliver_all(transport, batches, smtp_env())
    assert server.connections == 2 and len(server.messages) == 2
    assert not any(o.reused_connection for r in results for o in r.values())


def test_dead_cached_connection_is_replaced(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer() as server:
        transport = smtp_transport()
        env = smtp_env()
        if smtp_client.name == "sync":
            from mta.transports.smtp_sync import close_connections_sync, deliver_batch_sync

            deliver_batch_sync(transport, outgoing(), recipients("a@example.org", hosts=[host_of(server)]), env)
            [[(conn, _session)]] = transport.sync_pool.idle.values()
            conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had timed the idle connection out
            items = recipients("b@example.org", hosts=[host_of(server)])
            outcome = deliver_batch_sync(transport, outgoing(), items, env)[items[0]]
            close_connections_sync(transport)
        else:
            import asyncio

            async def run() -> object:
                await transport.deliver_batch(outgoing(), recipients("a@example.org", hosts=[host_of(server)]), env)
                [[(conn, _session)]] = transport.async_pool.idle.values()
                conn.transport.abort()
                await asyncio.sleep(0)
                items = recipients("b@example.org", hosts=[host_of(server)])
                try:
                    return (await transport.deliver_batch(outgoing(), items, env))[items[0]]
                finally:
                    await transport.close_connections()

            outcome = asyncio.run(asyncio.wait_for(run(), 10))
    assert isinstance(outcome, Delivered) and not outcome.reused_connection
    assert len(server.connections) == 2 and len(server.data) == 2


# -- mua_wrapper ------------------------------------------------------------------------------


def test_wrapper_one_refused_recipient_fails_all() -> None:
    from mta.transports.smtp_sync import deliver_batch_sync, failure_message, failures

    with SmtpServer() as server:
        server.rcpt_replies = {"bob@example.org": "550 5.1.1 <bob@example.org>: unknown"}
        items = recipients("alice@example.org", "bob@example.org", hosts=[host_of(server)])
        outcomes = deliver_batch_sync(smtp_transport(), outgoing(), items, smtp_env(), wrapper=True)
    assert not server.messages  # nothing delivered: one failure fails the message
    failed = failures(items, outcomes)
    assert [item.address for item, _ in failed] == ["alice@example.org", "bob@example.org"]
    assert all(isinstance(error, FailError) for _, error in failed)
    bob_error = outcomes[items[1]]
    assert failure_message("bob@example.org", bob_error) == (
        "delivery to bob@example.org failed: SMTP error from remote mail server after RCPT TO:<bob@example.org>: "
        "550 5.1.1 <bob@example.org>: unknown (host 127.0.0.1 [127.0.0.1])"
    )


def test_wrapper_makes_4xx_permanent_and_ignores_fallback() -> None:
    from mta.transports.smtp_sync import deliver_batch_sync

    with SmtpServer() as server, SmtpServer() as fallback:
        server.rcpt_replies = {"bob@example.org": "451 4.7.1 greylisted"}
        items = recipients("bob@example.org", hosts=[host_of(server)], fallback=[host_of(fallback)])
        outcome = deliver_batch_sync(smtp_transport(), outgoing(), items, smtp_env(), wrapper=True)[items[0]]
        assert isinstance(outcome, FailError) and "451 4.7.1 greylisted" in outcome.message
        dead = recipients("bob@example.org", hosts=[Host("dead.test", "127.0.0.1", port=closed_port())],
                          fallback=[host_of(fallback)])
        outcome = deliver_batch_sync(smtp_transport(), outgoing(), dead, smtp_env(), wrapper=True)[dead[0]]
        assert isinstance(outcome, FailError) and outcome.message == "Connection refused"
        assert fallback.connections == 0


def test_wrapper_ignores_max_rcpt_and_keeps_no_connection() -> None:
    from mta.transports.smtp_sync import deliver_batch_sync

    with SmtpServer() as server:
        transport = smtp_transport(max_rcpt=2)
        items = recipients(*[f"r{n}@example.org" for n in range(5)], hosts=[host_of(server)])
        outcomes = deliver_batch_sync(transport, outgoing(), items, smtp_env(), wrapper=True)
        assert transport.sync_pool is None
    assert all(isinstance(o, Delivered) for o in outcomes.values())
    assert len(server.messages) == 1 and len(server.messages[0].rcpt_tos) == 5


# -- options that shape the conversation ------------------------------------------------------


def test_interface_and_helo_data(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer() as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        transport = smtp_transport(interface="<; ::1 ; 127.0.0.2", helo_data="${uc:$primary_hostname}")
        outcome = smtp_client.deliver(transport, outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered)
    [conn] = server.connections
    assert conn.peer[0] == "127.0.0.2"
    assert conn.commands[0] == "EHLO CLIENT.TEST.EXAMPLE"


def test_hosts_avoid_esmtp(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer() as server:
        items = recipients("a@example.org", "b@example.org", hosts=[host_of(server)])
        outcomes = smtp_client.deliver(smtp_transport(hosts_avoid_esmtp="127.0.0.1"), outgoing(), items, smtp_env())
    assert all(isinstance(o, Delivered) for o in outcomes.values())
    commands = server.connections[0].commands
    assert commands[0] == "HELO client.test.example" and "EHLO client.test.example" not in commands
    assert b"RCPT TO:<a@example.org>\r\n" in server.connections[0].reads  # no pipelining without EHLO


def test_return_path_and_headers_add(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        transport = smtp_transport(
            return_path="bounces@example.com", headers_add="X-Relayed: by $primary_hostname", headers_remove="Subject"
        )
        outcome = smtp_client.deliver(transport, outgoing(b"body\n"), items, smtp_env())[items[0]]
    assert isinstance(outcome, Delivered)
    [message] = server.messages
    assert message.mail_from == "bounces@example.com"
    headers = message.content.split(b"\r\n\r\n", 1)[0]
    assert headers.endswith(b"\r\nX-Relayed: by client.test.example") and b"Subject:" not in headers


def test_message_size_limit_of_the_transport(smtp_client: SmtpClient) -> None:
    with SmtpServer() as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        outcome = smtp_client.deliver(smtp_transport(message_size_limit=10), outgoing(), items, smtp_env())[items[0]]
    assert isinstance(outcome, FailError) and outcome.message == "message is too big (transport limit = 10)"
    assert server.connections == 0


def test_async_client_looks_hosts_up_with_the_dns_resolver() -> None:
    import asyncio

    from mta.route.dns import DnsResolver, ResolverSettings
    from tests.support.dnsserver import DnsTestServer

    with DnsTestServer({"smtp.test.example": {"A": ["127.0.0.1"]}}) as dns, SmtpServer() as server:
        resolver = DnsResolver(ResolverSettings(servers=[dns.address]))
        items = recipients("a@example.org", hosts=[Host("smtp.test.example", None, port=server.port)])
        outcomes = SmtpClient("async").deliver(smtp_transport(), outgoing(), items, smtp_env(resolver=resolver))
        assert dns.query_count("smtp.test.example") >= 1
        missing = recipients("a@example.org", hosts=[Host("missing.test.example", None, port=server.port)])
        failed = asyncio.run(smtp_transport().deliver_batch(outgoing(), missing, smtp_env(resolver=resolver)))
    outcome = outcomes[items[0]]
    assert isinstance(outcome, Delivered) and outcome.host is not None and outcome.host.address == "127.0.0.1"
    assert isinstance(failed[missing[0]], FailError)


def test_async_concurrent_deliveries_use_separate_connections() -> None:
    import asyncio

    with FakeSmtpServer() as server:
        transport = smtp_transport()
        env = smtp_env()

        async def run() -> list[dict[object, object]]:
            try:
                batches = [recipients(f"r{n}@example.org", hosts=[host_of(server)]) for n in range(3)]
                results = await asyncio.gather(*(transport.deliver_batch(outgoing(), b, env) for b in batches))
                again = recipients("last@example.org", hosts=[host_of(server)])
                return [*results, await transport.deliver_batch(outgoing(), again, env)]
            finally:
                await transport.close_connections()

        results = asyncio.run(asyncio.wait_for(run(), 10))
        assert wait_for(lambda: all(c.commands[-1:] == ["QUIT"] for c in server.connections))
    assert all(isinstance(o, Delivered) for r in results for o in r.values())
    assert len(server.connections) == 3 and len(server.data) == 4
    assert all(o.reused_connection for o in results[-1].values())


def test_async_cancellation_closes_the_connection() -> None:
    import asyncio

    with FakeSmtpServer(greeting=None) as server:
        transport = smtp_transport(command_timeout=30)
        items = recipients("a@example.org", hosts=[host_of(server)])

        async def run() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(transport.deliver_batch(outgoing(), items, smtp_env()), 0.3)
            await transport.close_connections()

        asyncio.run(run())
        # The server sees the client hang up (its read returns EOF) long before its own wait ends.
        assert wait_for(lambda: len(server.connections) == 1 and server.connections[0].client_closed)
    assert transport.async_pool is None or not transport.async_pool.idle


def test_negative_size_addition_sends_no_size(smtp_client: SmtpClient) -> None:
    with FakeSmtpServer(extensions=("PIPELINING", "SIZE 1000000")) as server:
        items = recipients("a@example.org", hosts=[host_of(server)])
        smtp_client.deliver(smtp_transport(size_addition=-1), outgoing(), items, smtp_env())
        smtp_client.deliver(smtp_transport(), outgoing(b"x\n"), items, smtp_env())
    first, second = (c.commands[1] for c in server.connections)
    assert first == "MAIL FROM:<alice@example.com>"
    assert second == f"MAIL FROM:<alice@example.com> SIZE={outgoing(b'x').size + 1024 + 1}"
