"""What the fuzz targets share: how many examples, a bound on each example's time, and inputs
that reach deep (valid inputs mutated, as well as random text).

The number of examples comes from `MTA_FUZZ_EXAMPLES`: unset, each target tries a few dozen
inputs (the CI profile: every target together in a few seconds); set, each target tries that
many and reports how many inputs it ran and how long it took (scripts/fuzz prints the table).

Each example runs under `time_bound()`: an interval timer that raises `Hang` (a BaseException,
so no ``except Exception`` in the code under test can swallow it) after `HANG_SECONDS`.  That
is far above what any example needs even on a loaded machine, and far below what a
catastrophic regular expression on a long input takes.  The long profile adds hypothesis's own
deadline as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
HANG_SECONDS = float(os.environ.get("MTA_FUZZ_HANG_SECONDS", "5"))

# Unset: the CI profile.  Set: the long profile, this many examples per target.
LONG_EXAMPLES = int(os.environ.get("MTA_FUZZ_EXAMPLES", "0") or 0)

F = TypeVar("F", bound=Callable[..., Any])


def fuzz_settings(ci_examples: int) -> Callable[[F], F]:
    """The settings of one target: `ci_examples` in CI, MTA_FUZZ_EXAMPLES in a long run."""
    if LONG_EXAMPLES:
        return settings(
            max_examples=LONG_EXAMPLES,
            deadline=timedelta(seconds=3),
            suppress_health_check=list(HealthCheck),
            database=None,
            print_blob=True,
        )
    # No hypothesis deadline in CI (a loaded machine is not a failure: docs/testing.md); the
    # time bound below still catches a hang.  No example database: each run starts fresh and
    # leaves nothing behind; a failure prints the example to put in an @example.  The same
    # inputs every run (derandomize): CI passes or fails on the code, not on the draw; the
    # long runs (scripts/fuzz) are the ones that explore.
    return settings(
        max_examples=ci_examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        database=None,
    )


class Hang(BaseException):
    """An example ran longer than HANG_SECONDS."""


@contextlib.contextmanager
def time_bound(seconds: float = HANG_SECONDS) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise Hang(f"an example ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass
class Tally:
    """Inputs tried by one target, and the time they took (read by scripts/fuzz)."""

    name: str
    inputs: int = 0
    seconds: float = 0.0

    @contextlib.contextmanager
    def example(self) -> Iterator[None]:
        self.inputs += 1
        started = time.perf_counter()
        try:
            with time_bound():
                yield
        finally:
            self.seconds += time.perf_counter() - started


TALLIES: dict[str, Tally] = {}


def tally(name: str) -> Tally:
    return TALLIES.setdefault(name, Tally(name))


# -- inputs -----------------------------------------------------------------------------------------

# Characters that matter to one parser or another: delimiters, quotes, escapes, line ends, NUL,
# non-ASCII and a lone surrogate (what surrogateescape makes of a byte that is not UTF-8).
SPECIALS = [*'<>@:;,.%!"\\()[]{}$=+- \t\r\n\0#/*?^|&~\'`', "\x7f", "\x1b", "é", "ü", "\u2028", "\udcff",
            "\U0001f600", "\ufeff"]
_special = st.sampled_from(SPECIALS)
_char = st.one_of(_special, st.characters(codec="utf-8", exclude_categories=("Cs",)), st.characters())


def fragments(words: Sequence[str]) -> st.SearchStrategy[str]:
    """Short pieces to insert: a target's own key words, special characters, random text."""
    return st.one_of(
        st.sampled_from(list(words)) if words else st.nothing(),
        _special,
        st.text(_char, max_size=8),
    )


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[str], words: Sequence[str] = (), max_edits: int = 6) -> str:
    """A seed (a valid input) with a few edits: insert, delete, duplicate, replace, splice in a
    piece of another seed, or repeat a piece many times (a long input, for slow regexes)."""
    text = draw(st.sampled_from(list(seeds)))
    pieces = fragments(words)
    for _ in range(draw(st.integers(0, max_edits))):
        n = len(text)
        start = draw(st.integers(0, n))
        end = draw(st.integers(start, min(n, start + 16)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "splice", "repeat"]))
        if op == "insert":
            text = text[:start] + draw(pieces) + text[start:]
        elif op == "delete":
            text = text[:start] + text[end:]
        elif op == "replace":
            text = text[:start] + draw(pieces) + text[end:]
        elif op == "duplicate":
            text = text[:end] + text[start:end] + text[end:]
        elif op == "splice":
            other = draw(st.sampled_from(list(seeds)))
            a = draw(st.integers(0, len(other)))
            b = draw(st.integers(a, min(len(other), a + 40)))
            text = text[:start] + other[a:b] + text[start:]
        else:
            unit = text[start:end] or draw(pieces) or "a"
            text = text[:start] + unit * draw(st.integers(100, 4000)) + text[end:]
    return text


def long_runs(words: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """A short piece repeated thousands of times, between two short pieces: the input that makes
    a backtracking regular expression take exponential time."""
    pieces = fragments(words)
    return st.builds(lambda a, unit, n, b: a + unit * n + b, pieces, pieces.filter(bool),
                     st.integers(1000, 8000), pieces)


def inputs(seeds: Sequence[str], words: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """What a target gets: mostly mutated valid inputs, some random text, some long runs."""
    return st.one_of(
        mutated(seeds, words),
        mutated(seeds, words),
        mutated(seeds, words),
        st.text(_char, max_size=200),
        long_runs(words),
    )


def surrogate_bytes(text: str) -> bytes:
    """Text back to the bytes it stands for (lone surrogates from surrogateescape become bytes)."""
    return text.encode("utf-8", "surrogateescape") if _encodable(text) else text.encode("utf-8", "replace")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


# -- seeds from the repository ------------------------------------------------------------------------

_CONFIG_BLOCK = re.compile(r"^```mta-config\s*\n(.*?)^```", re.S | re.M)


def config_seeds() -> list[str]:
    """Whole configurations: the shipped one, the Exim sample, the expansion corpus's, and every
    complete one in the manual."""
    files = [ROOT / "etc" / "mta.conf", ROOT / "tests" / "data" / "exim-samples" / "samples.conf",
             ROOT / "tests" / "expand" / "corpus" / "corpus.conf"]
    seeds = [p.read_text() for p in files if p.exists()]
    for page in sorted((ROOT / "docs").glob("*.md")):
        seeds.extend(_CONFIG_BLOCK.findall(page.read_text()))
    return seeds


def header_file_seeds() -> list[tuple[str, bytes]]:
    """(message id, -H contents) of the Exim samples."""
    out = []
    for path in sorted((ROOT / "tests" / "data" / "exim-samples").glob("spool-*-H.txt")):
        data = path.read_bytes().split(b"\n", 1)[1]  # without the `#` line saying what made it
        out.append((data.split(b"\n", 1)[0][:-2].decode(), data))
    return out


def expression_seeds() -> list[str]:
    """The expansion corpus (checked against Exim), with its FILES macro pointing at its files."""
    corpus = ROOT / "tests" / "expand" / "corpus"
    out = []
    for line in (corpus / "expressions.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("[bem:"):
            line = line.partition("] ")[2]
        out.append(line.replace("FILES", str(corpus / "files")))
    return out
