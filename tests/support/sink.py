"""A recording SMTP server (aiosmtpd) on 127.0.0.1, usable as a smart host in tests.

`SmtpSink` runs in a background thread; each accepted transaction is kept
as an `Envelope`-like record.  Its behaviour can be changed per test:
reply codes for MAIL/RCPT/DATA, recipients to refuse, delays.

tests/support/fakesmtp.py's `SmtpServer` builds on it (TLS, AUTH, a
connection count): `RecordingHandler` and `SmtpSink.make_controller` are its
hooks.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from typing import Self

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


class RecordingHandler:
    """aiosmtpd hooks: the server's reply knobs for MAIL/RCPT/DATA, and a record of each message taken."""

    def __init__(self, server: SmtpSink) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.mail_reply:
            return self.server.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 Accepted"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.data_reply:
            return self.server.data_reply
        received = self.received(session, envelope)
        with self.server.lock:
            self.server.messages.append(received)
        return self.server.final_reply

    def received(self, session: Session, envelope: Envelope) -> Received:
        """The record kept of one message."""
        return Received(
            envelope.mail_from or "",
            list(envelope.rcpt_tos),
            envelope.original_content or b"",
            list(envelope.mail_options),
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **controller_kwargs: object) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.mail_reply: str | None = None
        self.data_reply: str | None = None
        self.final_reply = "250 2.0.0 Ok: queued"
        self.rcpt_replies: dict[str, str] = {}
        if port == 0:
            port = free_port(host)
        self.controller = self.make_controller(host, port, **controller_kwargs)

    def make_controller(self, host: str, port: int, **controller_kwargs: object) -> Controller:
        return Controller(RecordingHandler(self), hostname=host, port=port, **controller_kwargs)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def host(self) -> str:
        return str(self.controller.hostname)

    @property
    def port(self) -> int:
        return int(self.controller.port)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    try:
        yield server
    finally:
        server.stop()
