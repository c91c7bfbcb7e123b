"""Putting messages on a test spool and changing their state as the delivery code does.

Messages are made with the real CLI (-odq); state (delivered recipients,
frozen, age) is changed by rewriting -H through `mta.spool.store.Spool`
under the message's lock, never by editing the file.
"""

from __future__ import annotations

from mta.spool.store import Spool
from tests.support.mta import MtaEnv


def submit(env: MtaEnv, *recipients: str, body: str = "body\n", sender: str | None = None) -> str:
    """Queue a message (-odq) for `recipients`; its id."""
    before = set(env.message_ids())
    args = ["-odq", *(["-f", sender] if sender is not None else []), *recipients]
    result = env.run(*args, input="Subject: q\n\n" + body)
    assert result.returncode == 0, result.stderr
    (new,) = set(env.message_ids()) - before
    return new


def change(env: MtaEnv, message_id: str, **fields: object) -> None:
    """Rewrite a message's -H under its lock, as a delivery process would."""
    spool = Spool(env.spool)
    with spool.lock(message_id):
        envelope = spool.read_envelope(message_id)
        for name, value in fields.items():
            setattr(envelope, name, value)
        spool.rewrite_envelope(envelope)


def old_form_id(seconds: int, pid: int, fraction: int = 0) -> str:
    """An Exim 4.96 (16-character) message id."""
    from mta.spool.ids import base62_encode

    return f"{base62_encode(seconds, 6)}-{base62_encode(pid, 6)}-{base62_encode(fraction, 2)}"


def rename_message(env: MtaEnv, message_id: str, new_id: str) -> None:
    """Move a queued message to another id (an Exim 4.96 one, say) through the spool formats: the
    -H is written anew by mta.spool.format and the -D's first line names the new id."""
    from mta.spool.format import write_header_file

    spool = Spool(env.spool)
    with spool.lock(message_id):
        envelope = spool.read_envelope(message_id)
        body = spool.file_path(message_id, "-D").read_bytes().split(b"\n", 1)[1]
    envelope.message_id = new_id
    directory = env.spool / "input"
    (directory / f"{new_id}-D").write_bytes(f"{new_id}-D\n".encode() + body)
    (directory / f"{new_id}-H").write_bytes(write_header_file(envelope))
    spool.remove_message(message_id)


# For submit_batch: batched SMTP (-bS) takes recipients only through the RCPT ACL.
ACCEPT_ALL_RCPT = "acl_smtp_rcpt = everyone\nbegin acl\neveryone:\n  accept\n"


def submit_batch(env: MtaEnv, messages: list[tuple[str, list[str], str]]) -> list[str]:
    """Queue several messages, (sender, recipients, text), with one `mta -odq -bS` (one process
    instead of one per message: the tests that build a varied queue pay a start-up once).  The
    configuration must accept the recipients (ACCEPT_ALL_RCPT).  Their ids, in order."""
    commands = []
    for sender, recipients, text in messages:
        commands += [f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]
        commands += ["." + line if line.startswith(".") else line for line in text.splitlines()]
        commands.append(".")
    logged = len(env.log_lines())
    result = env.run("-odq", "-bS", input="".join(c + "\r\n" for c in [*commands, "QUIT"]))
    assert result.returncode == 0, result.stderr
    arrivals = [line.split()[2] for line in env.log_lines()[logged:] if " <= " in line]
    assert len(arrivals) == len(messages), env.log_lines()[logged:]
    return arrivals
