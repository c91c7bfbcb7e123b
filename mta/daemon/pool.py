"""How many delivery workers the daemon runs: one more while some are stalled, fewer once idle.

A worker delivers one message at a time, and there are `delivery_workers`
of them (one per CPU).  A remote host that tarpits, or drops SYNs until
`connect_timeout`, or a pipe command that hangs, holds its worker for
minutes; with every worker held so, new mail would wait for them all.
Exim forks a process per message and Postfix runs up to
`default_process_limit` smtp processes, so neither stalls that way.  Here:

- a worker busy on one message for `delivery_worker_stall` no longer counts;
  while messages wait on the dispatch socket and fewer than
  `delivery_workers` count, the master starts another, up to
  `delivery_workers_max`;
- a worker beyond `delivery_workers` that has been idle for
  `delivery_worker_max_idle` (Postfix's `max_idle`) is asked to end, as long
  as enough others count.

The master learns what each worker is doing from a board in shared memory:
a slot per worker, which the worker writes at the start and at the end of
every message (a store each, no system call, nothing on the dispatch path),
and which the master reads once a second.
"""

from __future__ import annotations

import mmap
import struct
import time

# A slot: 0.0 free; > 0 busy on one message since that time; < 0 idle since minus that time
# (CLOCK_MONOTONIC, which every process of the machine shares).
_SLOT = struct.Struct("d")


class WorkerBoard:
    """The slots, in an anonymous shared mapping that forked workers write and the master reads."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, max(1, slots) * _SLOT.size)  # MAP_SHARED: survives fork, shared

    def claim(self) -> int | None:
        """A free slot, marked idle from now (the master's, before it forks the worker), or None."""
        for slot in range(self.slots):
            if self.state(slot) == 0.0:
                self.idle(slot)
                return slot
        return None

    def has_free_slot(self) -> bool:
        return any(self.state(slot) == 0.0 for slot in range(self.slots))

    def release(self, slot: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, 0.0)

    def busy(self, slot: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, time.monotonic())

    def idle(self, slot: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, -time.monotonic())

    def state(self, slot: int) -> float:
        return float(_SLOT.unpack_from(self._map, slot * _SLOT.size)[0])


class PoolLimits:
    """The pool's options: the count that should be free to deliver, the most, and the two times."""

    def __init__(self, base: int, maximum: int, stall: float, max_idle: float) -> None:
        self.base = base
        self.maximum = max(base, maximum)  # a maximum at or below the base: the pool never grows
        self.stall = stall
        self.max_idle = max_idle


def stalled(states: list[float], now: float, stall: float) -> int:
    """How many of the workers (their slots' states) have been busy on one message for `stall` or more."""
    return sum(1 for state in states if state > 0 and now - state >= stall)


def should_start(states: list[float], now: float, limits: PoolLimits, backlog: bool) -> bool:
    """One more worker: messages wait, too few workers are free of a stalled message, and there is room."""
    counted = len(states) - stalled(states, now, limits.stall)
    return backlog and counted < limits.base and len(states) < limits.maximum


def to_retire(states: dict[int, float], now: float, limits: PoolLimits) -> int | None:
    """The key of the worker to ask to end (the one idle longest, past max_idle), or None.

    Only a worker beyond the base count, and only while the rest, less the stalled ones, still
    make up the base count: a pool whose base workers are all stalled keeps its extra ones.
    """
    values = list(states.values())
    counted = len(values) - stalled(values, now, limits.stall)
    if len(values) <= limits.base or counted - 1 < limits.base:
        return None
    idle = [(state, key) for key, state in states.items() if state < 0 and now + state >= limits.max_idle]
    return max(idle)[1] if idle else None  # the state nearest zero: idle since the earliest time
