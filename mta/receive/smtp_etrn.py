"""What an accepted ETRN does: `smtp_etrn_command`, or a queue run for the domain (Exim's behaviour).

The command is the configuration's, split into arguments without a shell
and expanded argument by argument with ``$domain`` set to the ETRN
argument (tainted: it can only ever be one argument's value, never the
command).  Without one, a detached ``mta -R domain`` is started.  Either
runs in the background; the client has had its 250 already.

With `smtp_etrn_serialize` (the default, as in Exim) only one of these runs
per ETRN argument at a time: the record ``etrn-<argument>`` in the misc
hints database (mta.hints.misc) is taken before the 250 (a repeat gets
``458 Already processing``) and deleted when the command or queue run ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from mta.config.variables import expansion_context
from mta.errors import ExpansionError
from mta.expand.expander import expand
from mta.hints import misc
from mta.taint import is_tainted, taint

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.receive.smtp_context import ReceiverContext


def etrn_argv(context: ReceiverContext, argument: str) -> list[str] | None:
    """The command to run for ETRN `argument`; None (and a log line) if it cannot be built."""
    domain = argument[1:] if argument.startswith(("#", "@")) else argument
    config = context.config
    command = config.main.smtp_etrn_command.strip()
    if not command:
        argv = [sys.executable, "-m", "mta.cli", "-C", os.path.abspath(config.path), "-R", domain]
        return argv
    from mta.transports._command import split_command

    ctx = expansion_context(config, {"domain": taint(domain)})
    argv = []
    try:
        for word in split_command(command):
            argv.append(expand(word, ctx))
    except (ExpansionError, ValueError) as exc:
        context.runtime.logger.main(f"failed to expand smtp_etrn_command: {exc}")
        return None
    if not argv or is_tainted(argv[0]) or not argv[0].startswith("/"):
        context.runtime.logger.main("smtp_etrn_command must start with an absolute path from the configuration")
        return None
    return argv


# A serialisation record older than this is taken over: its holder died without deleting it.
SERIALIZE_STALE_AFTER = 3600


def etrn_serialize_key(context: ReceiverContext, argument: str) -> str | None:
    """The misc record that serialises ETRN `argument`, or None when smtp_etrn_serialize is off."""
    return f"etrn-{argument}" if context.config.main.smtp_etrn_serialize else None


def db_directory(config: Any) -> str:
    return os.path.join(config.main.spool_directory, "db")


def serialize_start(context: ReceiverContext, key: str) -> bool:
    """Blocking (the hints database): run it in a thread."""
    return misc.serialize_start(db_directory(context.config), key, time.time(), SERIALIZE_STALE_AFTER,
                                context.runtime.logger.panic)


def serialize_end(config: Any, key: str, panic: Any = None) -> None:
    misc.serialize_end(db_directory(config), key, panic)


def start_etrn(context: ReceiverContext, argument: str, key: str | None = None) -> None:
    """Start the command (or the queue run) for `argument`; release `key` when it ends."""
    argv = etrn_argv(context, argument)
    if argv is None:
        if key is not None:
            serialize_end(context.config, key, context.runtime.logger.panic)
        return
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError as exc:
        context.runtime.logger.main(f"failed to run ETRN command {argv[0]}: {exc.strerror}")
        if key is not None:
            serialize_end(context.config, key, context.runtime.logger.panic)
        return
    if key is not None:
        config, panic = context.config, context.runtime.logger.panic

        def wait_then_release() -> None:
            process.wait()
            serialize_end(config, key, panic)

        # Not a daemon thread: an `mta -bs` that ends first still releases the record.
        threading.Thread(target=wait_then_release, name="etrn-wait").start()
