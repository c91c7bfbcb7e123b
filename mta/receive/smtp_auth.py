"""SMTP AUTH in a session (RFC 4954), driving the authenticators' sans-I/O server side.

One AUTH command: the mechanism must be one that EHLO offered, AUTH is
refused once a client has authenticated and inside a transaction, and the
exchange runs through `ServerExchange` (mta.auth) until success (235) or
failure.  Failed attempts are logged as Exim logs them (``plain
authenticator failed for (helo) [ip]: 535 Incorrect authentication data
(set_id=user)``) and slowed down: each failure in a connection waits
longer before its reply, and a host with too many recent failures is told
to come back later (454) without the exchange being run at all.
"""

from __future__ import annotations

import asyncio
import time

from mta.log import escape

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.receive.smtp_context import ReceiverContext
    from mta.receive.smtp_server import SmtpSession

MAX_FAILURES_PER_CONNECTION = 3
HOST_FAILURE_WINDOW = 600.0  # seconds
MAX_HOST_FAILURES = 10  # in the window: then 454 until it passes
AUTH_LINE_MAX = 12288

# Failures by client address, in this receiving process: [times of recent failures].
_recent_failures: dict[str, list[float]] = {}


def advertised_mechanisms(context: ReceiverContext, session: SmtpSession) -> list[str]:
    from mta.auth.server import server_mechanisms

    def expand(text: str) -> str:
        return context.expand(text, session)

    return list(server_mechanisms(context.runtime.authenticators, expand, context.runtime.logger.main))


def _host_failures(address: str | None, now: float) -> list[float]:
    key = address or "local"
    times = [t for t in _recent_failures.get(key, []) if now - t < HOST_FAILURE_WINDOW]
    _recent_failures[key] = times
    return times


async def authenticate(context: ReceiverContext, session: SmtpSession, argument: str, line: str) -> None:
    words = argument.split()
    offered = context.auth_mechanisms(session) if session.esmtp else []
    if not offered:
        session.reply(503, "AUTH command used when not advertised")
        session._protocol_error()
        return
    if session.authenticated_id is not None:
        session.reply(503, "already authenticated")
        return
    if session.transaction.mail is not None:
        session.reply(503, "AUTH not allowed during a mail transaction")
        return
    from mta.auth.server import Challenge, ServerExchange, Success, find_server_authenticator

    authenticator = find_server_authenticator(context.runtime.authenticators, words[0] if words else "", offered)
    if authenticator is None:
        session.reply(504, f"{escape(words[0]) if words else ''} authentication mechanism not supported")
        return
    now = time.time()
    if len(_host_failures(session.host_address, now)) >= MAX_HOST_FAILURES:
        session.reply(454, "4.7.0 Too many authentication failures from your address; try again later")
        return
    if await context.acl_check(session, "AUTH", line) is not None:
        return

    def expand(text: str, extra: dict[str, Any]) -> str:
        from mta.config.variables import expansion_context
        from mta.expand.expander import expand as do_expand

        return do_expand(text, expansion_context(context.config, {**context.variables(session), **extra}))

    exchange = ServerExchange(authenticator, expand)
    # Lookups of a server_condition read files: never on the event loop.
    step = await asyncio.to_thread(exchange.start, words[1] if len(words) > 1 else None)
    while isinstance(step, Challenge):
        session.reply(334, step.text)
        raw = await session.channel.read_line(AUTH_LINE_MAX, session.timeout)
        step = await asyncio.to_thread(exchange.respond, raw.rstrip(b"\r\n").decode("ascii", "replace"))
    if isinstance(step, Success):
        session.authenticator = authenticator.name
        session.authenticated_id = step.authenticated_id or ""
        session.auth_variables = dict(step.variables)
        session.reply(step.code, f"{step.esc} {step.text}")
        return
    who = session.host_text().removeprefix("H=")
    context.runtime.logger.main(f"{authenticator.name} authenticator failed for {who}: {escape(step.log_reason)}")
    if step.code // 100 == 5 and step.code != 501:
        session.auth_failures += 1
        _host_failures(session.host_address, now).append(now)
        # Slow a guesser down: 1 s, 2 s, 4 s ... before the reply.
        await asyncio.sleep(min(2.0 ** (session.auth_failures - 1), 8.0))
    session.reply(step.code, f"{step.esc} {step.text}" if step.esc else step.text)
    if session.auth_failures >= MAX_FAILURES_PER_CONNECTION:
        from mta.receive.smtp_server import Drop

        session.reply(421, f"{context.config.primary_hostname} too many authentication failures")
        raise Drop(f"SMTP call from {who} dropped: too many authentication failures")
