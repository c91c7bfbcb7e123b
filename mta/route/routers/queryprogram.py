"""The queryprogram router: ask an external program how to route an address.

The program is run without a shell, as an unprivileged user, with a minimal
environment; it writes one line on its standard output:

    ACCEPT TRANSPORT=t HOSTS=h LOOKUP=byname DATA=x   (Exim 4 form; every key optional)
    ACCEPT host-list [options]                        (positional form, as a route_list rule)
    PASS                  next router, even with no_more
    DECLINE               next router, unless no_more
    FAIL text             bounce the address with text
    DEFER text            try again later
    FREEZE text           try again later, and freeze the message
    REDIRECT addr, addr   replace the address by these addresses

Results: Accept (hosts looked up as for domainlist, host_find_failed =
defer), Pass, Decline, Redirect; raises FailError for FAIL, DeferError for
DEFER and for every problem with the program (cannot start it, non-zero
exit, killed, timed out, no or unintelligible output), FreezeError for
FREEZE.

Security: the command is split into arguments at white space *before*
expansion (quote an argument to keep spaces), and each argument is
expanded on its own, so data such as $local_part can only ever be one
whole argument, never split into several or read by a shell.  argv[0] must
be an absolute path and may not come from tainted data.  The program runs
as command_user/command_group (default: mta_user/mta_group when mta runs
as root; never as root), with no supplementary groups, umask 077, in
current_directory (default /), and only PATH=/bin:/usr/bin, LOCAL_PART,
DOMAIN and SENDER in its environment.  Its output is data: addresses from
REDIRECT are tainted, host names are only looked up.
"""

from __future__ import annotations

import grp
import os
import pwd
import selectors
import signal
import subprocess
import time

from mta import record
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import AddressError, ConfigError, DeferError, ExpansionError, FailError
from mta.message.address import parse_envelope_address, qualify
from mta.route.base import Accept, Decline, Pass, Redirect, Router, RouteResult, RouterOptions
from mta.route.context import RoutingContext
from mta.route.item import AddressItem
from mta.route.routers._common import (
    LOOKUP_METHODS,
    FreezeError,
    HostFinder,
    RouteOptionWords,
    dequote,
    fallback_hosts,
    parse_host_list,
    parse_route_options,
    split_rule,
)
from mta.taint import file_name_refused, is_tainted, taint

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

CHILD_PATH = "/bin:/usr/bin"
# Of the command's output only this much is kept (Exim reads 1024 bytes).
MAX_OUTPUT = 64 * 1024
# Reply keys of the Exim 4 form, lower-cased.
_ACCEPT_KEYS = ("transport", "hosts", "lookup", "data")


@options_table
class QueryprogramOptions(RouterOptions):
    command: str | None = option(
        None,
        Kind.STRING,
        "The program and its arguments, split at white space (quote to keep spaces) and then each argument "
        "expanded separately. The first must be an absolute path.",
        expand=True,
    )
    command_user: str | None = option(
        None,
        Kind.STRING,
        "User (name or uid) to run the command as. Default: mta_user when mta runs as root, else the user "
        "mta runs as. Root is refused.",
        expand=True,
    )
    command_group: str | None = option(
        None,
        Kind.STRING,
        "Group (name or gid) to run the command as. Default: command_user's group, or mta_group.",
        expand=True,
    )
    timeout: int = option(3600, Kind.TIME, "Kill the command and defer the address after this long.", minimum=1)
    current_directory: str | None = option(
        None, Kind.STRING, "Working directory of the command. Default: /.", expand=True
    )


@record.dataclass(frozen=True, slots=True)
class _Identity:
    uid: int | None  # None: do not change (not running as root)
    gid: int | None


class QueryprogramRouter(Router):
    """Run a program (without a shell, unprivileged) and route as its one-line reply says: ACCEPT, PASS,
    DECLINE, FAIL, DEFER, FREEZE or REDIRECT."""

    options: QueryprogramOptions
    options_class: ClassVar[type[DriverOptions]] = QueryprogramOptions

    def check(self, config: Any) -> None:
        super().check(config)
        command = self.options.command
        if not command or not command.strip():
            raise ConfigError(f"{self.name} router: command must be set", *self.source)
        try:
            program = split_command(command)[0]
        except ValueError as exc:
            raise ConfigError(f"{self.name} router: command: {exc}", *self.source) from None
        if "$" not in program and not program.startswith("/"):
            raise ConfigError(f'{self.name} router: command "{program}" is not an absolute path', *self.source)

    # -- routing ------------------------------------------------------------

    def route(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        argv = self._argv(item, ctx)
        identity = self._identity(item, ctx)
        cwd = "/"
        if self.options.current_directory:
            cwd = ctx.expand_or_defer(self.options.current_directory, item, "current_directory") or "/"
            if file_name_refused(cwd):
                raise DeferError(f'{self.name} router: tainted current_directory "{cwd}" refused')
        reply = self._run(argv, identity, cwd, item, ctx)
        return self._interpret(reply, item, ctx)

    def _argv(self, item: AddressItem, ctx: RoutingContext) -> list[str]:
        try:
            words = split_command(self.options.command or "")
        except ValueError as exc:
            raise DeferError(f"{self.name} router: command: {exc}") from None
        argv: list[str] = []
        for word in words:
            try:
                argv.append(ctx.expand(word, item))
            except ExpansionError as exc:
                raise DeferError(f'{self.name} router: failed to expand "{word}": {exc.message}') from None
        program = argv[0]
        if is_tainted(program):
            raise DeferError(f'{self.name} router: tainted command name "{program}" refused')
        if not program.startswith("/"):
            raise DeferError(f'{self.name} router: command "{program}" is not an absolute path')
        return argv

    def _identity(self, item: AddressItem, ctx: RoutingContext) -> _Identity:
        opts = self.options
        user_text = ctx.expand_or_defer(opts.command_user, item, "command_user") if opts.command_user else None
        group_text = ctx.expand_or_defer(opts.command_group, item, "command_group") if opts.command_group else None
        for what, value in (("command_user", user_text), ("command_group", group_text)):
            if value is not None and is_tainted(value):
                # Message data must not choose whom the command runs as.
                raise DeferError(f'{self.name} router: tainted {what} "{value}" refused')
        if user_text is None and os.geteuid() != 0:
            # Not root: the command can only run as we do.
            gid = _find_group(group_text, self.name) if group_text else None
            return _Identity(None, gid)
        if user_text is None:
            user_text = ctx.config.main.mta_user
            group_text = group_text or ctx.config.main.mta_group
        uid, user_gid = _find_user(user_text.strip(), self.name)
        gid = _find_group(group_text.strip(), self.name) if group_text else user_gid
        if uid == 0:
            raise DeferError(f"{self.name} router: refusing to run the command as root (set command_user)")
        return _Identity(uid, gid)

    def _run(
        self, argv: list[str], identity: _Identity, cwd: str, item: AddressItem, ctx: RoutingContext
    ) -> str:
        env = {"PATH": CHILD_PATH, "LOCAL_PART": item.local_part, "DOMAIN": item.domain, "SENDER": ctx.sender_address}
        as_root = os.geteuid() == 0
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                close_fds=True,
                start_new_session=True,  # its own process group, killed whole on timeout
                user=identity.uid,
                group=identity.gid,
                extra_groups=[] if as_root else None,
                umask=0o077,
            )
        except OSError as exc:
            raise DeferError(
                f"{self.name} router couldn't create child process for {argv[0]}: {exc.strerror or exc}"
            ) from None
        except ValueError as exc:  # a NUL byte in an argument or the environment
            raise DeferError(f"{self.name} router couldn't create child process: {exc}") from None
        try:
            stdout, stderr = _collect(proc, self.options.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DeferError(f"{self.name} router: command timed out") from None
        if proc.returncode < 0:
            raise DeferError(f"{self.name} router: command killed by signal {-proc.returncode}")
        if proc.returncode > 0:
            detail = _first_line(stderr)
            raise DeferError(
                f"{self.name} router: command returned non-zero code {proc.returncode}"
                + (f": {detail}" if detail else "")
            )
        # Only the first non-blank line counts (and the output may have been
        # cut short in the middle of a character further on).
        first = next((line.strip() for line in stdout.splitlines() if line.strip()), b"")
        if not first:
            raise DeferError(f"{self.name} router: command failed to return data")
        try:
            return first.decode("utf-8")
        except UnicodeDecodeError:
            raise DeferError(f"{self.name} router: command output is not UTF-8") from None

    # -- the reply ----------------------------------------------------------

    def _interpret(self, reply: str, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        word, _, rest = reply.partition(" ")
        keyword = word.upper()
        rest = rest.strip()
        if keyword == "ACCEPT":
            return self._accept(rest, item, ctx)
        if keyword == "PASS":
            return Pass(rest or None)
        if keyword == "DECLINE":
            return Decline(rest or None)
        if keyword == "FAIL":
            raise FailError(rest or "forced rejection")
        if keyword == "DEFER":
            raise DeferError(rest or "forced defer")
        if keyword == "FREEZE":
            raise FreezeError(rest or "frozen by queryprogram")
        if keyword == "REDIRECT":
            return Redirect([AddressItem(taint(a)) for a in self._redirect_addresses(rest, item, ctx)])
        raise DeferError(f"{self.name} router: bad command yield: {_shorten(reply)}")

    def _accept(self, rest: str, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        words, hostlist, data = self._accept_fields(rest, ctx)
        if data is not None:
            item.address_data = data
        if words.transport is not None and ctx.transports and words.transport not in ctx.transports:
            raise DeferError(f"{self.name} router: unknown transport name {words.transport} yielded by command")
        if not hostlist:
            return Accept(transport=words.transport)
        try:
            specs = parse_host_list(hostlist, randomize=bool(words.randomize))
        except ValueError as exc:
            raise DeferError(f"{self.name} router: bad host list yielded by command: {exc}") from None
        finder = HostFinder(self, item, ctx)
        # Exim 4: a host the program names that does not exist defers.
        found = finder.find_all(specs, words.method, host_find_failed="defer", host_all_ignored="defer")
        if isinstance(found, Decline | Pass):
            return found
        item.fallback_hosts = fallback_hosts(self)
        return Accept(transport=words.transport, hosts=found)

    def _accept_fields(self, rest: str, ctx: RoutingContext) -> tuple[RouteOptionWords, str, str | None]:
        """(options, host list, DATA) from the text after ACCEPT, in either form."""
        # No host name, option word or transport name contains "=".
        if "=" not in rest:
            # Positional: ACCEPT host-list [byname|bydns... randomize transport]
            try:
                rule = split_rule(rest, with_domain=False)
                words = parse_route_options(rule[2] if rule else "", ctx.transports)
            except ValueError as exc:
                raise DeferError(f"{self.name} router: bad ACCEPT data yielded by command: {exc}") from None
            return words, rule[1] if rule else "", None
        try:
            fields = parse_keyed_fields(rest)
        except ValueError as exc:
            raise DeferError(f"{self.name} router: bad ACCEPT data yielded by command: {exc}") from None
        words = RouteOptionWords(transport=fields.get("transport") or None)
        lookup_type = fields.get("lookup")
        if lookup_type:
            if lookup_type not in LOOKUP_METHODS:
                raise DeferError(f'{self.name} router: bad lookup type "{lookup_type}" yielded by command')
            words.method = lookup_type
        return words, fields.get("hosts", ""), fields.get("data")

    def _redirect_addresses(self, rest: str, item: AddressItem, ctx: RoutingContext) -> list[str]:
        """The addresses of a REDIRECT reply: addresses only, no pipes, files or specials."""
        addresses: list[str] = []
        for raw in split_addresses(rest):
            text = raw[1:] if raw.startswith("\\") else raw
            if text[:1] in ("|", "/", ":"):
                raise DeferError(f'{self.name} router: error in redirect data: "{_shorten(raw)}" is not an address')
            try:
                address = parse_envelope_address(text)
            except AddressError as exc:
                raise DeferError(
                    f'{self.name} router: error in redirect data: "{_shorten(raw)}": {exc.message}'
                ) from None
            if not address:
                raise DeferError(f"{self.name} router: error in redirect data: empty address")
            # "\user" keeps the incoming domain, as in a .forward file.
            domain = item.domain if raw.startswith("\\") else ctx.config.qualify_recipient
            addresses.append(qualify(address, domain))
        if not addresses:
            raise DeferError(f"{self.name} router: error in redirect data: no addresses supplied")
        return addresses


# ---------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------


def split_command(text: str) -> list[str]:
    """Split a command at white space; "..." (with backslash escapes) and '...' keep spaces.

    Raises ValueError for an empty command or an unterminated quote.
    """
    words: list[str] = []
    rest = text
    while rest.strip():
        word, rest = dequote(rest)
        words.append(word)
    if not words:
        raise ValueError("empty command")
    return words


def parse_keyed_fields(text: str) -> dict[str, str]:
    """``KEY=value KEY="quoted value"`` as Exim's ${extract} reads them; keys lower-cased.

    Keys not known to ACCEPT are ignored, as Exim ignores them.  Raises
    ValueError for text that is not key=value pairs.
    """
    fields: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i].lower()
        while i < n and text[i].isspace():
            i += 1
        if not key or i >= n or text[i] != "=":
            raise ValueError(f'expected KEY=value at "{_shorten(text[start:])}"')
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value, rest = dequote(text[i:]) if i < n else ("", "")
        i = n - len(rest)
        if key in _ACCEPT_KEYS:
            fields[key] = value
    return fields


def split_addresses(text: str) -> list[str]:
    """Items separated by commas or white space, outside quotes and <...>."""
    items: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for c in text:
        if c == '"':
            quoted = not quoted
        elif c == "<" and not quoted:
            angle = True
        elif c == ">" and not quoted:
            angle = False
        if not quoted and not angle and (c == "," or c.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(c)
    if current:
        items.append("".join(current))
    return items


def _find_user(text: str, router: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except KeyError:
        if text.isdigit():
            return int(text), int(text)  # a numeric uid need not be in the passwd file
        raise DeferError(f'{router} router: command_user "{text}" is not a known user') from None
    return entry.pw_uid, entry.pw_gid


def _find_group(text: str, router: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise DeferError(f'{router} router: command_group "{text}" is not a known group') from None


def _collect(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """The command's stdout and stderr (at most MAX_OUTPUT bytes of each) once it has ended.

    Output beyond the limit is read and dropped, so that a runaway program
    can neither fill our memory nor block on a full pipe; it still has to
    end before `timeout`.  Raises subprocess.TimeoutExpired.
    """
    deadline = time.monotonic() + timeout
    kept: dict[int, bytearray] = {}
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            selector.register(stream, selectors.EVENT_READ)
            kept[stream.fileno()] = bytearray()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = kept[key.fd]
                buffer += chunk[: max(0, MAX_OUTPUT - len(buffer))]
    proc.wait(max(0.0, deadline - time.monotonic()))
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = bytes(kept[proc.stdout.fileno()]), bytes(kept[proc.stderr.fileno()])
    proc.stdout.close()
    proc.stderr.close()
    return stdout, stderr


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command and anything it started, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended between the timeout and the kill
    proc.wait()
    # Do not read the pipes: a grandchild that left the process group could
    # hold them open for ever.
    for stream in (proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return _shorten(text.splitlines()[0]) if text else ""


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
