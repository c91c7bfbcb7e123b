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
