"""batch_max, batch_id and use_bsmtp: which addresses share a local delivery, and batched SMTP output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mta.deliver.grouping import group_local, uses_variable
from mta.route.dns import Host
from mta.transports.appendfile import AppendfileOptions, AppendfileTransport
from mta.transports.pipe import PipeOptions, PipeTransport
from tests.transports.transport_helpers import make_env, make_item, make_message

BODY = b".starts with a dot\n..two dots\n.\nlast\n"


def appendfile(**options: Any) -> AppendfileTransport:
    transport = AppendfileTransport("bsmtp", AppendfileOptions(driver="appendfile", **options), ("test.conf", 3))
    transport.check(None)
    return transport


def pipe(**options: Any) -> PipeTransport:
    transport = PipeTransport("batch_pipe", PipeOptions(driver="pipe", **options), ("test.conf", 3))
    transport.check(None)
    return transport


def items(*addresses: str, transport: str = "bsmtp") -> list[Any]:
    made = [make_item(a) for a in addresses]
    for item in made:
        item.transport_name = transport
    return made


HEADERS = "From: carol@example.org\nSubject: dots\n"


@pytest.mark.parametrize("crlf", [False, True])
def test_appendfile_writes_exims_batched_smtp(tmp_path: Path, crlf: bool) -> None:
    out = tmp_path / "batch"
    transport = appendfile(file=str(out), use_bsmtp=True, batch_max=10, use_crlf=crlf)
    batch = items("alice@example.com", "bob@example.net")
    batch[1].prefix = "owner-"
    batch[1].address = "owner-bob@example.net"  # RCPT TO names the address without the affix, as Exim
    transport.deliver_items(make_message(tmp_path / "m", body=BODY, headers=HEADERS), batch, make_env())
    # The bytes Exim 4.96 writes for the same message (no From line, no blank line, "." doubled).
    expected = (
        b"MAIL FROM:<carol@example.org>\nRCPT TO:<alice@example.com>\nRCPT TO:<bob@example.net>\nDATA\n"
        + HEADERS.encode()
        + b"\n..starts with a dot\n...two dots\n..\nlast\n.\n"
    )
    assert out.read_bytes() == (expected.replace(b"\n", b"\r\n") if crlf else expected)


def test_an_affix_comes_off_a_quoted_local_part_and_it_is_quoted_again(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    transport = appendfile(file=str(out), use_bsmtp=True, batch_max=10)
    batch = items('"owner-a b"@example.net', '"c d-request"@example.net')
    batch[0].prefix, batch[1].suffix = "owner-", "-request"
    transport.deliver_items(make_message(tmp_path / "m", body=b"x\n", headers=HEADERS), batch, make_env())
    lines = out.read_bytes().split(b"\n")
    assert lines[1:3] == [b'RCPT TO:<"a b"@example.net>', b'RCPT TO:<"c d"@example.net>']


def test_bsmtp_prefix_suffix_and_return_path(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    transport = appendfile(
        file=str(out),
        use_bsmtp=True,
        message_prefix="HELO $primary_hostname\\n",
        message_suffix="X",
        return_path="bounces@example.com",
        check_string="From ",
    )
    transport.deliver(make_message(tmp_path / "m", body=b"From here\n"), make_item(), make_env())
    text = out.read_text()
    assert text.startswith("HELO mail.example.com\nMAIL FROM:<bounces@example.com>\nRCPT TO:<alice@example.com>\n")
    assert text.endswith("\n\nFrom here\nX\n.\n")  # check_string is ignored; the dot starts its own line


def test_pipe_batch_arguments_environment_and_bsmtp(tmp_path: Path) -> None:
    script = tmp_path / "record.py"
    script.write_text(
        "import json, os, sys\n"
        "data = sys.stdin.buffer.read().decode()\n"
        f"open({str(tmp_path / 'out.json')!r}, 'w').write(json.dumps([sys.argv[1:], os.environ['LOCAL_PART'],"
        " os.environ['DOMAIN'], data]))\n"
    )
    transport = pipe(command=f"{sys.executable} {script} $pipe_addresses x$local_part", use_bsmtp=True, batch_max=5)
    batch = items("alice@example.com", "bob@example.com", transport="batch_pipe")
    transport.deliver_items(make_message(tmp_path / "m", body=b"hi\n", headers=HEADERS), batch, make_env())
    argv, local_part, domain, data = json.loads((tmp_path / "out.json").read_text())
    # One argument per address; $local_part and LOCAL_PART are unset (they differ), the domain is shared.
    assert argv == ["alice@example.com", "bob@example.com", "x"]
    assert (local_part, domain) == ("", "example.com")
    assert data == (
        "MAIL FROM:<carol@example.org>\nRCPT TO:<alice@example.com>\nRCPT TO:<bob@example.com>\nDATA\n"
        + HEADERS
        + "\nhi\n.\n"
    )


def test_which_local_addresses_share_a_delivery(tmp_path: Path) -> None:
    by_file = appendfile(file=f"{tmp_path}/$local_part", batch_max=3)
    by_domain = appendfile(file=f"{tmp_path}/box", batch_max=2, batch_id="$domain")
    single = appendfile(file=f"{tmp_path}/box")
    transports = {"by_file": by_file, "by_domain": by_domain, "single": single}
    assert uses_variable(by_file, "local_part") and not uses_variable(by_file, "domain")
    a, b, a2, c = items("a@x.example", "b@x.example", "a@y.example", "c@x.example", transport="by_file")
    d, e, f, g, h = items(
        "d@x.example", "e@y.example", "f@x.example", "g@x.example", "h@x.example", transport="by_domain"
    )
    h.errors_to = "owner@x.example"
    s1, s2 = items("s@x.example", "t@x.example", transport="single")
    routed = [a, d, b, e, s1, a2, f, g, h, c, s2]

    def shared(transport: Any, item: Any) -> Any:
        return None if item.address.startswith("g@") else "same user"  # g: its batch_id failed, say

    batches = group_local(routed, transports, shared)
    assert [[i.address for i in batch] for batch in batches] == [
        ["a@x.example", "a@y.example"],  # $local_part in the file name: only the same local part
        ["d@x.example", "f@x.example"],  # batch_id $domain, and at most batch_max = 2
        ["b@x.example"],
        ["e@y.example"],
        ["s@x.example"],  # batch_max 1: one at a time
        ["g@x.example"],
        ["h@x.example"],  # another errors address
        ["c@x.example"],
        ["t@x.example"],
    ]
    # The first host must match too.
    m, n = items("m@x.example", "n@x.example", transport="by_domain")
    m.hosts, n.hosts = [Host("relay1.example", "192.0.2.1")], [Host("relay2.example", "192.0.2.2")]
    assert len(group_local([m, n], transports, lambda t, i: "u")) == 2
