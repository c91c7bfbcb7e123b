"""`mta -M...`: acting on queued messages by id, as Exim's -M options do.

    -M id...            deliver now (thaws a frozen message, ignores retry times)
    -Mc id...           deliver, respecting retry times and freezing
    -Mf id... / -Mt     freeze / thaw
    -Mg id...           give up: fail every pending recipient, with a bounce
    -Mrm id...          remove, with no bounce
    -Mmad id...         mark every recipient delivered
    -Mar id addr...     add recipients;   -Mmd id addr...: mark them delivered
    -Mes id addr        change the envelope sender
    -Mvh / -Mvb / -Mvl / -Mvc id    show the -H, the -D, the message log, the message

Who may: administrators (mta.config.caller.is_administrator) for all of
them, except that -M and -Mc follow prod_requires_admin, and that the user
who sent a message may remove it with -Mrm (Exim's rule): one rule,
spool_tools.message_actions.refusal, which the web monitor asks too.  A refusal says
so on standard error.  The spool is root's and mta_user's alone, so a user's
-Mrm is done by the daemon: it is sent over the submission socket, where the
kernel tells the daemon who is asking (mta.daemon.submission).

Output, as Exim: the line its queue.c prints for a change ("Message ID is
now frozen") on standard output; each failure as one line on standard error
(through the `err` the caller passes, which prefixes the program name); the
exit status is 1 when any message could not be dealt with, else 0.  A
malformed id, or a missing address, refuses the whole command before any
message is touched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

from mta.errors import LockedError, MtaError, SpoolFormatError
from mta.spool.files import NoSuchMessage
from mta.spool.ids import is_message_id

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.cli_args import Invocation
    from mta.config.loader import Config
    from mta.runtime import Runtime
    from spool_tools.message_actions import Actor

Err = Callable[[str], None]

# Options that take only message ids, and those that take one id then addresses.
_ID_LISTS = ("", "c", "f", "t", "g", "rm", "mad")
_WITH_ADDRESSES = ("ar", "md", "es")
_VIEWS = ("vh", "vb", "vl", "vc")


def run_message_action(inv: Invocation, config: Config, err: Err) -> int:
    flags = inv.mode_flags
    option = f"-M{flags}"
    if not inv.args:
        err(f"{option}: no message ids given")
        return 1
    one_id = flags in _WITH_ADDRESSES or flags in _VIEWS
    ids, rest = (inv.args[:1], inv.args[1:]) if one_id else (inv.args, [])
    bad = next((word for word in ids if not is_message_id(word)), None)
    if bad is not None:
        err(f"{bad} is not a message id (nothing was done)")
        return 1
    problem = _argument_problem(flags, rest)
    if problem:
        err(f"{option}: {problem}")
        return 1
    from mta.config.caller import current_caller, is_administrator
    from spool_tools.message_actions import refusal

    caller = current_caller()
    admin = is_administrator(caller, config)
    refused = refusal(flags, admin, config.main.prod_requires_admin)
    if refused:
        err(refused)
        return 1
    if flags in ("", "c"):
        return _deliver(inv, config, ids, err)
    if flags == "rm" and not admin:
        from mta.daemon.submission import can_write_spool

        if not can_write_spool(config):
            return _remove_through_daemon(config, ids, err)
    if flags in _VIEWS:
        return _show(config, ids[0], flags, err)
    if flags == "g":
        from spool_tools.message_actions import user_name

        return _give_up(inv, config, ids, user_name(caller), err)
    from mta.log import parse_selector
    from mta.runtime import Runtime
    from spool_tools.message_actions import Actor

    # The actions need the spool and the logs only: no drivers are built.
    runtime = Runtime(config, [], [], {}, [], parse_selector(config.main.log_selector), verbose=inv.verbose)
    actor = Actor(
        runtime.spool, runtime.logger, caller, admin,
        message_logs=config.main.message_logs, preserve_message_logs=config.main.preserve_message_logs,
    )
    return _act(actor, flags, ids, rest, err)


def _remove_through_daemon(config: Config, ids: list[str], err: Err) -> int:
    """A user's -Mrm on a spool only the daemon's user can change: the daemon checks, from the
    socket's peer credentials, that the user sent each message, and removes it."""
    from mta.daemon.submission import remove_through_daemon

    try:
        answers = remove_through_daemon(config, ids)
    except MtaError as exc:
        err(str(exc))
        return 1
    for status, line in answers:
        if status:
            err(line)
        else:
            print(line)
    return max(status for status, _ in answers)


def _argument_problem(flags: str, rest: list[str]) -> str | None:
    if flags in _VIEWS and rest:
        return "only one message can be shown at a time"
    if flags == "es" and len(rest) != 1:
        return "give one message id and one sender address (<> for none)"
    if flags in ("ar", "md") and not rest:
        return "no addresses given after the message id"
    return None


def _act(actor: Actor, flags: str, ids: list[str], rest: list[str], err: Err) -> int:
    from spool_tools import message_actions as actions

    run: dict[str, Callable[[str], str]] = {
        "f": lambda i: actions.freeze(actor, i),
        "t": lambda i: actions.thaw(actor, i),
        "rm": lambda i: actions.remove(actor, i),
        "mad": lambda i: actions.mark_all_delivered(actor, i),
        "ar": lambda i: actions.add_recipients(actor, i, rest),
        "md": lambda i: actions.mark_delivered(actor, i, rest),
        "es": lambda i: actions.edit_sender(actor, i, rest[0]),
    }
    status = 0
    for message_id in ids:
        try:
            print(run[flags](message_id))
        except actions.ActionError as exc:
            err(str(exc))
            status = 1
    return status


def _show(config: Config, message_id: str, which: str, err: Err) -> int:
    from mta.runtime import Runtime
    from spool_tools.message_actions import ActionError
    from spool_tools.message_views import view

    spool = Runtime(config, [], [], {}, [], frozenset()).spool
    try:
        chunks = view(spool, message_id, which, message_logs=config.main.message_logs)
        _write_out(chunks)
    except ActionError as exc:
        err(str(exc))
        return 1
    return 0


def _write_out(chunks: Iterator[bytes]) -> None:
    """Bytes of a spool file to standard output: as they are when it goes to a file or a pipe
    (`mta -Mvb ID > saved` keeps the message intact, as Exim's does), through the printable
    filter (mta.printable) when it goes to a terminal, where a message's escape sequences
    must not reach the administrator's screen."""
    import codecs

    stdout = sys.stdout
    if not stdout.isatty():
        stdout.flush()
        for chunk in chunks:
            stdout.buffer.write(chunk)
        stdout.buffer.flush()
        return
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for chunk in chunks:
        stdout.write(decoder.decode(chunk))
    stdout.write(decoder.decode(b"", final=True))


def _give_up(inv: Invocation, config: Config, ids: list[str], user_name: str, err: Err) -> int:
    from mta.deliver.giveup import give_up
    from mta.runtime import build_runtime

    runtime = build_runtime(config, verbose=inv.verbose)
    status = 0
    for message_id in ids:
        try:
            bounces = give_up(runtime, message_id, user_name)
        except LockedError:
            err(f"message {message_id} is locked (being delivered by another process)")
            status = 1
            continue
        except NoSuchMessage:
            err(f"message {message_id} is not on the spool")
            status = 1
            continue
        except SpoolFormatError as exc:
            err(f"message {message_id} was left as it is: {exc}")
            status = 1
            continue
        except MtaError as exc:
            err(f"message {message_id} was left on the queue: {exc}")
            status = 1
            continue
        if inv.delivery_mode != "q":
            # Exim delivers the bounce at once too; -odq leaves it for the next queue run.
            _deliver_bounces(runtime, bounces, err)
    return status


def _deliver_bounces(runtime: Runtime, bounces: list[str], err: Err) -> None:
    from mta.deliver.delivery import Delivery

    for bounce_id in bounces:
        try:
            Delivery(runtime, bounce_id).run()
        except MtaError as exc:
            err(f"bounce {bounce_id} is queued but its delivery failed: {exc}")


def _deliver(inv: Invocation, config: Config, ids: list[str], err: Err) -> int:
    """-M (forced: thaws, ignores retry times) and -Mc."""
    from mta.deliver.delivery import Delivery
    from mta.deliver.loop import DeliveryLoop
    from mta.queue.wait import deliver_with_followers
    from mta.runtime import build_runtime

    runtime = build_runtime(config, verbose=inv.verbose)
    status = 0
    runner = DeliveryLoop(runtime)

    def deliver(message_id: str, named: bool) -> Any:
        # Only the named message is forced; the ones that follow it are ordinary deliveries.
        return Delivery(runtime, message_id, forced=named and inv.mode_flags == "",
                        dont_deliver=inv.dont_deliver, loop_runner=runner).run()

    for message_id in ids:
        try:
            # Messages waiting for a host this delivery reaches follow it down the same connection.
            report = deliver_with_followers(runtime, message_id, lambda i, n=message_id: deliver(i, i == n))[0]
        except MtaError as exc:
            err(f"delivery of {message_id} failed: {exc} (the message stays on the spool)")
            status = 1
            continue
        if report.skipped == "missing":
            err(f"message {message_id} is not on the spool")
            status = 1
        elif report.skipped == "locked":
            err(f"message {message_id} is locked (being delivered by another process)")
            status = 1
        elif report.skipped == "spool error":
            err(f"message {message_id} is frozen: {report.spool_error} (repair the file, or remove the message)")
            status = 1
    runner.close()
    return status

