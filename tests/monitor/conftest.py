"""A real queue and a monitor serving it on 127.0.0.1, in the test's own process.

`Served` runs spool_tools.monitor's application exactly as mta-monitor does
(cli.run_server on a bound socket), with a real spool, log and token, and
an HTTP client that keeps the session's cookie.  Deliver now and give up
start the real `mta -M` / `mta -Mg` (starter.DirectStarter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mta.config.loader import load_config
from mta.log import parse_selector
from mta.runtime import Runtime
from spool_tools.logfiles import log_location
from spool_tools.monitor import server
from spool_tools.monitor.auth import Authority, read_or_make_token
from spool_tools.monitor.cli import run_server
from spool_tools.monitor.starter import DirectStarter
from spool_tools.monitor.watch import Watcher
from tests.support.daemon import daemon, daemon_world
from tests.support.mta import MtaEnv
from tests.support.queue import ACCEPT_ALL_RCPT, submit_batch

__all__ = ["daemon", "daemon_world"]  # fixtures: a running mta daemon (the browser test's)

# The message whose every field is markup: it must show as text.
SCRIPT_SENDER = '"<script>alert(1)</script>"@evil.example'
SCRIPT_RECIPIENT = '"<img src=x onerror=alert(2)>"@example.com'
SCRIPT_SUBJECT = "<script>window.__xss = 1</script><img src=x onerror=window.__xss=2>"

DIRECTORS = """
begin directors
everyone:
  driver = smartuser
  transport = box
  user = nobody
begin transports
box:
  driver = appendfile
  file = {root}/mail/box
"""


def queue_config(env: MtaEnv, main: str = "") -> None:
    (env.root / "mail").mkdir(exist_ok=True)
    (env.root / "mail").chmod(0o1777)
    env.root.chmod(0o755)
    env.write_config(main + "\n" + ACCEPT_ALL_RCPT + DIRECTORS.format(root=env.root))


def make_queue(env: MtaEnv) -> list[str]:
    """Three messages: markup everywhere, an ordinary one with a remote recipient, and one more."""
    return submit_batch(
        env,
        [
            (SCRIPT_SENDER, [SCRIPT_RECIPIENT, "bob@example.com"], f"Subject: {SCRIPT_SUBJECT}\n\nhello\n"),
            ("alice@example.com", ["carol@example.com", "dave@remote.example"], "Subject: plain\n\nbody text\n"),
            ("erin@example.com", ["frank@example.com"], "Subject: =?utf-8?q?caf=C3=A9?=\n\nthird\n"),
        ],
    )


@pytest.fixture
def queue_env() -> Iterator[MtaEnv]:
    """An mta world under /tmp that a local delivery (as nobody) can enter, with the configuration
    of `queue_config` and no messages yet."""
    root = Path(tempfile.mkdtemp(prefix="mta-monitor-", dir="/tmp"))
    try:
        env = MtaEnv(root)
        queue_config(env)
        yield env
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Served:
    def __init__(self, env: MtaEnv, monitor: server.Monitor, url: str, http: aiohttp.ClientSession) -> None:
        self.env = env
        self.monitor = monitor
        self.url = url
        self.http = http
        self.csrf = ""

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, env: MtaEnv, passwords: dict[str, str] | None = None, poll: float = 0.1
    ) -> AsyncIterator[Served]:
        config = load_config(str(env.config))
        runtime = Runtime(config, [], [], {}, [], parse_selector(config.main.log_selector))
        authority = Authority(config, read_or_make_token(config), passwords or {})
        watcher = Watcher(runtime.spool, log_location(str(env.config), None), poll)
        watcher.prime()
        monitor = server.Monitor(
            config, runtime.spool, runtime.logger, authority, watcher, DirectStarter(str(env.config)), tls=False
        )
        sock = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        stop = asyncio.Event()
        serving = asyncio.create_task(run_server(monitor, sock, None, stop))
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                yield cls(env, monitor, url, http)
        finally:
            stop.set()
            await serving

    async def login(self, **form: str) -> dict[str, Any]:
        """Log in (the token by default); the session's description."""
        if not form:
            form = {"token": self.monitor.authority.token}
        async with self.http.post(self.url + "/login", data=form, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            assert response.headers["Location"] == "/", response.headers["Location"]
        async with self.http.get(self.url + "/api/session") as response:
            assert response.status == 200
            session: dict[str, Any] = await response.json()
        self.csrf = session["csrf"]
        return session

    async def act(
        self, message_id: str, action: str, body: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        sent = {"X-CSRF-Token": self.csrf} if headers is None else headers
        async with self.http.post(
            f"{self.url}/api/messages/{message_id}/{action}", json=body, headers=sent
        ) as response:
            if response.content_type == "application/json":
                return response.status, (await response.json())["text"]
            return response.status, await response.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.text()


class EventStream:
    """One /api/events stream, read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, name: str | None = None, timeout: float = 10) -> tuple[str, Any]:
        """The next event (of kind `name`, skipping others)."""

        async def read() -> tuple[str, Any]:
            event, data = "", ""
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise AssertionError("the event stream ended")
                line = line.rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and event:
                    if name is None or event == name:
                        return event, json.loads(data)
                    event, data = "", ""

        return await asyncio.wait_for(read(), timeout)

    async def until(self, checks: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """For each event name, the data of the first such event that its check passes (in whatever
        order they come: a message is on the spool before its arrival is logged)."""
        found: dict[str, Any] = {}

        async def look() -> None:
            while len(found) < len(checks):
                event, data = await self.next(None, timeout)
                if event in checks and event not in found and checks[event](data):
                    found[event] = data

        await asyncio.wait_for(look(), timeout)
        return found


@contextlib.asynccontextmanager
async def events(served: Served) -> AsyncIterator[EventStream]:
    async with served.http.get(served.url + "/api/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield EventStream(response)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def path_of(env: MtaEnv, message_id: str, suffix: str) -> Path:
    return next((env.spool / "input").rglob(f"{message_id}{suffix}"))
