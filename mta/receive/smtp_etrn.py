"""What an accepted ETRN does: `smtp_etrn_command`, or a queue run for the domain (Exim's behaviour).

The command is the configuration's, split into arguments without a shell
and expanded argument by argument with ``$domain`` set to the ETRN
argument (tainted: it can only ever be one argument's value, never the
command).  Without one, a detached ``mta -R domain`` is started.  Either
runs in the background; the client has had its 250 already.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mta.config.variables import expansion_context
from mta.errors import ExpansionError
from mta.expand.expander import expand
from mta.taint import is_tainted, taint

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
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


def start_etrn(context: ReceiverContext, argument: str) -> None:
    argv = etrn_argv(context, argument)
    if argv is None:
        return
    try:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    except OSError as exc:
        context.runtime.logger.main(f"failed to run ETRN command {argv[0]}: {exc.strerror}")
