"""Headless Chromium driven over the DevTools protocol (a websocket, with aiohttp's client).

    async with Browser.start(tmp_path) as browser:
        await browser.navigate("http://127.0.0.1:8470/login")
        await browser.wait_for("document.querySelectorAll('#queue tbody tr').length > 0")
        await browser.evaluate("document.getElementById('logout').click()")
        png = await browser.screenshot()

No Playwright: it would bring its own driver (Node.js) and want a browser
build of its own; the protocol needs only the websocket that aiohttp (a
dependency of the monitor already) provides.  Debian's chromium is used
as installed; the test that needs it skips when it is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def chromium(missing: str = "the monitor's page is not driven in a browser") -> str:
    """The browser's path; without one the test skips, saying what is `missing` and how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip(
        f"no chromium on PATH, so {missing}: install Debian's chromium package, or run "
        "MTA_TEST_CHROMIUM=1 scripts/test as root (docs/testing.md)"
    )


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(
        self, process: asyncio.subprocess.Process, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
    ) -> None:
        self.process = process
        self.http = http
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.session_id = ""
        self.reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, profile: Path, width: int = 1280, height: int = 1000) -> AsyncIterator[Browser]:
        process = await asyncio.create_subprocess_exec(
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(profile)},
            start_new_session=True,
        )
        try:
            endpoint = await asyncio.wait_for(_endpoint(process), 30)
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(endpoint, max_msg_size=64 * 1024 * 1024)
                browser = cls(process, http, ws)
                try:
                    target = await browser.send("Target.createTarget", {"url": "about:blank"}, browser_level=True)
                    attached = await browser.send(
                        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser_level=True
                    )
                    browser.session_id = attached["sessionId"]
                    await browser.send("Page.enable")
                    await browser.send("Runtime.enable")
                    yield browser
                finally:
                    browser.reader.cancel()
                    await ws.close()
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            future = self.waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(BrowserError("the browser closed the DevTools connection"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, browser_level: bool = False, timeout: float = 30
    ) -> dict[str, Any]:
        number = next(self.ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if not browser_level:
            message["sessionId"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[number] = future
        await self.ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """The first truthy value of `expression`, looked at every 50 ms."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                page = await self.evaluate("document.body ? document.body.innerText.slice(0, 3000) : ''")
                raise BrowserError(f"never true: {expression}\npage text:\n{page}")
            await asyncio.sleep(0.05)

    async def screenshot(self) -> bytes:
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        return base64.b64decode(shot["data"])


async def _endpoint(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    seen = []
    while True:
        line = (await process.stderr.readline()).decode(errors="replace")
        if not line:
            raise BrowserError("chromium exited before listening for DevTools:\n" + "".join(seen[-20:]))
        seen.append(line)
        if match := re.search(r"DevTools listening on (ws://\S+)", line):
            # Chromium keeps writing to stderr: drain it, or it blocks when the pipe fills.
            asyncio.get_running_loop().create_task(_drain(process.stderr))
            return match.group(1)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
