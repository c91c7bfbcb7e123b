"""The ACL engine: Exim 4's access control lists for the SMTP session and local reception.

    engine = AclEngine(runtime)                   # parses and checks every ACL; ConfigError
    result = await engine.check(ctx)              # the ACL the main option of ctx.stage names
    result = await engine.run(option_value, ctx)  # a given ACL (name, inline text, /file) or None

`AclContext` (what the session knows), `AclResult` (the verdict) and
`AclStage` are in mta.receive.acl_types and re-exported here; the helpers
that log a rejection and make its reply are in mta.receive.acl_log.

Semantics (Exim's acl.c; docs/acl.md has the whole language): the
statements are tried in order; a statement's conditions and modifiers are
evaluated in the order written until one fails.  ``accept``, ``deny``,
``defer``, ``discard`` and ``drop`` end the ACL when all their conditions
hold; ``require`` ends it with a deny when one fails; ``warn`` never ends it.
A condition that cannot be decided (a DNS or lookup failure, a verify that
defers) makes the ACL defer, except on ``warn``.  The end of an ACL is an
implicit deny.  ``message`` and ``log_message`` are expanded only when the
statement's outcome is known, so they may come before the condition they
explain and use the variables it set.

Security: everything a client sent is a variable's value, tainted, never
expanded as text, never a file name; an ACL name or inline ACL that comes
out of an expansion tainted is refused.  Control characters in client
strings are escaped before they become variables, so no value can break a
header line that add_header makes or a log line.

Blocking: routing for verify, the ratelimit database, and lists or
expansions that read files or resolve names run in a thread
(asyncio.to_thread); DNS block lists and HELO checks use dnspython's async
resolver; nothing else waits.  So the session's event loop keeps serving
other clients while an ACL waits.

Diagnostics: ``warn`` log lines, ``logwrite`` and the DNS-list and
code-class complaints are written by the engine to the main or panic log;
the rejection itself is logged by the session (acl_log.log_rejection), which
knows the command.  With ``ctx.trace`` set (``mta -bh``) every decision is
reported in Exim's debug wording.
"""

from __future__ import annotations

import os
import re
import time

from mta.errors import ConfigError, ExpansionError
from mta.expand import check as check_expansion
from mta.receive.acl_run import AclRun, locate_acl
from mta.receive.acl_syntax import Acl, check_stage, parse_acl
from mta.receive.acl_types import AclContext, AclResult, AclStage, Rc

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.config.loader import Config
    from mta.hints.db import HintsDb
    from mta.route.dns import DnsResolver
    from mta.route.engine import RoutingEngine
    from mta.runtime import Runtime

__all__ = ["AclContext", "AclEngine", "AclResult", "AclStage", "check_acls"]

# Exim's regex_smtp_code: a code, a space, and maybe an enhanced code and a space.
_SMTP_CODE = re.compile(r"(\d\d\d)\s(?:(\d\.\d\d?\d?\.\d\d?\d?)\s)?")
_VERDICT = {
    Rc.OK: "accept",
    Rc.DISCARD: "discard",
    Rc.FAIL: "deny",
    Rc.FAIL_DROP: "drop",
    Rc.DEFER: "defer",
    Rc.ERROR: "defer",
}
# The stages where "discard" makes sense: those that receive a message, except PREDATA,
# which is in the middle of the DATA command.
_DISCARD_STAGES = frozenset({AclStage.MAIL, AclStage.RCPT, AclStage.DATA, AclStage.MIME, AclStage.NOT_SMTP})


class AclEngine:
    """Every ACL of a configuration, parsed and checked once; runs them for sessions.

    Made at start-up, before the daemon forks its receiving processes; the
    DNS resolver, the routing engine and the ratelimit database are made on
    first use in the process that uses them.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.acls: dict[str, Acl] = {
            name: parse_acl(name, lines, self.config) for name, lines in self.config.acls.items()
        }
        # ACLs read from inline option text or /files at run time, by text.
        self.dynamic: dict[str, Acl] = {}
        # (list text, list type) -> whether matching it may block (files, lookups, names)
        self.blocking_lists: dict[tuple[str, str], bool] = {}
        self._routing: RoutingEngine | None = None
        self._resolver: DnsResolver | None = None
        self._ratelimit_db: HintsDb | None = None
        self._config_variables: tuple[int, dict[str, Any]] | None = None
        for stage in AclStage:
            self._check_option(stage)
        # Asked at every command (MAIL, RCPT, DATA...): the configuration does not change.
        self._accepts_unset = frozenset(
            stage for stage in AclStage if not stage.denies_when_unset and self.option_value(stage) is None
        )

    # -- start-up checks --------------------------------------------------------

    def _check_option(self, stage: AclStage) -> None:
        value = self.option_value(stage)
        if value is None:
            return
        option = stage.option
        if "$" in value:
            try:
                check_expansion(value)
            except ExpansionError as exc:
                raise ConfigError(f"{option}: {exc.message}", self.config.path) from None
            return
        try:
            acl = locate_acl(self, value.strip(), option)
        except (ConfigError, OSError, ValueError) as exc:
            raise ConfigError(f"{option}: {exc}", self.config.path) from None
        if acl is None:
            raise ConfigError(f'{option}: no ACL named "{value.strip()}"', self.config.path)
        self._check_nested(acl, stage, option, set())

    def _check_nested(self, acl: Acl, stage: AclStage, option: str, seen: set[str]) -> None:
        if acl.name in seen:
            return
        seen.add(acl.name)
        check_stage(acl, stage, option)
        for statement in acl.statements:
            for item in statement.items:
                if item.name == "acl" and "$" not in item.value:
                    name = item.value.split()[0] if item.value.split() else ""
                    nested = self.acls.get(name)
                    if nested is None and " " not in item.value.strip() and not name.startswith("/"):
                        raise ConfigError(f'acl = {item.value}: no ACL named "{name}"', item.path, item.line)
                    if nested is not None:
                        self._check_nested(nested, stage, option, seen)

    # -- public -----------------------------------------------------------------

    def option_value(self, stage: AclStage) -> str | None:
        """The main option naming the ACL for `stage`, as configured (unexpanded), or None."""
        value = getattr(self.config.main, stage.option)
        return value if value not in (None, "") else None

    def accepts_unset(self, stage: AclStage) -> bool:
        """No ACL is configured for `stage` and that means accept (every stage but RCPT, VRFY,
        EXPN and ETRN)."""
        return stage in self._accepts_unset

    async def check(self, ctx: AclContext) -> AclResult:
        """Run the ACL the configuration names for ``ctx.stage`` (its default if none)."""
        return await self.run(self.option_value(ctx.stage), ctx)

    async def run(self, acl: str | None, ctx: AclContext) -> AclResult:
        """Run `acl` for `ctx`: an option's value as configured (a name, ``accept``/``deny``,
        inline ACL text or ``/file``; expanded here, as Exim does), or None for the stage's
        default (deny for RCPT, VRFY, EXPN and ETRN, accept elsewhere)."""
        stage = ctx.stage
        if acl is None and ctx.trace is None and not stage.denies_when_unset:
            # No ACL for this stage (MAIL, PREDATA and DATA in most configurations): accept
            # without building a run, whose variables cost more than the rest of a command.
            return AclResult(verb="accept")
        run = AclRun(self, ctx)
        if acl is None:
            rc = Rc.FAIL if stage.denies_when_unset else Rc.OK
            run.trace(f"{stage.option} is not set: {'implicit DENY' if rc is Rc.FAIL else 'accept'}")
        else:
            rc = await run.check_top(acl)
        if rc is Rc.DISCARD and stage not in _DISCARD_STAGES:
            self.runtime.logger.panic(f'"discard" verb not allowed in {stage.where_name} ACL')
            rc, run.log_msg = Rc.ERROR, f'"discard" verb not allowed in {stage.where_name} ACL'
        return self._result(run, rc)

    # -- the verdict ------------------------------------------------------------

    def _result(self, run: AclRun, rc: Rc) -> AclResult:
        stage = run.ctx.stage
        verb = _VERDICT[rc]
        user_message, log_message = run.user_msg, run.log_msg
        if rc in (Rc.DEFER, Rc.ERROR):
            if stage is AclStage.NOT_SMTP:
                verb = "deny"  # there is no temporary failure for a local submission
            elif not run.temp_details:
                user_message = None  # the reason stays in the log (Exim's acl_temp_details)
        if stage is AclStage.QUIT:
            verb = "accept"  # QUIT always gets 221; its ACL is for side effects
        code = None
        if user_message:
            code, user_message = self._code(user_message, verb, stage)
        return AclResult(
            verb=verb,
            user_message=user_message or None,
            log_message=log_message,
            add_headers=list(run.added_headers),
            code=code,
            log_reject_target=run.log_reject_target,
            sender_verify_failure=run.sender_verify_failure,
            error=rc is Rc.ERROR,
        )

    def _code(self, message: str, verb: str, stage: AclStage) -> tuple[str | None, str]:
        """Split a leading SMTP code off `message`; keep it only if its class is right."""
        m = _SMTP_CODE.match(message)
        if m is None:
            return None, message
        text = message[m.end() :]
        if verb in ("accept", "discard"):
            expected = "3" if stage is AclStage.PREDATA else "2"
        elif verb == "defer":
            expected = "4"
        else:
            expected = stage.reject_code[0]
        if stage is not AclStage.VRFY and m.group(1)[0] != expected:
            self.runtime.logger.panic(
                f'configured error code starts with incorrect digit (expected {expected}) in "{message}"'
            )
            return None, text
        if stage is AclStage.QUIT:
            return None, text  # 221 cannot be changed
        return m.group(0).strip(), text

    # -- shared services, made on first use ------------------------------------

    def config_variables(self) -> dict[str, Any]:
        """The configuration's variables and the time of day, made at most once a second
        (they are the same for every ACL run in that second)."""
        now = int(time.time())
        if self._config_variables is None or self._config_variables[0] != now:
            from mta.config.variables import config_variables

            self._config_variables = (now, config_variables(self.config))
        return self._config_variables[1]

    def routing(self) -> RoutingEngine:
        if self._routing is None:
            from mta.route.engine import RoutingEngine

            self._routing = RoutingEngine(self.runtime.directors, self.runtime.routers, self.config)
        return self._routing

    async def resolver(self) -> DnsResolver:
        if self._resolver is None:
            # Reading /etc/resolv.conf is file I/O: not on the event loop.
            import asyncio  # here: -bV checks the ACLs and needs no event loop

            from mta.route.context import make_resolver

            self._resolver = await asyncio.to_thread(make_resolver, self.config)
        return self._resolver

    def sync_resolver(self) -> DnsResolver:
        """The same resolver for code already in a thread (verification routing)."""
        if self._resolver is None:
            from mta.route.context import make_resolver

            self._resolver = make_resolver(self.config)
        return self._resolver

    def ratelimit_db(self) -> HintsDb:
        if self._ratelimit_db is None:
            from mta.hints.db import HintsDb

            self._ratelimit_db = HintsDb(
                os.path.join(self.config.main.spool_directory, "db"), "ratelimit", panic=self.runtime.logger.panic
            )
        return self._ratelimit_db


def check_acls(config: Config) -> None:
    """Everything -bV checks of the ACLs: build an engine and drop it (ConfigError with file:line)."""
    from mta.runtime import build_runtime

    AclEngine(build_runtime(config))
