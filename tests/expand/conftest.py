"""Fixtures for the expansion tests: running mta as an unprivileged user (a lookup root could not fail)."""

from tests.support.nobody import nobody, open_env

__all__ = ["nobody", "open_env"]
