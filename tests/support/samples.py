"""Real Exim 4.96 output to compare with: tests/data/exim-samples (see its README.md).

A copy of the project's research samples, kept in the repository so the
comparisons run wherever the tests run.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "exim-samples"


def sample_text(name: str) -> str:
    """A sample file without its first line (the `#` line saying what produced it)."""
    return (SAMPLES / name).read_text().split("\n", 1)[1]
