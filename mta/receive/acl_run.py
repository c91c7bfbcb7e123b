"""One run of an ACL: statements, verbs, messages and variables (Exim's acl_check_internal).

`AclRun` holds what Exim keeps in globals while an ACL runs: the user and
log messages being built, the expansion variables ($domain, $host_data,
$acl_verify_message, ...), the header lines added, and the nesting level of
``acl =`` conditions.  mta.receive.acl makes one per `AclEngine.run` and
turns its outcome into an `AclResult`; the conditions themselves are in
mta.receive.acl_conditions.
"""

from __future__ import annotations

from mta.config.loader import SourceLine
from mta.errors import ConfigError, DeferError, ExpansionError
from mta.expand import ExpandContext, LookupDeferError, expand
from mta.message.address import split_address
from mta.message.headers import fold_message_data
from mta.printable import printable
from mta.receive.acl_conditions import HANDLERS, list_context
from mta.receive.acl_log import host_and_ident, sender_fullhost
from mta.receive.acl_syntax import VERBS, Acl, AclStatement, parse_acl
from mta.receive.acl_types import AclContext, Rc
from mta.taint import is_tainted, taint

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.config.lists import ListContext
    from mta.receive.acl import AclEngine

MAX_NESTING = 20
# For which outcomes of a statement its message and log_message are used (Exim's msgcond);
# for accept and discard, FAIL counts only after endpass.
_MESSAGE_OUTCOMES = {
    "accept": (Rc.OK, Rc.FAIL, Rc.FAIL_DROP),
    "defer": (Rc.OK,),
    "deny": (Rc.OK,),
    "discard": (Rc.OK, Rc.FAIL, Rc.FAIL_DROP),
    "drop": (Rc.OK,),
    "require": (Rc.FAIL, Rc.FAIL_DROP),
    "warn": (Rc.OK,),
}


def locate_acl(engine: AclEngine, text: str, where: str) -> Acl | None:
    """The ACL `text` stands for: a named one, ``/file``, or inline text; None for an unknown name.

    Exim's rule: a string without spaces is an ACL name if one is defined,
    a file if it starts with ``/``; anything else is the text of an ACL.  A
    single word that is neither a defined name nor a verb is taken as a
    misspelt name.  File and inline ACLs are parsed once and remembered.
    Raises ConfigError (bad ACL text) and OSError (unreadable file).
    """
    named = engine.acls.get(text)  # (an ACL's name is one word)
    if named is not None:
        return named
    if not any(c.isspace() for c in text):
        if not text.startswith("/") and text not in VERBS:
            return None
    cached = engine.dynamic.get(text)
    if cached is not None:
        return cached
    if text.startswith("/") and not any(c.isspace() for c in text):
        with open(text, encoding="utf-8", errors="surrogateescape") as f:
            acl = parse_acl(text, _logical_lines(f.read(), text), engine.config)
    else:
        acl = parse_acl(f"inline ACL ({where})", _logical_lines(text, f"inline ACL ({where})"), engine.config)
    engine.dynamic[text] = acl
    return acl


def _logical_lines(text: str, path: str) -> list[SourceLine]:
    """Lines of ACL text as Exim's acl_getline reads them: comments and blank lines skipped,
    a backslash at the end continues onto the next line (its leading space dropped)."""
    lines: list[SourceLine] = []
    physical = text.split("\n")
    i = 0
    while i < len(physical):
        start, line = i, physical[i].rstrip()
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(physical):
            nxt = physical[i].strip()
            i += 1
            if nxt.startswith("#"):
                continue
            line = line[:-1] + nxt
        lines.append(SourceLine(line.rstrip("\\"), path, start + 1))
    return lines


# What the conditions of a run set; unset when it starts.
_RUN_VARIABLES: dict[str, str | None] = {
    "acl_verify_message": None,
    "sender_verify_failure": None,
    "recipient_verify_failure": None,
    "address_data": None,
    "sender_address_data": None,
    "host_data": None,
    "sender_data": None,
    "recipient_data": None,
    "domain_data": None,
    "local_part_data": None,
    "sender_rate": None,
    "sender_rate_limit": None,
    "sender_rate_period": None,
    "acl_narg": "0",
    **{f"acl_arg{n}": None for n in range(1, 10)},
    "dnslist_domain": None,
    "dnslist_matched": None,
    "dnslist_text": None,
    "dnslist_value": None,
}


def _clean(value: str | None) -> str | None:
    """A client-supplied one-line value as a variable: tainted, control characters escaped."""
    return None if value is None else taint(printable(value))


class AclRun:
    """The state of one ACL check; see the module docstring."""

    def __init__(self, engine: AclEngine, ctx: AclContext) -> None:
        self.engine = engine
        self.ctx = ctx
        self.config = engine.config
        self.logger = engine.runtime.logger
        self.user_msg: str | None = None
        self.log_msg: str | None = None
        self.temp_details = False
        self.added_headers: list[str] = []
        self.log_reject_target = frozenset({"main", "reject"})
        self.sender_verify_failure: tuple[str, str, bool] | None = None
        self.level = 0
        self.tracing = ctx.trace is not None  # (trace text is made only when someone reads it)
        self.log_is_own = False  # log_message (not the user message) made log_msg
        self.caseful_local_part: str | None = None
        # ratelimit results remembered for this command: key -> rate
        self.ratelimits: dict[str, float] = {}
        self.list_contexts: dict[bool, ListContext] = {}
        if ctx.recipient is not None:
            self.caseful_local_part = taint(split_address(ctx.recipient)[0])
        # Made when first wanted: most statements (`hosts = +relay_from_hosts`) expand nothing,
        # and building the forty variables was a twentieth of a receiving process's work.
        self._variables_made: dict[str, Any] | None = None
        self._variables_set: dict[str, Any] = {}  # set_variable's, before they were made
        self._expand_context: ExpandContext | None = None

    @property
    def variables(self) -> dict[str, Any]:
        """The expansion variables of this run: made at first use, then kept and updated."""
        if self._variables_made is None:
            self._variables_made = self._variables()
            self._variables_made.update(self._variables_set)
        return self._variables_made

    def set_variable(self, name: str, value: Any) -> None:
        """variables[name] = value, without making the variables if nothing has used them yet."""
        if self._variables_made is None:
            self._variables_set[name] = value
        else:
            self._variables_made[name] = value

    @property
    def expand_context(self) -> ExpandContext:
        if self._expand_context is None:
            self._expand_context = ExpandContext(
                variables=self.variables, headers=self.ctx.headers, match_list=self._match_list
            )
        return self._expand_context

    # -- variables ----------------------------------------------------------------

    def _variables(self) -> dict[str, Any]:
        ctx = self.ctx
        v: dict[str, Any] = dict(self.engine.config_variables())
        command = _clean(ctx.smtp_command)
        v.update(
            {
                "sender_host_address": ctx.host_address,
                "sender_host_port": str(ctx.host_port) if ctx.host_port is not None else None,
                "sender_host_name": _clean(ctx.host_name),
                "sender_helo_name": _clean(ctx.helo_name),
                "sender_fullhost": _clean(sender_fullhost(ctx)),
                "sender_ident": _clean(ctx.ident),
                "interface_address": ctx.interface_address,
                "interface_port": str(ctx.interface_port) if ctx.interface_port is not None else None,
                "received_ip_address": ctx.interface_address,
                "received_port": str(ctx.interface_port) if ctx.interface_port is not None else None,
                "received_protocol": ctx.received_protocol,
                "authenticated_id": _clean(ctx.authenticated_id),
                "sender_host_authenticated": ctx.authenticator,
                "tls_cipher": _clean(ctx.tls_cipher),
                "tls_in_cipher": _clean(ctx.tls_cipher),
                "smtp_command": command,
                "smtp_command_argument": taint(command.partition(" ")[2].strip()) if command else None,
                "message_size": str(ctx.message_size) if ctx.message_size is not None else "-1",
                "recipients": taint(", ".join(ctx.recipients)),
                "recipients_count": str(len(ctx.recipients)),
                "rcpt_count": str(ctx.rcpt_count),
            }
        )
        v.update(_RUN_VARIABLES)
        if ctx.sender_address is not None:
            local_part, _, domain = ctx.sender_address.rpartition("@")
            v["sender_address"] = taint(ctx.sender_address)
            v["return_path"] = taint(ctx.sender_address)
            v["sender_address_local_part"] = taint(local_part) if ctx.sender_address else None
            v["sender_address_domain"] = taint(domain) if ctx.sender_address else None
        if ctx.recipient is not None:
            local_part, domain = split_address(ctx.recipient)
            # Exim lower-cases $local_part in the RCPT ACL unless control = caseful_local_part.
            v["local_part"] = taint(local_part.lower())
            v["domain"] = taint(domain.lower())
        v.update(ctx.connection.dnslist_variables)
        v.update(ctx.connection_vars)
        v.update(ctx.message_vars)
        return v

    def set_acl_variable(self, name: str, value: str) -> None:
        (self.ctx.connection_vars if name.startswith("acl_c") else self.ctx.message_vars)[name] = value
        self.variables[name] = value

    def expand(self, text: str) -> str:
        """Expand configuration text with this run's variables; ExpansionError propagates."""
        return expand(text, self.expand_context)

    def _match_list(self, kind: str, subject: str, list_text: str) -> bool:
        from mta.config.lists import match_list

        return match_list(kind, subject, list_text, list_context(self, resolve=False)).matched

    def trace(self, text: str) -> None:
        if self.ctx.trace is not None:
            self.ctx.trace(text)

    # -- running ACLs --------------------------------------------------------------

    async def check_top(self, text: str) -> Rc:
        """The top level: the option's value is expanded first; a forced failure accepts."""
        try:
            expanded = self.expand(text) if "$" in text or "\\" in text else text
        except ExpansionError as exc:
            if exc.forced:
                return Rc.OK
            self.log_msg = f'failed to expand ACL string "{text}": {exc.message}'
            return Rc.DEFER if isinstance(exc, LookupDeferError) else Rc.ERROR
        return await self.check_acl(expanded)

    async def check_acl(self, text: str) -> Rc:
        """Find and run one ACL (a name, a /file or inline text), Exim's acl_check_internal."""
        if self.level > MAX_NESTING:
            self.log_msg = "ACL nested too deep: possible loop"
            return Rc.ERROR
        if is_tainted(text):  # (before strip(), which gives a plain str)
            self.logger.panic(f'attempt to use tainted ACL text "{printable(text)}"')
            self.log_msg = "internal configuration error"  # nothing about it for the client
            return Rc.ERROR
        text = text.strip()
        where = self.ctx.stage.option
        try:
            if text.startswith("/") and text not in self.engine.dynamic:
                import asyncio  # here: -bV checks the ACLs and needs no event loop

                acl = await asyncio.to_thread(locate_acl, self.engine, text, where)
            else:
                acl = locate_acl(self.engine, text, where)
        except OSError as exc:
            self.log_msg = f'failed to open ACL file "{text}": {exc.strerror or exc}'
            return Rc.ERROR
        except ConfigError as exc:
            self.log_msg = str(exc)
            return Rc.ERROR
        if acl is None:
            self.log_msg = f'no ACL named "{text}"'
            return Rc.ERROR
        self.trace(f'using ACL "{acl.name}"')
        for statement in acl.statements:
            rc = await self._statement(acl, statement)
            if rc is not None:
                return rc
        self.trace(f'end of ACL "{acl.name}": implicit DENY')
        return Rc.FAIL

    async def _statement(self, acl: Acl, statement: AclStatement) -> Rc | None:
        """Run one statement; the ACL's outcome, or None to go on to the next statement."""
        verb = statement.verb
        self.user_msg = self.log_msg = None
        self.temp_details = False
        if self.tracing:
            self.trace(f'processing "{verb}" ({statement.path} {statement.line})')
        cond, endpass = await self._conditions(statement)
        name = f'ACL "{acl.name}"'
        if cond is Rc.DEFER:
            self.trace(f"{verb}: condition test deferred in {name}")
            if verb != "warn":
                return Rc.DEFER
        elif cond is Rc.ERROR:
            self.trace(f"{verb}: condition test error in {name}")
            return Rc.ERROR
        elif self.tracing:
            self.trace(f"{verb}: condition test {'succeeded' if cond is Rc.OK else 'failed'} in {name}")
        quit_check = self.level == 0 and self.ctx.stage.option == "acl_smtp_quit"
        outcome: Rc | None = None
        if verb in ("accept", "discard"):
            if cond in (Rc.OK, Rc.DISCARD):
                outcome = cond if verb == "accept" else Rc.DISCARD
            elif endpass:
                outcome = cond
        elif verb == "defer" and cond is Rc.OK:
            outcome, self.temp_details = Rc.DEFER, True
        elif verb == "deny" and cond is Rc.OK:
            outcome = Rc.FAIL
        elif verb == "drop" and cond is Rc.OK:
            outcome = Rc.FAIL_DROP
        elif verb == "require" and cond is not Rc.OK:
            outcome = cond
        elif verb == "warn":
            if cond is Rc.OK:
                self._warn(statement)
            elif cond is Rc.DEFER and self.logger.selected("acl_warn_skipped"):
                detail = f": {self.log_msg}" if self.log_msg else ""
                self.logger.main(
                    f"{host_and_ident(self.ctx, self.logger.selectors)} Warning: ACL 'warn' statement skipped "
                    f"(in {name} at line {statement.line} of {statement.path}): condition test deferred{detail}"
                )
            self.user_msg = self.log_msg = None  # in case the implicit deny follows
        if outcome is None:
            return None
        if quit_check and not (verb == "accept" and outcome is Rc.OK):
            self.log_msg = f"QUIT or not-QUIT toplevel ACL may not fail ('{verb}' verb used incorrectly)"
            return Rc.ERROR
        label = {Rc.OK: "ACCEPT", Rc.DISCARD: "DISCARD", Rc.DEFER: "DEFER", Rc.FAIL_DROP: "DROP"}
        self.trace(f"end of {name}: {label.get(outcome, 'DENY')}")
        return outcome

    async def _conditions(self, statement: AclStatement) -> tuple[Rc, bool]:
        """Evaluate a statement's items in order (Exim's acl_check_condition)."""
        verb = statement.verb
        user_message: str | None = None
        log_message: str | None = None
        endpass = False
        rc = Rc.OK
        for item in statement.items:
            if item.name == "message":
                if self.tracing:
                    self.trace(f"  message: {item.value}")
                user_message = item.value
                continue
            if item.name == "log_message":
                if self.tracing:
                    self.trace(f"l_message: {item.value}")
                log_message = item.value
                continue
            if item.name == "endpass":
                endpass = True
                continue
            arg = item.value
            if item.kind.expanded:
                try:
                    arg = self.expand(item.value)
                except ExpansionError as exc:
                    if exc.forced:
                        continue  # a forced failure: the condition is ignored (taken as true)
                    self.log_msg = f'failed to expand ACL string "{item.value}": {exc.message}'
                    return (Rc.DEFER if isinstance(exc, LookupDeferError) else Rc.ERROR), endpass
            if self.tracing:
                self.trace(f"check {item.describe()}")
                if arg != item.value:
                    self.trace(f"  = {arg}")
            if self.ctx.stage not in item.kind.stages:
                action = "use" if item.kind.modifier else "test"
                self.log_msg = f"cannot {action} {item.name} condition in {self.ctx.stage.where_name} ACL"
                return Rc.ERROR, endpass
            try:
                rc = await HANDLERS[item.name](self, item, arg, verb)
            except DeferError as exc:
                self.log_msg, rc = exc.message, Rc.DEFER
            except LookupDeferError as exc:
                self.log_msg, rc = exc.message, Rc.DEFER
            except (ExpansionError, ConfigError) as exc:
                self.log_msg, rc = (exc.message if isinstance(exc, ExpansionError) else str(exc)), Rc.ERROR
            if not item.kind.modifier and item.negated:
                rc = {Rc.OK: Rc.FAIL, Rc.FAIL: Rc.OK, Rc.FAIL_DROP: Rc.OK}.get(rc, rc)
            if rc is not Rc.OK:
                break
        if endpass and rc is Rc.OK:
            user_message = None
        if rc in _MESSAGE_OUTCOMES[verb] and (rc is not Rc.FAIL or verb not in ("accept", "discard") or endpass):
            self._messages(verb, rc, user_message, log_message)
        self.set_variable("acl_verify_message", None)
        return rc, endpass

    def _messages(self, verb: str, rc: Rc, user_message: str | None, log_message: str | None) -> None:
        """Expand message and log_message now that the outcome is known."""
        old_user = self.user_msg
        old_log = self.log_msg if self.log_msg is not None else old_user
        if verb == "warn" or (rc is Rc.OK and verb in ("accept", "discard")):
            # Messages from conditions (verify, nested ACLs) are for rejections only.
            self.user_msg = self.log_msg = None
        if user_message is not None:
            self.variables["acl_verify_message"] = old_user
            text = self._expand_message(user_message)
            if text:
                self.user_msg = text
        self.log_is_own = False
        if log_message is not None:
            self.variables["acl_verify_message"] = old_log
            text = self._expand_message(log_message)
            if text:
                self.log_msg = text if self.log_msg is None else f"{text}: {self.log_msg}"
                self.log_is_own = True
        if not self.log_msg:
            self.log_msg = self.user_msg

    def _expand_message(self, text: str) -> str | None:
        try:
            return self.expand(text)
        except ExpansionError as exc:
            if not exc.forced:
                self.logger.panic(f'failed to expand ACL message "{text}": {exc.message}')
            return None

    # -- warn and add_header --------------------------------------------------------

    def _warn(self, statement: AclStatement) -> None:
        """A warn statement whose conditions hold: log its log_message once per message,
        and (deprecated, as Exim) add its message as a header line."""
        if self.log_msg and self.log_is_own:
            text = f"{host_and_ident(self.ctx, self.logger.selectors)} Warning: {printable(self.log_msg)}"
            if text not in self.ctx.message.warnings_logged:
                self.ctx.message.warnings_logged.add(text)
                self.logger.main(text)
        if not self.user_msg:
            return
        if not self.ctx.stage.in_message:
            self.logger.panic(
                f'ACL "warn" with "message" setting found in a non-message ({self.ctx.stage.where_name}) ACL: '
                "cannot specify header lines here: message ignored"
            )
            return
        self.add_header(self.user_msg)

    def add_header(self, text: str) -> None:
        """Exim's setup_header: one or more header lines, each added once per message.

        A line break that came from message data does not start a line (fold_message_data)."""
        text = fold_message_data(text).lstrip("\n").rstrip("\n")
        if not text:
            return
        lines: list[str] = []
        for physical in text.split("\n"):
            if lines and physical[:1] in (" ", "\t"):
                lines[-1] += "\n" + physical
            else:
                lines.append(physical)
        for line in lines:
            for position in (":after_received:", ":at_start_rfc:", ":at_start:", ":at_end:"):
                if line.lower().startswith(position):
                    # mta adds ACL headers at the end only; the position is dropped.
                    line = line[len(position) :].lstrip(" \t")
                    break
            name = line.split(":", 1)[0] if ":" in line else ""
            if not name or not all(33 <= ord(c) <= 126 for c in name):
                line = "X-ACL-Warn: " + line
            header = line + "\n"
            if header not in self.ctx.message.added_headers:
                self.ctx.message.added_headers.append(header)
                self.added_headers.append(header)
