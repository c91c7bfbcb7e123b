"""Fixtures for the configuration tests: running mta as an unprivileged user."""

from tests.support.nobody import nobody, open_env

__all__ = ["nobody", "open_env"]
