"""With MTA_FUZZ_EXAMPLES set (the long profile), each target prints the inputs it tried (pytest -s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.fuzzing import LONG_EXAMPLES, TALLIES


@pytest.fixture(autouse=True)
def report_inputs_tried(request: pytest.FixtureRequest) -> Iterator[None]:
    TALLIES.clear()
    yield
    if LONG_EXAMPLES:
        for tally in TALLIES.values():
            print(f"\nfuzz {tally.name}: {tally.inputs} inputs tried in {tally.seconds:.1f} s ({request.node.name})")
