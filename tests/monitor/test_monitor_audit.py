"""The monitor under attack (issue 18's audit): each test is one class of hole, and fails without
its fix.  docs/monitor.md's "Security" section says what each class was and how it is closed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.spool.store import Spool
from spool_tools.admin_command import ToolError
from spool_tools.logfiles import log_location
from spool_tools.monitor import server, starter
from spool_tools.monitor.auth import Authority, hash_password, read_or_make_token, read_password_file, token_path
from spool_tools.monitor.watch import LINE_MAX, LogFollower
from tests.monitor.conftest import Served, make_queue, path_of, run
from tests.support.mta import MtaEnv

NO_SUCH_ID = "1aaaaa-bbbbbbbbbbb-cccc"


def test_deliver_now_pressed_many_times_starts_few_children(queue_env: MtaEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve presses on three messages at once start at most CONCURRENT children, one per
    message; the rest are refused at once (no fork bomb)."""
    monkeypatch.setattr(starter, "CONCURRENT", 2)
    ids = make_queue(queue_env)

    async def scenario() -> list[tuple[int, str]]:
        async with Served.start(queue_env) as served:
            await served.login()
            return await asyncio.gather(*(served.act(ids[i % 3], "deliver") for i in range(12)))

    answers = run(scenario())
    refused = [text for _status, text in answers if "still running" in text]
    assert len(refused) == 10, answers
    assert all(status == 409 for status, text in answers if text in refused)


def test_the_root_helper_bounds_what_it_runs_and_its_replies(
    queue_env: MtaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web server that floods the helper's socket (as a compromised one would) gets at most
    CONCURRENT children; a reply never outgrows one datagram, whatever the output holds."""
    monkeypatch.setattr(starter, "CONCURRENT", 2)
    queue_env.spool.mkdir()
    helper = starter.HelperStarter.fork(str(queue_env.config))
    try:
        helper.sock.setblocking(True)
        ids = [f"1aaaaa-bbbbbbbbbb{n}-cccc" for n in range(8)]
        for n, message_id in enumerate(ids):
            helper.sock.send(json.dumps({"n": n, "flags": "", "id": message_id}).encode())
        replies = [json.loads(helper.sock.recv(starter._REPLY_MAX)) for _ in ids]
    finally:
        helper.close()
    assert sum("still running" in r["output"] for r in replies) == 6, replies
    big = starter.reply_bytes(1, 0, "\x01\u2028" * starter.OUTPUT_MAX)
    assert len(big) <= starter._REPLY_MAX and json.loads(big)["output"].endswith("\x01\u2028")


def test_login_guesses_are_one_at_a_time_per_address(queue_env: MtaEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parallel wrong logins from one address are checked one after another, each failure taking
    its delay; past LOGIN_WAITING_MAX waiting they are refused at once (429)."""
    monkeypatch.setattr(server, "LOGIN_FAILURE_DELAY", 0.2)
    monkeypatch.setattr(server, "LOGIN_WAITING_MAX", 3)
    queue_env.spool.mkdir()

    async def scenario() -> tuple[list[int], float]:
        async with Served.start(queue_env) as served:

            async def guess() -> int:
                async with served.http.post(
                    served.url + "/login", data={"token": "x" * 43}, allow_redirects=False
                ) as response:
                    return response.status

            started = time.monotonic()
            statuses = await asyncio.gather(*(guess() for _ in range(6)))
            return sorted(statuses), time.monotonic() - started

    statuses, took = run(scenario())
    assert statuses == [302, 302, 302, 429, 429, 429]
    assert took >= 3 * 0.2


def test_an_unknown_login_costs_what_a_known_one_does(monkeypatch: pytest.MonkeyPatch, queue_env: MtaEnv) -> None:
    """One scrypt for a login that does not exist, as for one that does (it was two: the time
    told which logins exist)."""
    authority = Authority(load_config(str(queue_env.config)), "t" * 43, {"alice": hash_password("pw")})
    calls = []
    real = hashlib.scrypt

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "scrypt", counting)
    assert authority.password_user("mallory", "pw") is None
    assert authority.password_user("alice", "wrong") is None
    assert len(calls) == 2


def test_a_password_file_with_bad_hashes_is_refused_at_start(tmp_path: Path) -> None:
    """What scrypt would refuse only at a login (a 500), or accept for any password (an empty
    hash), is a clear error at start naming the file and line; so is a login given twice."""
    salt, digest = base64.b64encode(b"s" * 16).decode(), base64.b64encode(b"d" * 32).decode()
    cases = {
        "alice:scrypt$16384$8$1$$": "too short",
        f"alice:scrypt$1048576$8$1${salt}${digest}": "out of range",
        f"alice:scrypt$16384$8$1${salt}$": "too short",
        f"alice:{hash_password('a')}\nalice:{hash_password('b')}": "given twice",
    }
    path = tmp_path / "passwords"
    for text, problem in cases.items():
        path.write_text(f"# users\n{text}\n")
        path.chmod(0o600)
        with pytest.raises(ToolError, match=problem) as caught:
            read_password_file(str(path))
        assert str(caught.value).startswith(f"{path}:{text.count(chr(10)) + 2}: ")


def test_a_token_file_of_another_owner_is_refused(queue_env: MtaEnv) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    config = load_config(str(queue_env.config))
    queue_env.spool.mkdir()
    read_or_make_token(config)
    os.chown(token_path(config), 65534, 65534)
    with pytest.raises(ToolError, match="owned by uid 65534"):
        read_or_make_token(config)


def test_links_and_fifos_in_the_spool_are_not_followed(queue_env: MtaEnv, tmp_path: Path) -> None:
    """A -D or message log that is a symbolic link to a file outside the spool is neither shown
    nor written through (by the monitor or any other reader, root's -Mv included); a FIFO in
    its place is an error at once, not a hung thread."""
    ids = make_queue(queue_env)
    secret = tmp_path / "secret"
    secret.write_text("SECRET\n")
    data = path_of(queue_env, ids[0], "-D")
    data.unlink()
    data.symlink_to(secret)
    spool = Spool(queue_env.spool)
    msglog = spool.msglog_path(ids[1])
    msglog.parent.mkdir(parents=True, exist_ok=True)
    msglog.unlink(missing_ok=True)
    msglog.symlink_to(secret)
    fifo = spool.msglog_path(ids[2])
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)

    async def scenario() -> None:
        async with Served.start(queue_env) as served:
            await served.login()
            for message_id, view in ((ids[0], "body"), (ids[1], "log"), (ids[2], "log")):
                status, text = await asyncio.wait_for(served.get(f"/api/messages/{message_id}/{view}"), 10)
                assert status == 404 and "SECRET" not in text, (view, text)
            assert (await served.act(ids[0], "freeze"))[0] == 409
            assert (await served.act(ids[1], "freeze"))[0] == 200  # its log line is not written through the link

    run(scenario())
    assert secret.read_text() == "SECRET\n"


def test_hostile_requests_get_a_4xx_and_idle_connections_are_closed(
    queue_env: MtaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body that is not JSON, an address that is not one string, a multipart login (aiohttp's
    parser answered a bad one with a 500 and a traceback): 400.  Connections past
    CONNECTIONS_MAX are closed as they come; one that sends no request head in HEAD_TIMEOUT
    (slowloris) is closed."""
    monkeypatch.setattr(server, "CONNECTIONS_MAX", 3)
    queue_env.spool.mkdir()

    async def closed(reader: asyncio.StreamReader) -> bool:
        return await asyncio.wait_for(reader.read(), 5) == b""

    async def scenario() -> None:
        async with Served.start(queue_env) as served:
            await served.login()
            url = f"{served.url}/api/messages/{NO_SUCH_ID}/addrecipient"
            for body in (b"{bad", b"\xff", b'{"address": ["a@x.example", "b@x.example"]}', b'"a@x.example"'):
                async with served.http.post(url, data=body, headers={"X-CSRF-Token": served.csrf}) as response:
                    assert response.status == 400, body
            async with served.http.post(
                served.url + "/login",
                data=b"--x\r\nbroken",
                headers={"Content-Type": "multipart/form-data; boundary=x"},
            ) as response:
                assert response.status == 400
            await served.http.close()  # its kept-alive connection would count
            host, port = served.url[7:].split(":")
            idle = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
            reader, writer = await asyncio.open_connection(host, int(port))
            assert await closed(reader)  # the fourth
            writer.close()
            for _reader, writer in idle:
                writer.close()
            await asyncio.sleep(0)  # let the server see them go
            monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.2)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            assert await closed(reader)
            writer.close()

    run(scenario())


def test_a_huge_log_line_is_cut(queue_env: MtaEnv) -> None:
    """A 1 MB log line is kept as LINE_MAX bytes, and a line that never ends holds no more."""
    queue_env.mainlog.parent.mkdir(parents=True, exist_ok=True)
    queue_env.mainlog.write_bytes(b"x" * (1 << 20) + b"\n2026-01-01 00:00:00 short\n")
    follower = LogFollower(log_location(str(queue_env.config), None))
    lines = follower.poll(time.time())
    assert [len(line) for line in lines] == [LINE_MAX + 6, 25]
    with open(queue_env.mainlog, "ab") as log:
        log.write(b"y" * (6 << 20))
    follower.poll(time.time())
    follower.poll(time.time())
    assert len(follower.partial) <= LINE_MAX + 1
