"""Fixtures for the spool tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.spool.store import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool")
    spool.ensure_directories()
    return spool
