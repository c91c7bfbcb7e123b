"""The order and the reading of a queue run, in-process on a few messages: input/ first, then the
split_spool_directory sub-directories, each read when the run reaches it; eligibility decided
per message as the run comes to it; the compact id list."""

from __future__ import annotations

from pathlib import Path

from mta.config.loader import load_config
from mta.queue.runner import Selection, ShuffledIds, eligible_messages
from mta.runtime import Runtime, build_runtime
from mta.spool.ids import base62_encode
from mta.spool.store import Spool
from tests.spool.test_spool_store import envelope_for

NOW = 1_790_000_000


def _id(seconds: int, pid: int) -> str:
    return f"{base62_encode(seconds, 6)}-{base62_encode(pid, 11)}-{base62_encode(0, 4)}"


def _queue(spool: Spool, message_id: str, frozen: bool = False) -> str:
    envelope = envelope_for(message_id)
    envelope.frozen = NOW if frozen else None
    with spool.new_message(message_id) as writer:
        writer.data_file.write(b"hello\n")
        writer.commit(envelope)
    return message_id


def _runtime(tmp_path: Path) -> Runtime:
    config = tmp_path / "mta.conf"
    config.write_text(f"spool_directory = {tmp_path / 'spool'}\nsplit_spool_directory = true\n")
    runtime = build_runtime(load_config(str(config)))
    runtime.spool.ensure_directories()
    return runtime


def test_input_first_then_each_subdirectory_and_per_message_eligibility(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    spool = runtime.spool
    # Seconds NOW + k end in different base-62 digits: one sub-directory each.
    queued = [_queue(spool, _id(NOW + k, 100 + k)) for k in range(6)]
    assert len({message_id[5] for message_id in queued}) == 6
    top = _queue(Spool(tmp_path / "spool"), _id(NOW + 10, 200))  # left in input/ (made before the split)
    frozen = _queue(spool, _id(NOW + 11, 201), frozen=True)
    busy = _queue(spool, _id(NOW + 12, 202))

    with spool.lock(busy):
        run = eligible_messages(runtime, Selection())
        assert next(run) == top  # input/ is read and run first
        _queue(Spool(tmp_path / "spool"), _id(NOW + 13, 203))  # input/ has been read: next run's
        rest = list(run)
    assert sorted(rest) == sorted(queued)  # each once; not the frozen one, nor the locked one
    assert frozen not in rest and busy not in rest
    # With -qff the frozen one is taken too.
    assert frozen in set(eligible_messages(runtime, Selection.from_flags("ff")))


def test_shuffled_ids_hold_both_forms_of_id() -> None:
    old = f"{base62_encode(NOW, 6)}-{base62_encode(7, 6)}-{base62_encode(3, 2)}"  # Exim 4.96's 16 characters
    ids = [_id(NOW + k, k) for k in range(50)] + [old]
    shuffled = ShuffledIds(iter(ids))
    assert len(shuffled) == 51
    assert sorted(shuffled) == sorted(ids)
    assert list(ShuffledIds(iter([]))) == []
