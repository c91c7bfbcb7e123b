"""The memory of a process tree (a daemon: its master, receivers and workers), from /proc.

    memory = tree_memory(daemon.process.pid)    # Memory(rss=..., pss=..., processes=...) in bytes
    with PeakMemory(pid) as peak:                # sampled in a thread every `interval` seconds
        ... stress ...
    peak.rss, peak.pss, peak.hwm                 # the largest totals seen

RSS counts shared pages once per process (an over-estimate for forked
children); PSS shares them out, so the PSS of the whole tree is what the
tree really costs.  Samples can miss a short spike; VmHWM cannot: it is the
largest RSS a process has ever had, so its growth over a stress bounds the
stress's peak.  PSS needs /proc/<pid>/smaps_rollup, readable by the
process's owner or root; where it cannot be read it counts as the RSS.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time


@dataclasses.dataclass(frozen=True)
class Memory:
    rss: int
    pss: int
    processes: int
    hwm: int = 0  # the sum of the processes' VmHWM: the most RSS each has ever had, however briefly

    def __str__(self) -> str:
        return (f"RSS {self.rss / 2**20:.1f} MiB, PSS {self.pss / 2**20:.1f} MiB, high-water RSS "
                f"{self.hwm / 2**20:.1f} MiB in {self.processes} processes")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (read from each process's parent in /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def process_memory(pid: int) -> tuple[int, int, int] | None:
    """(RSS, PSS, VmHWM) of one process in bytes, None if it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = {line.split(":")[0]: line.split()[1] for line in f if line.startswith(("VmRSS:", "VmHWM:"))}
    except OSError:
        return None
    rss, hwm = int(fields.get("VmRSS", 0)) * 1024, int(fields.get("VmHWM", 0)) * 1024
    pss = rss
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next((int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:")), rss)
    except OSError:
        pass
    return rss, pss, hwm


def tree_memory(pid: int) -> Memory:
    rss = pss = hwm = count = 0
    for member in descendants(pid):
        sizes = process_memory(member)
        if sizes is not None:
            rss, pss, hwm, count = rss + sizes[0], pss + sizes[1], hwm + sizes[2], count + 1
    return Memory(rss, pss, count, hwm)


class PeakMemory:
    """The largest tree_memory() totals seen while the block runs."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.rss = self.pss = self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> Memory:
        memory = tree_memory(self.pid)
        self.rss, self.pss = max(self.rss, memory.rss), max(self.pss, memory.pss)
        self.hwm = max(self.hwm, memory.hwm)
        return memory

    @property
    def peak(self) -> Memory:
        return Memory(self.rss, self.pss, 0, self.hwm)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def wait_until(condition: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition()` until it is true or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
