"""The `mta` command (also installed as `sendmail`, `mailq`, `newaliases`).

Parses the sendmail/Exim command line and runs one mode.  Every mode's
work lives in a lower floor; this module only chooses, reports errors as
one line on stderr, and sets the exit status.  Imports are done inside the
mode functions so that each mode loads only what it uses (start-up time is
a feature of a sendmail replacement).

Exit status: 0 success; 1 error (bad option, bad configuration, message
refused); 2 for -bt/-bv addresses that fail, as Exim.
"""

from __future__ import annotations

import gc
import os
import sys

from mta import process_info
from mta.cli_args import Invocation, UsageError, parse_command_line
from mta.errors import ConfigError, MtaError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

PROGRAM = "mta"

# Modes that end soon after they start, whatever the configuration: they run with the cyclic
# garbage collector off, as mta.launcher starts them, and leave without the interpreter's
# teardown (see run).  Every other mode, and a submission that queues the message and may
# deliver it here, is a long run (_run_long).
SHORT_MODES = frozenset({"t", "bm", "bV", "bP", "help"})
_short_run = False


def _run_long() -> None:
    """This run may last and may leave work to finalisers: the collector on, the normal exit."""
    global _short_run
    _short_run = False
    gc.enable()


def run(command: Callable[[], int]) -> NoReturn:
    """What mta.launcher's scripts do: run `command` (main, mailq_main ...) and exit with its status.

    A short run leaves by os._exit once stdout and stderr are flushed: tearing the interpreter
    down (every module, a last garbage collection) cost a sendmail -t 3-4 ms, and such a run has
    nothing left for it to do (the log is written with os.write, the message is spooled and
    fsynced or, in mua_wrapper mode, accepted by the smart host, before the mode returns).
    """
    status = command()
    if _short_run:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(status)  # the interpreter's own exit reports the failure, as without this
        os._exit(status)
    sys.exit(status)


def _err(text: str) -> None:
    sys.stdout.flush()  # keep what was printed before the error in order
    sys.stderr.write(f"{PROGRAM}: {text}\n")


def _printable_output() -> None:
    """Everything this process prints goes through mta.printable: no message data reaches
    a terminal as raw control or bidi characters, and an error message stays one line."""
    from mta.printable import PrintableStream

    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout, keep="\n\t")  # type: ignore[assignment]
        sys.stderr = PrintableStream(sys.stderr, keep="\t", one_line_writes=True)  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    global PROGRAM, _short_run
    _printable_output()
    # At once: mta-what's SIGUSR1 must never find an mta process that it would kill.
    process_info.install()
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "mta"
    if argv is None:
        argv = sys.argv[1:]
    if prog in ("sendmail", "mailq", "newaliases", "rmail", "runq"):
        PROGRAM = prog
    if prog == "mailq" and "--help" in argv:
        from spool_tools.queue_list import USAGE

        sys.stdout.write(USAGE)
        return 0
    if prog == "mailq" and not any(a.startswith("-bp") for a in argv):
        argv = ["-bp", *argv]
    elif prog == "newaliases":
        argv = ["-bi", *argv]
    elif prog == "rmail":
        argv = ["-i", "-oee", *argv]
    elif prog == "runq":
        argv = ["-q", *argv]
    try:
        inv = parse_command_line(argv, prog)
    except UsageError as exc:
        _err(exc.message)
        return 1
    except ConfigError as exc:
        _err(str(exc))
        return 1
    if inv.debug is not None or inv.verbose:
        _start_debugging(inv)
    if inv.mode in ("bd", "bs", "bS", "q", "R", "S", "M"):
        try:
            refusal = _wrapper_refusal(inv)
        except ConfigError as exc:
            _err(f"configuration error: {exc}")
            return 1
        if refusal:
            _err(refusal)
            return 1
    process_info.set_activity(_activity(inv))
    _short_run = inv.mode in SHORT_MODES
    if not _short_run:
        _run_long()
    handler = MODES.get(inv.mode)
    if handler is None:
        _err(_NOT_YET.get(inv.mode, f"the -{inv.mode} mode is not available in this version of mta"))
        return 1
    try:
        return handler(inv)
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into something that went away (mailq | head).
        return 0


def _start_debugging(inv: Invocation) -> None:
    """-d / -v: set this process's debug selectors (mta.debug); children inherit them."""
    from mta import __version__, debug

    debug.configure(inv.debug_selectors, verbose=inv.verbose)
    if "any" in debug.active:
        debug.write(
            f"mta version {__version__} uid={os.getuid()} gid={os.getgid()} pid={os.getpid()} D={debug.selector_text()}"
        )


# What `mta-what` shows for a process in each mode until it says more (Exim's texts).
_ACTIVITY = {
    "bm": "accepting a local non-SMTP message",
    "t": "accepting a local non-SMTP message",
    "bs": "accepting a local SMTP message",
    "bS": "accepting a local batched SMTP message",
    "bp": "listing the queue",
    "bpc": "counting the queue",
    "M": "delivering specified messages",
    "Mc": "delivering specified messages",
    "q": "running queue",
    "R": "running queue",
    "S": "running queue",
    "be": "expansion-test",
}


def _activity(inv: Invocation) -> str:
    if inv.mode == "M" and inv.mode_flags not in ("", "c"):
        return "acting on specified messages"  # -Mf, -Mrm, -Mvh ...
    return _ACTIVITY.get(inv.mode + inv.mode_flags) or _ACTIVITY.get(inv.mode, "initializing")


# Modes that come with later work: say what is missing, so that a service
# manager or an administrator never mistakes the exit for a start.
_NOT_YET: dict[str, str] = {}


def mailq_main() -> int:
    argv = sys.argv[1:]
    return main(argv if any(a.startswith("-bp") for a in argv) else ["-bp", *argv])


def newaliases_main() -> int:
    return main(["-bi", *sys.argv[1:]])


def _load(inv: Invocation):  # type: ignore[no-untyped-def]
    from mta.config.loader import load_config

    config = load_config(inv.config_file, inv.macros)
    process_info.set_report_path(config.main.spool_directory)
    if "arguments" in config.main.log_selector:
        _log_arguments(inv, config)
    return config


_arguments_logged = False


def _log_arguments(inv: Invocation, config) -> None:  # type: ignore[no-untyped-def]
    """log_selector +arguments: Exim's ``cwd=/dir 3 args: mta -bt x`` line, once per process."""
    global _arguments_logged
    from mta.log import escape, parse_selector
    from mta.runtime import Runtime

    try:
        selectors = parse_selector(config.main.log_selector)
    except ValueError:
        return  # reported when the runtime is built
    if _arguments_logged or "arguments" not in selectors:
        return
    _arguments_logged = True
    argv = [PROGRAM, *inv.argv]
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "(unknown)"
    words = " ".join(escape(a) if a and " " not in a else f'"{escape(a)}"' for a in argv)
    Runtime(config, [], [], {}, [], selectors).logger.main(f"cwd={escape(cwd)} {len(argv)} args: {words}")


# -- modes ------------------------------------------------------------------


def mode_version(inv: Invocation) -> int:
    from mta import __version__

    python = ".".join(str(n) for n in sys.version_info[:3])
    print(f"mta version {__version__} (Python {python})")
    print("Lookups: lsearch wildlsearch nwildlsearch dsearch lmdb")
    config = _load(inv)
    from mta.runtime import check_config

    summary = check_config(config)
    from mta.receive.acl import check_acls

    check_acls(config)
    for line in summary:
        print(line)
    print(f"Configuration file is {config.path}")
    return 0


def mode_print_options(inv: Invocation) -> int:
    from mta.config.show import ShowError, show_options
    from mta.runtime import driver_option_lines

    config = _load(inv)
    admin = _caller_is_admin(config)
    lines, status = show_options(
        config, inv.args, lambda spec: driver_option_lines(config, spec, admin), admin, with_names=not inv.terse
    )
    for line in lines:
        if isinstance(line, ShowError):
            sys.stdout.flush()
            sys.stderr.write(line + "\n")
        else:
            print(line)
    return status


def mode_expand(inv: Invocation) -> int:
    """-be, -bem FILE, -be -Mset ID: see mta/cli_expand.py."""
    from mta.cli_expand import ExpansionTestError, run_expansion_test

    config = _load(inv)
    try:
        return run_expansion_test(inv, config, _caller_is_admin(config))
    except ExpansionTestError as exc:
        _err(exc.message)
        return 1


def mode_filter_test(inv: Invocation) -> int:
    """-bf FILE / -bF FILE: see mta/cli_filter.py."""
    from mta.cli_filter import FilterTestError, run_filter_test

    try:
        return run_filter_test(inv, _load(inv))
    except FilterTestError as exc:
        _err(exc.message)
        return 1


def _wrapper_refusal(inv: Invocation) -> str | None:
    config = _load(inv)
    if not config.main.mua_wrapper:
        return None
    from mta.wrapper import refuse_mode

    return refuse_mode(inv.mode)


def mode_submit(inv: Invocation) -> int:
    config = _load(inv)
    if config.main.mua_wrapper:
        from mta.wrapper import submit

        return submit(config, inv, sys.stdin.buffer)
    _run_long()  # the message may be delivered in this process (-odi)
    from mta.receive.local_submit import submit_from_command_line

    try:
        return submit_from_command_line(config, inv, sys.stdin.buffer)
    except ConfigError:
        raise  # reported by main() as a configuration error
    except MtaError as exc:
        _err(str(exc))
        return 1


def mode_address_test(inv: Invocation) -> int:
    from mta.deliver.address_test import run_address_test
    from mta.runtime import build_runtime

    runtime = build_runtime(_load(inv), verbose=inv.verbose)
    if not inv.args:
        _err(f"-{inv.mode}: no addresses given")
        return 1
    verify = {"bt": None, "bv": "recipient", "bvs": "sender"}[inv.mode]
    sender = inv.sender or ""
    # -v: the drivers considered; with -d+route, mta.debug writes its own (fuller) lines instead.
    trace = sys.stderr if inv.verbose and inv.debug is None else None
    return run_address_test(runtime, inv.args, sys.stdout, sender=sender, verify=verify, trace=trace)


def mode_rewrite_test(inv: Invocation) -> int:
    """-brw ADDRESS: what the rules of ``begin rewrite`` make of it in each header and envelope field."""
    from mta.config.variables import rewrite_env
    from mta.message.rewrite import Rewriter
    from mta.runtime import build_runtime

    runtime = build_runtime(_load(inv), verbose=inv.verbose)
    if not inv.args:
        _err("-brw needs an address argument")
        return 1
    env = rewrite_env(runtime.config)
    # As exim -brw: what would be logged goes to the standard error.
    env.panic = _err_line
    if "address_rewrite" in runtime.log_selectors:
        env.log = _err_line
    for line in Rewriter(runtime.rewrite_rules, env).test(inv.args[0]):
        sys.stdout.write(line + "\n")
    return 0


def _err_line(text: str) -> None:
    from mta.printable import printable

    sys.stderr.write(printable(text) + "\n")


def mode_message_action(inv: Invocation) -> int:
    """-M and its variants: acting on queued messages by id (mta/cli_messages.py)."""
    from mta.cli_messages import run_message_action

    return run_message_action(inv, _load(inv), _err)


def mode_queue_list(inv: Invocation) -> int:
    from mta.spool.store import Spool
    from spool_tools.queue_list import list_queue

    if inv.spool_directory is not None:
        # --spool: no configuration, no administrator check; the files' permissions decide.
        spool = Spool(inv.spool_directory)
    else:
        config = _load(inv)
        if config.main.queue_list_requires_admin and not _caller_is_admin(config):
            _err("permission denied: only administrators may list the queue")
            return 1
        spool = Spool(config.main.spool_directory, split=config.main.split_spool_directory)
    try:
        return list_queue(spool, inv.mode_flags, inv.args, sys.stdout, json_lines=inv.json)
    except MtaError as exc:
        _err(str(exc))
        return 1


def mode_newaliases(inv: Invocation) -> int:
    """-bi (newaliases): compile the alias files of lmdb aliasfile directors, then run
    bi_command if one is set, as Exim does (mta.route.alias_compile, docs/directors.md).

    An alias file with an error replaces nothing, says file:line and why, and
    exits 1 without running bi_command.  The command is split into arguments
    without a shell and run as the caller.
    """
    import subprocess

    from mta.transports._command import split_command

    config = _load(inv)
    if _compile_aliases(config) != 0:
        return 1
    command = config.main.bi_command.strip()
    if not command:
        return 0
    argv = split_command(command)
    if not argv or not argv[0].startswith("/"):
        _err(f"bi_command must start with an absolute path: {command!r}")
        return 1
    try:
        return subprocess.run(argv, check=False).returncode
    except OSError as exc:
        _err(f"cannot run bi_command {argv[0]}: {exc.strerror}")
        return 1


def _compile_aliases(config) -> int:  # type: ignore[no-untyped-def]
    from mta.route.alias_compile import alias_databases, compile_database

    databases, notes = alias_databases(config)
    for note in notes:
        _err(note)
    status = 0
    for db in databases:
        count, findings = compile_database(db)
        for line in findings.warnings:
            _err(f"warning: {line}")
        for line in findings.errors:
            _err(line)
        if count is None:
            _err(f"{db.target} not rebuilt: {len(findings.errors)} error(s) in {db.source}")
            status = 1
        else:
            print(f"{db.source}: {count} aliases compiled into {db.target}")
    return status


def mode_monitor(inv: Invocation) -> int:
    """-bM: the web monitor, as mta-monitor with its defaults (docs/monitor.md)."""
    from spool_tools.admin_command import run_tool
    from spool_tools.monitor.cli import PROG, main

    argv = ["-C", inv.config_file] if inv.config_file else []
    if inv.args:
        _err("-bM takes no arguments: mta-monitor has the options (--port, --listen ...)")
        return 1
    return run_tool(PROG, lambda: main(argv))


def mode_help(inv: Invocation) -> int:
    print(
        "usage: mta [options] [recipient ...]\n"
        "  -bm (default)  read a message on stdin and send it to the recipients\n"
        "  -t             take recipients from To:, Cc:, Bcc:;  -i / -oi: a lone dot does not end input\n"
        "  -f addr        envelope sender (trusted users);  -F name: sender's full name\n"
        "  -odi / -odq    deliver before returning / only queue the message\n"
        "  -bp[c|r|u]     list the queue (mailq);  -bpc: count\n"
        "  -bt addr       test routing of an address;  -bv addr: verify it\n"
        "  -M id          deliver a message now;  -Mf / -Mt id: freeze / thaw it\n"
        "  -Mg / -Mrm id  give up (bounce) / remove without a bounce;  -Mvh / -Mvb / -Mvl id: show it\n"
        "  -bM            serve the web monitor (mta-monitor: docs/monitor.md)\n"
        "  -bP [name]     print configuration options;  -bV: version and configuration check\n"
        "  -be 'string'   test string expansion;  -bem file: with a message;  -be -Mset id: a spooled one\n"
        "  -bf file       test a filter file on a message read from stdin;  -bF file: a system filter\n"
        "  -C file        use another configuration file;  -D NAME=value: override a macro"
    )
    return 0


def _smtp_mode(name: str, inv: Invocation) -> int:
    import mta.cli_smtp as modes

    result: int = getattr(modes, name)(inv)
    return result


def _caller_is_admin(config) -> bool:  # type: ignore[no-untyped-def]
    from mta.config.caller import current_caller, is_administrator

    return is_administrator(current_caller(), config)


MODES: dict[str, Callable[[Invocation], int]] = {
    "bV": mode_version,
    "bP": mode_print_options,
    "be": mode_expand,
    "bf": mode_filter_test,
    "bm": mode_submit,
    "t": mode_submit,
    "bp": mode_queue_list,
    "bt": mode_address_test,
    "bv": mode_address_test,
    "bvs": mode_address_test,
    "brw": mode_rewrite_test,
    "M": mode_message_action,
    "bi": mode_newaliases,
    "bM": mode_monitor,
    "help": mode_help,
    "bd": lambda inv: _smtp_mode("mode_daemon", inv),
    "q": lambda inv: _smtp_mode("mode_queue", inv),
    "R": lambda inv: _smtp_mode("mode_queue", inv),
    "S": lambda inv: _smtp_mode("mode_queue", inv),
    "bs": lambda inv: _smtp_mode("mode_smtp_stdio", inv),
    "bS": lambda inv: _smtp_mode("mode_smtp_stdio", inv),
    "bh": lambda inv: _smtp_mode("mode_smtp_stdio", inv),
}


if __name__ == "__main__":
    sys.exit(main())
