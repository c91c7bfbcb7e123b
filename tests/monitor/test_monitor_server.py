"""The monitor's application against a real queue, served on 127.0.0.1 in this process."""

from __future__ import annotations

import asyncio
import re

import pytest

from mta.spool.store import Spool
from spool_tools.monitor import server
from spool_tools.monitor.auth import hash_password
from spool_tools.stats import svg
from tests.monitor.conftest import (
    SCRIPT_RECIPIENT,
    SCRIPT_SENDER,
    SCRIPT_SUBJECT,
    Served,
    events,
    make_queue,
    queue_config,
    run,
)
from tests.support.mta import MtaEnv
from tests.support.queue import change


def test_nothing_without_logging_in(queue_env: MtaEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page sends strangers to the login form; the API answers 401; a wrong token or password
    is refused (and logged, without what was typed); the token and a password file's user get in."""
    monkeypatch.setattr(server, "LOGIN_FAILURE_DELAY", 0)
    queue_env.spool.mkdir()
    passwords = {"root": hash_password("secret pass")}

    async def scenario() -> None:
        async with Served.start(queue_env, passwords) as served:
            async with served.http.get(served.url + "/", allow_redirects=False) as response:
                assert (response.status, response.headers["Location"]) == (302, "/login")
                assert "script-src 'self'" in response.headers["Content-Security-Policy"]
                assert response.headers["X-Frame-Options"] == "DENY"
            for path in ("/api/session", "/api/events", f"/api/messages/{'a' * 6}-{'b' * 11}-{'c' * 4}/header"):
                assert (await served.get(path))[0] == 401, path
            for form in ({"token": "wrong"}, {"login": "root", "password": "wrong"}, {"login": "x", "password": "y"}):
                async with served.http.post(served.url + "/login", data=form, allow_redirects=False) as response:
                    assert response.headers["Location"] == "/login?failed=1"
            assert (await served.get("/api/session"))[0] == 401
            # A login form posted from another site is refused (login CSRF).
            async with served.http.post(
                served.url + "/login",
                data={"token": served.monitor.authority.token},
                headers={"Origin": "http://evil.example"},
                allow_redirects=False,
            ) as r:
                assert r.status == 403
            session = await served.login(login="root", password="secret pass")
            assert session["user"] == "root" and session["admin"] and session["queue"] and session["views"]
            assert session["actions"] == ["freeze", "thaw", "deliver", "remove", "giveup", "addrecipient"]
            status, page = await served.get("/")
            assert status == 200 and 'src="/static/monitor.js"' in page
            async with served.http.post(served.url + "/logout", headers={"X-CSRF-Token": served.csrf}) as r:
                assert r.status == 200
            assert (await served.get("/api/session"))[0] == 401
            session = await served.login()
            assert session["admin"] and session["user"] == "root"  # the token acts as the monitor's own user

    run(scenario())
    log = queue_env.mainlog.read_text()
    assert log.count("mta-monitor: login failed from 127.0.0.1") == 3
    assert "wrong" not in log
    assert "mta-monitor: root logged in from 127.0.0.1 (administrator)" in log


def test_the_page_data_is_the_queue_the_log_and_the_charts(queue_env: MtaEnv) -> None:
    """The first events carry the queue as mailq --json sees it (with subject, age, size and
    delivered marks), mta-qsumm's per-domain counts, the log's tail and the charts; a message that
    arrives later comes as new events, without asking."""
    ids = make_queue(queue_env)
    change(queue_env, ids[1], non_recipients={"carol@example.com"})

    async def scenario() -> None:
        async with Served.start(queue_env) as served:
            await served.login()
            async with events(served) as stream:
                _name, queue = await stream.next("queue")
                assert queue["count"] == 3
                first, second, third = queue["messages"]
                assert first["queue_id"] == ids[0] and first["subject"] == SCRIPT_SUBJECT
                assert first["sender"] == SCRIPT_SENDER and first["recipients_all"][0] == SCRIPT_RECIPIENT
                assert second["delivered_recipients"] == ["carol@example.com"]
                assert [r["address"] for r in second["recipients"]] == ["dave@remote.example"]
                assert third["subject"] == "caf\u00e9" and not third["frozen"] and re.fullmatch(r"\d+", third["size"])
                domains = {row["domain"]: row["count"] for row in queue["domains"]}
                assert domains == {"example.com": 3, "remote.example": 1}  # carol is delivered: not counted
                _name, log = await stream.next("log")
                assert log["reset"] and sum(" <= " in line for line in log["lines"]) == 3
                _name, charts = await stream.next("charts")
                assert charts["totals"]["received"] == {"hour": 3, "day": 3}
                assert charts["hour"].startswith("<svg") and f'fill="{svg.RECEIVED}"' in charts["hour"]
                assert f'fill="{svg.RECEIVED}"' in charts["day"]
                assert SCRIPT_SENDER not in charts["hour"]  # the charts carry times and counts, no message data
                # Later arrivals come as events: a log line, new charts, the queue.
                result = await asyncio.to_thread(
                    queue_env.run, "-odq", "late@example.com", input="Subject: late\n\nx\n"
                )
                assert result.returncode == 0, result.stderr
                await stream.until(
                    {
                        "log": lambda data: any(" <= root@example.com" in line for line in data["lines"]),
                        "queue": lambda data: data["count"] == 4,
                    }
                )

    run(scenario())


def test_actions_are_the_command_lines_and_are_logged(queue_env: MtaEnv) -> None:
    """Freeze, thaw, add a recipient, remove, deliver now and give up: each needs the session's
    CSRF token, does what -Mf, -Mt, -Mar, -Mrm, -M and -Mg do, and says who did it in the main log."""
    ids = make_queue(queue_env)

    async def scenario() -> None:
        async with Served.start(queue_env) as served:
            await served.login()
            spool = Spool(queue_env.spool)
            assert (await served.act(ids[0], "freeze", headers={}))[0] == 403
            assert (await served.act(ids[0], "freeze", headers={"X-CSRF-Token": "forged"}))[0] == 403
            foreign = {"X-CSRF-Token": served.csrf, "Origin": "http://evil.example"}
            assert (await served.act(ids[0], "freeze", headers=foreign))[0] == 403
            assert spool.read_envelope(ids[0]).frozen is None
            assert await served.act(ids[0], "freeze") == (200, f"Message {ids[0]} is now frozen")
            assert spool.read_envelope(ids[0]).frozen is not None
            assert await served.act(ids[0], "freeze") == (409, f"message {ids[0]} is already frozen")
            assert await served.act(ids[0], "thaw") == (200, f"Message {ids[0]} is no longer frozen")
            assert await served.act(ids[0], "addrecipient", {"address": "zoe@example.com"}) == (
                200,
                f"Message {ids[0]} has been modified",
            )
            assert "zoe@example.com" in [r.address for r in spool.read_envelope(ids[0]).recipients]
            assert (await served.act(ids[0], "addrecipient", {"address": "no domain"}))[0] == 409
            assert (await served.act(ids[0], "addrecipient", {}))[0] == 400
            assert (await served.act(ids[0], "bounce"))[0] == 404
            assert (await served.act("not-an-id", "freeze"))[0] == 404
            assert await served.act(ids[2], "remove") == (200, f"Message {ids[2]} has been removed")
            assert not spool.exists(ids[2])
            # Deliver now: `mta -M` delivers the local recipients; the remote one has no router.
            status, _text = await served.act(ids[1], "deliver")
            assert status == 200
            assert "body text" in (queue_env.root / "mail" / "box").read_text()
            # Give up: `mta -Mg` cancels and bounces.
            status, _text = await served.act(ids[0], "giveup")
            assert status == 200 and not spool.exists(ids[0])

    run(scenario())
    log = queue_env.mainlog.read_text()
    who = "root (mta-monitor, 127.0.0.1)"
    for line in (
        f"{ids[0]} frozen by {who}",
        f"{ids[0]} unfrozen by {who}",
        f"{ids[0]} recipient <zoe@example.com> added by {who}",
        f"{ids[2]} removed by {who}",
        f"{ids[1]} delivery requested by {who}",
        f"{ids[0]} giving up requested by {who}",
        f"{ids[0]} cancelled by root",
        f"{ids[1]} => carol <carol@example.com>",
    ):
        assert line in log, line


def test_views_are_the_message_files(queue_env: MtaEnv) -> None:
    ids = make_queue(queue_env)

    async def scenario() -> None:
        async with Served.start(queue_env) as served:
            await served.login()
            status, header = await served.get(f"/api/messages/{ids[1]}/header")
            assert status == 200 and header.startswith(f"{ids[1]}-H\n") and "<alice@example.com>" in header
            status, body = await served.get(f"/api/messages/{ids[1]}/body")
            assert (status, body) == (200, f"{ids[1]}-D\nbody text\n")
            await served.act(ids[1], "freeze")
            status, msglog = await served.get(f"/api/messages/{ids[1]}/log")
            assert status == 200 and "frozen by root (mta-monitor, 127.0.0.1)" in msglog
            assert (await served.get(f"/api/messages/{ids[1]}/source"))[0] == 404
            gone = ids[1][:-1] + ("A" if ids[1][-1] != "A" else "B")
            status, text = await served.get(f"/api/messages/{gone}/header")
            assert (status, text) == (404, f"message {gone} is not on the spool\n")

    run(scenario())


def test_who_may_do_what_is_the_command_lines_rule(queue_env: MtaEnv) -> None:
    """A password-file user who is not an administrator may look, may not act (the refusal is the
    one -Mf prints), sees the queue only when queue_list_requires_admin is off, may remove only
    the messages they sent, and may deliver only when prod_requires_admin is off."""
    queue_config(queue_env, "queue_list_requires_admin = false\nprod_requires_admin = false")
    ids = make_queue(queue_env)
    passwords = {"nobody": hash_password("pw")}

    async def scenario() -> None:
        async with Served.start(queue_env, passwords) as served:
            session = await served.login(login="nobody", password="pw")
            assert not session["admin"] and session["queue"] and not session["views"]
            assert session["actions"] == ["deliver", "remove"]
            assert await served.act(ids[0], "freeze") == (
                403,
                "permission denied: only administrators may freeze messages\n",
            )
            assert (await served.get(f"/api/messages/{ids[0]}/body")) == (
                403,
                "permission denied: only administrators may read queued messages\n",
            )
            status, text = await served.act(ids[0], "remove")
            assert status == 409 and "was not sent by you" in text
            assert Spool(queue_env.spool).exists(ids[0])

    run(scenario())
    queue_config(queue_env)  # the defaults: only administrators list the queue and start deliveries

    async def defaults() -> None:
        async with Served.start(queue_env, passwords) as served:
            session = await served.login(login="nobody", password="pw")
            assert not session["queue"] and session["actions"] == ["remove"]
            async with events(served) as stream:
                name, _data = await stream.next()
                assert name == "log"  # no queue event for who may not list the queue
            assert (await served.act(ids[0], "deliver"))[0] == 403

    run(defaults())
