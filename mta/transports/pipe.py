"""pipe transport: deliver a message by running a command with the message on its standard input.

The command comes from the ``command`` option, or, for a ``|command`` item
from an alias or forward file, from the item itself (unless
``force_command``).  It is split into arguments here, without a shell:
white space separates arguments, double quotes (with backslash escapes) or
single quotes group them.  Each argument of ``command`` is then expanded on
its own, so an expansion can never add an argument; ``$pipe_addresses``
standing as a whole argument becomes one argument per address, never split
or expanded.  Commands from alias and forward files are not expanded (as in
Exim); those from a filter's ``pipe`` command are, argument by argument,
with the filter's $thisaddress and $1.. (Exim's af_expand_pipe).
``use_shell`` runs the whole expanded string with ``/bin/sh -c`` instead;
that needs the result to be free of message data: tainted data,
``$pipe_addresses`` and ``$local_part`` included, is refused.

The command runs in its own process group with a fixed environment and
nothing inherited: DOMAIN, HOME, HOST (when the address has a host),
LOCAL_PART, LOCAL_PART_PREFIX, LOCAL_PART_SUFFIX, LOGNAME, USER (both the
local part, as Exim), MESSAGE_ID, PATH, QUALIFY_DOMAIN, RECIPIENT, SENDER,
SHELL=/bin/sh, TZ (when set), then the ``environment`` option's entries.
Its standard output and standard error are one stream, read while the
message is written, so a command that talks before it reads cannot
deadlock us; ``timeout`` bounds the whole run.

Outcomes, as Exim's pipe.c:

    exit 0                        delivered (but see return_output)
    exit in temp_errors (75:73)   DeferError
    other exit, 127 included      FailError "Child process of T transport returned N (could mean ...)
                                  from command: ..."; 127 is also used when the command cannot be run
    killed by a signal            DeferError (Exim fails; a signal is most often the system's doing,
                                  an OOM kill or a shutdown, so mta keeps the message)
    timeout                       FailError "pipe delivery process timed out", DeferError with
                                  timeout_defer; the process group is killed
    more than max_output          the process group is killed; FailError
    return_output                 any output fails the delivery, the output in the error text
    ignore_status                 every exit status and signal counts as success

Splitting the command and running the child process are
mta.transports._command's; this module decides what runs, with what
environment, and what its end means.  Runs in the delivery child, already
as the delivery user (mta.deliver.local_exec).
"""

from __future__ import annotations

import os
import signal

from mta import record
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, ExpansionError, FailError
from mta.route.item import AddressItem
from mta.taint import is_tainted, taint
from mta.transports import _local
from mta.transports._command import EX_EXECFAILED, RunResult, run_command, split_command
from mta.transports._local import BatchOptions
from mta.transports.base import DeliveryEnv, LocalTransport, OutgoingMessage
from mta.transports.write import header_edits, transport_return_path
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = ["PipeOptions", "PipeTransport", "split_command"]

# Backslash-n, as in Exim: the expansion makes it a newline, and -bP shows it as written.
FROM_PREFIX = "From ${if def:return_path{$return_path}{MAILER-DAEMON}} ${tod_bsdinbox}\\n"
_PIPE_ADDRESSES = ("$pipe_addresses", "${pipe_addresses}")
_ADDRESS_PIPE = ("$address_pipe", "${address_pipe}")

# os_strexit() in Exim: what a sysexits.h status usually means.
_EXIT_MEANINGS = {
    64: "usage or syntax error",
    65: "error in incoming data",
    66: "input data missing",
    67: "user nonexistent",
    68: "host nonexistent",
    69: "service or program unavailable",
    70: "internal software error",
    71: "internal operating system error",
    72: "system file missing",
    73: "can't create (user) output file",
    74: "input/output error",
    75: "temporary error",
    76: "remote protocol error",
    77: "permission denied",
    78: "configuration error",
    EX_EXECFAILED: "unable to exec or command does not exist",
}


@options_table
class PipeOptions(BatchOptions):
    """Options of the pipe transport."""

    command: str | None = option(
        None,
        Kind.STRING,
        "The command to run, split into arguments without a shell (quotes group arguments), each "
        "argument expanded on its own. `$pipe_addresses` as a whole argument gives one argument per "
        "address. Unset for a transport that only runs `|command` items from alias and forward files.",
        expand=True,
    )
    use_shell: bool = option(
        False,
        Kind.BOOL,
        "Run the whole expanded command with `/bin/sh -c`. Expanded data from the message is then refused.",
    )
    force_command: bool = option(
        False,
        Kind.BOOL,
        "Run `command` even for `|command` items from alias or forward files; `$address_pipe` as a whole "
        "argument is replaced by that item's command, split into arguments.",
    )
    allow_commands: str | None = option(
        None, Kind.LIST, "Commands (first arguments) that may be run; others fail. Not with use_shell.", expand=True
    )
    restrict_to_path: bool = option(
        False,
        Kind.BOOL,
        "Allow only bare command names, found in `path` (a command containing `/` fails unless in "
        "allow_commands). Not with use_shell.",
    )
    path: str = option(
        "/bin:/usr/bin",
        Kind.STRING,
        "Directories searched for a command given without a `/`; also the command's PATH.",
        expand=True,
    )
    environment: str | None = option(
        None,
        Kind.LIST,
        "Extra `NAME=value` entries for the command's environment, which otherwise holds only the "
        "variables the transport sets (nothing is inherited).",
        expand=True,
    )
    timeout: int = option(
        3600,
        Kind.TIME,
        "Longest time the command may run (writing the message included); then its process group is "
        "killed. 0 means no limit.",
    )
    timeout_defer: bool = option(False, Kind.BOOL, "A timeout defers the address instead of failing it.")
    temp_errors: str = option(
        "75:73",
        Kind.LIST,
        "Exit statuses that mean a temporary failure (defer); `*` makes every non-zero status temporary.",
    )
    ignore_status: bool = option(False, Kind.BOOL, "Treat every exit status, and death by a signal, as success.")
    return_output: bool = option(
        False,
        Kind.BOOL,
        "Any output from the command fails the delivery; the output goes into the bounce message.",
    )
    return_fail_output: bool = option(
        False,
        Kind.BOOL,
        "Put the command's output into the bounce when its exit status is a permanent failure.",
    )
    max_output: int = option(
        20480,
        Kind.SIZE,
        "Most output kept from the command; a command that writes more is killed and the delivery fails.",
    )
    message_prefix: str | None = option(
        FROM_PREFIX,
        Kind.STRING,
        "Text written before the message (by default the mbox `From ` line, which vacation programs "
        "expect); set it empty for none.",
        expand=True,
    )
    message_suffix: str | None = option("\\n", Kind.STRING, "Text written after the message.", expand=True)
    check_string: str | None = option(None, Kind.STRING, "A string that must not start a line; unset by default.")
    escape_string: str | None = option(None, Kind.STRING, "What replaces `check_string` at the start of a line.")
    use_crlf: bool = option(False, Kind.BOOL, "Write lines ending in CRLF instead of LF.")
    umask: int = option(0o022, Kind.OCTAL, "The command's umask.")


class PipeTransport(LocalTransport):
    """Run a command, without a shell, with the message on its standard input; its exit status
    decides between delivered, deferred and failed.  See docs/transports.md.
    """

    options: PipeOptions
    options_class: ClassVar[type[DriverOptions]] = PipeOptions

    def check(self, config: Any) -> None:
        o = self.options

        def error(text: str) -> ConfigError:
            return ConfigError(f"pipe transport {self.name}: {text}", *self.source)

        if o.use_shell and o.restrict_to_path:
            raise error("both restrict_to_path and use_shell set")
        if o.use_shell and o.allow_commands is not None:
            raise error("both allow_commands and use_shell set")
        if o.temp_errors.strip() != "*" and not all(code.isdigit() for code in split_list(o.temp_errors)):
            raise error(f'temp_errors must be "*" or a list of numbers, not "{o.temp_errors}"')
        texts = [("path", o.path), ("message_prefix", o.message_prefix), ("message_suffix", o.message_suffix)]
        texts += [("environment", o.environment), ("allow_commands", o.allow_commands)]
        if o.command and o.use_shell:
            texts.append(("command", o.command))
        elif o.command:
            texts += [("command", arg) for arg in split_command(o.command)]
        _local.check_expansions(texts, error)

    # -- delivery ---------------------------------------------------------------------------------

    def deliver(self, message: OutgoingMessage, item: AddressItem, env: DeliveryEnv) -> None:
        self.deliver_items(message, [item], env)

    def deliver_items(self, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv) -> None:
        o = self.options
        _local.check_size(o, message)
        addresses = [taint(i.address) for i in items]
        env = _with_pipe_addresses(_local.batch_env(env, items), addresses)
        item = items[0]
        argv = self._argv(item, env, addresses)
        path = self._expand("path", o.path, item, env)
        if not o.use_shell:
            argv[0] = self._locate(argv[0], item, env, path)
        envp = self._environment(message, items, env, path)
        return_path = transport_return_path(self, message, item, env)
        edits = header_edits(self, message, items, env, return_path)
        prefix, suffix = o.message_prefix or "", o.message_suffix or ""
        if o.use_bsmtp:
            # Batched SMTP has no From line or blank line around it unless they are asked for (Exim).
            prefix, suffix = ("" if prefix == FROM_PREFIX else prefix), ("" if suffix == "\\n" else suffix)
            spec = _local.bsmtp_spec(
                o,
                return_path,
                items,
                self._expand("message_prefix", prefix, item, env, return_path),
                self._expand("message_suffix", suffix, item, env, return_path),
            )
        else:
            spec = _local.write_spec(
                o,
                check=o.check_string or "",
                escape=o.escape_string or "",
                prefix=_local.encode(self._expand("message_prefix", prefix, item, env, return_path)),
                suffix=_local.encode(self._expand("message_suffix", suffix, item, env, return_path)),
            )
        chunks = _local.spool_chunks(message, spec, edits)
        result = run_command(argv, envp, o.umask, chunks, o.timeout, o.max_output)
        self._judge(result, argv)

    def _argv(self, item: AddressItem, env: DeliveryEnv, addresses: list[str]) -> list[str]:
        """The argument vector, before the command is looked up in `path`."""
        o = self.options
        from_item = item.pipe_command is not None and not o.force_command
        if from_item:
            assert item.pipe_command is not None
            # Alias and forward files are trusted text; as in Exim, their commands are not expanded.
            text = _strip_bar(self._untainted(item.pipe_command))
            argv = ["/bin/sh", "-c", text] if o.use_shell else split_command(text)
            filter_variables = item.extra.get("expand_pipe")
            if isinstance(filter_variables, dict) and not o.use_shell:
                # A filter's pipe command: each argument is expanded on its own, as Exim does.
                argv = [self._filter_argument(arg, text, item, env, filter_variables) for arg in argv]
        elif not o.command:
            raise DeferError(f"no command specified for {self.name} transport")
        elif o.use_shell:
            # The command text is the configuration's, expanded once; $pipe_addresses is a tainted
            # variable like $local_part, so a command that would contain it (or any other message
            # data) is refused: message data must never reach a shell (Exim 4.94+, CVE-2019-10149,
            # OpenSMTPD CVE-2020-7247).
            argv = ["/bin/sh", "-c", self._untainted(self._expand("command", o.command, item, env))]
        else:
            argv = []
            for arg in split_command(o.command):
                if arg in _PIPE_ADDRESSES:
                    # One argument per address of the batch, never re-split or expanded.
                    argv.extend(self._not_an_option(address, arg) for address in addresses)
                elif arg in _ADDRESS_PIPE and o.force_command and item.pipe_command is not None:
                    argv.extend(split_command(_strip_bar(self._untainted(item.pipe_command))))
                else:
                    value = self._expand_argument(arg, o.command, item, env)
                    argv.append(value if arg.startswith("-") else self._not_an_option(value, arg))
        if not argv or not argv[0]:
            raise DeferError(f"no command specified for {self.name} transport")
        # Arguments may carry message data (procmail -d $local_part): argv cannot be re-split.
        self._untainted(argv[0])
        if any("\0" in arg for arg in argv):
            raise FailError(f"NUL character in an argument of the command for {self.name} transport")
        return argv

    def _expand_argument(self, arg: str, command: str, item: AddressItem, env: DeliveryEnv) -> str:
        try:
            return env.expand(arg, item)
        except ExpansionError as exc:
            if exc.forced:
                raise FailError(
                    f'Expansion of "{arg}" from command "{command}" in {self.name} transport was forced to fail'
                ) from None
            raise DeferError(
                f'Expansion of "{arg}" from command "{command}" in {self.name} transport failed: {exc.message}'
            ) from None

    def _filter_argument(
        self, arg: str, command: str, item: AddressItem, env: DeliveryEnv, variables: dict[str, str]
    ) -> str:
        try:
            value = env.expand(arg, item, {"pipe_addresses": taint(item.address), **variables})
        except ExpansionError as exc:
            raise DeferError(
                f'Expansion of "{arg}" from command "{command}" in {self.name} transport failed: {exc.message}'
            ) from None
        return self._not_an_option(value, arg)

    def _not_an_option(self, value: str, written: str) -> str:
        """An argument whose leading "-" came from message data is refused: a recipient
        "-oQ/tmp"@host must not become an option of the command (the argument-injection class
        of CVE-2016-10033; Postfix refuses such addresses by default, allow_min_user).  A "-"
        the configuration wrote itself (``--user=$local_part``) is the administrator's."""
        if value.startswith("-") and is_tainted(value):
            raise FailError(
                f'argument "{value}" (from "{written}" in the command of {self.name} transport) starts with "-" '
                "and comes from the message: refused, as it could be taken for an option"
            )
        return value

    def _untainted(self, command: str) -> str:
        if is_tainted(command):
            raise DeferError(f"Tainted '{command}' (command for {self.name} transport) not permitted")
        return command

    def _expand(self, name: str, text: str, item: AddressItem, env: DeliveryEnv, return_path: str = "") -> str:
        try:
            return env.expand(text, item, {"return_path": return_path} if return_path else None)
        except ExpansionError as exc:
            raise DeferError(f'failed to expand {name} "{text}" for {self.name} transport: {exc.message}') from None

    def _locate(self, command: str, item: AddressItem, env: DeliveryEnv, path: str) -> str:
        """allow_commands / restrict_to_path, then the search of `path` for a bare name (Exim's rules)."""
        o = self.options
        permitted = False
        if o.allow_commands is not None:
            allowed = split_list(self._expand("allow_commands", o.allow_commands, item, env))
            permitted = command in allowed
        if not permitted:
            if o.restrict_to_path:
                if "/" in command:
                    raise FailError(
                        f'"/" found in "{command}" (command for {self.name} transport) - failed for security reasons'
                    )
            elif o.allow_commands is not None:
                raise FailError(f'"{command}" command not permitted by {self.name} transport')
        if command.startswith("/"):
            return command
        for directory in split_list(path):
            candidate = f"{directory}/{command}"
            if directory and os.path.exists(candidate):
                return candidate
        raise FailError(f'"{command}" command not found for {self.name} transport')

    def _environment(
        self, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv, path: str
    ) -> dict[str, str]:
        item = items[0]
        # A |command item has the local part of the address that led to it (Exim's deliver_localpart).
        # In a batch, a part the addresses do not share is empty.
        local_part, prefix, suffix, domain = (
            values[0] if len(set(values)) == 1 else "" for values in zip(*(_named(i) for i in items), strict=True)
        )
        home = _local.delivery_home(item, env)
        envp = {
            "LOCAL_PART": local_part,
            "LOGNAME": local_part,
            "USER": local_part,
            "LOCAL_PART_PREFIX": prefix,
            "LOCAL_PART_SUFFIX": suffix,
            "DOMAIN": domain,
            "HOME": home or "",
            "MESSAGE_ID": message.message_id,
            "PATH": path,
            "RECIPIENT": f"{prefix}{local_part}{suffix}@{domain}",
            "QUALIFY_DOMAIN": env.qualify_domain,
            "SENDER": message.sender_address,
            "SHELL": "/bin/sh",
        }
        if item.hosts:
            envp["HOST"] = item.hosts[0].name
        timezone = env.extra.get("timezone") or os.environ.get("TZ")
        if timezone:
            envp["TZ"] = str(timezone)
        if self.options.environment:
            for entry in split_list(self._expand("environment", self.options.environment, item, env)):
                name, equals, value = entry.partition("=")
                if not equals or not name:
                    raise DeferError(f'"{entry}" in environment for {self.name} transport is not NAME=value')
                envp[name] = value
        # A NUL cannot be passed in the environment; such a value is not worth failing the delivery.
        return {name: str(value).replace("\0", "") for name, value in envp.items()}

    def _judge(self, result: RunResult, argv: list[str]) -> None:
        """Turn the command's end into success, DeferError or FailError (see the module docstring)."""
        o = self.options
        shown = " ".join(f'"{a}"' if " " in a or "\t" in a else a for a in argv)
        output = result.output.decode("utf-8", "replace")
        if result.timed_out:
            cls = DeferError if o.timeout_defer else FailError
            detail = _with_output(output, cls is FailError and o.return_output)
            raise cls("pipe delivery process timed out", detail=detail)
        if o.ignore_status:
            status = 0
        elif result.too_much:
            raise FailError(
                f"Too much output from pipe command (more than {o.max_output} bytes) - killed: {shown}",
                detail=_with_output(output, o.return_output or o.return_fail_output),
            )
        else:
            status = result.status
        if status < 0:
            raise DeferError(
                f'Child process of {self.name} transport (running command "{shown}") was terminated by '
                f"signal {-status} ({_signal_name(-status)})"
            )
        if status > 0:
            temporary = o.temp_errors.strip() == "*" or str(status) in split_list(o.temp_errors)
            if status > 128:
                meaning = f" (could mean shell command ended by signal {status - 128} ({_signal_name(status - 128)}))"
            else:
                meaning = f" (could mean {_EXIT_MEANINGS[status]})" if status in _EXIT_MEANINGS else ""
            text = f"Child process of {self.name} transport returned {status}{meaning} from command: {shown}"
            if temporary:
                raise DeferError(text)
            raise FailError(text, detail=_with_output(output, o.return_output or o.return_fail_output))
        if o.return_output and output:
            raise FailError(
                f"Child process of {self.name} transport produced output from command: {shown}", detail=output
            )


def _named(item: AddressItem) -> tuple[str, str, str, str]:
    """(local part, prefix, suffix, domain) of the address a delivery is for: a |command item's parent's."""
    who = (item.parent or item) if item.pipe_command is not None or item.file_path is not None else item
    return who.local_part, who.prefix, who.suffix, who.domain


def _with_pipe_addresses(env: DeliveryEnv, addresses: list[str]) -> DeliveryEnv:
    """`env` whose expansions know $pipe_addresses: the batch's addresses, separated by spaces."""
    value = taint(" ".join(addresses))
    expand = env.expand

    def pipe_expand(text: str, item: AddressItem | None = None, extra: dict[str, Any] | None = None) -> str:
        return expand(text, item, {"pipe_addresses": value, **(extra or {})})

    return record.replace(env, expand=pipe_expand)


def _signal_name(number: int) -> str:
    try:
        return signal.strsignal(number) or f"signal {number}"
    except ValueError:
        return f"signal {number}"


def _strip_bar(command: str) -> str:
    text = command.lstrip()
    return (text[1:] if text.startswith("|") else text).strip()


def _with_output(output: str, wanted: bool) -> str | None:
    """The command's output for the bounce (DeliveryError.detail), when the options want it."""
    return output if wanted and output else None
