"""Under coverage, a CLI run that repeats what this test module has already run is not measured.

Coverage (patch = subprocess) makes every child Python import and start
coverage and save its data at exit: about 0.16 s of CPU per process, which
was most of the suite's time under coverage (it starts over a thousand `mta`
processes on two cores).  Many of those runs repeat one another: a table of
cases, a queue built message by message, `-bp` after each step.  So a run is
measured while its mode (its options, without their file names and
addresses) has been measured fewer than MEASURED_PER_MODE times by this test
module in this worker; later repeats run unmeasured.  Daemons and queue runs
get a larger budget (MTA_MEASURED_LONG_LIVED, 3): each is long-lived and runs
code nothing else runs, but a daemon is five processes saving their data.
MTA_MEASURED_PER_MODE changes the number (a large one measures everything).
docs/testing.md says what this costs in coverage.
"""

from __future__ import annotations

import collections
import os
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.support.mta import COVERAGE_VARIABLES

MEASURED_PER_MODE = int(os.environ.get("MTA_MEASURED_PER_MODE", "1"))
# Daemons and queue runs (option prefixes) are long-lived and run code nothing else runs: more of
# them are measured, but not all (a daemon is five measured processes, each saving its data).
LONG_LIVED = ("-bd", "-q")
MEASURED_LONG_LIVED = int(os.environ.get("MTA_MEASURED_LONG_LIVED", "3"))
_measured: collections.Counter[tuple[str, tuple[str, ...]]] = collections.Counter()


def mode_of(args: Any) -> tuple[str, ...]:
    """The options of a command line, without the values that follow -C and the like."""
    words = [args] if isinstance(args, str | bytes) else [str(w) for w in args]
    program = os.path.basename(str(words[0])) if words else ""
    return (program, *(w.split("=", 1)[0] for w in words[1:] if isinstance(w, str) and w.startswith("-")))


def budgeted_popen(module: str) -> Iterator[None]:
    """Patch subprocess.Popen for one test of `module` (a generator for a fixture)."""
    if not any(os.environ.get(name) for name in COVERAGE_VARIABLES):
        yield  # coverage is not running: nothing to save
        return
    original = subprocess.Popen.__init__

    def init(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        mode = mode_of(args)
        long_lived = any(w.startswith(LONG_LIVED) for w in mode[1:])
        key = (module, mode)
        if _measured[key] < (MEASURED_LONG_LIVED if long_lived else MEASURED_PER_MODE):
            _measured[key] += 1
        else:
            env = dict(os.environ if options.get("env") is None else options["env"])
            for name in COVERAGE_VARIABLES:
                env.pop(name, None)
            options["env"] = env
        original(self, args, *rest, **options)

    subprocess.Popen.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]
