"""The fuzz targets as plain functions of one text, for scripts/fuzz-atheris.

Each is the body of the hypothesis test of the same target (hypothesis keeps the undecorated
function as `.hypothesis.inner_test`), so both fuzzers check exactly the same properties.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fuzz import test_fuzz_address, test_fuzz_config_expand, test_fuzz_headers, test_fuzz_smtp, test_fuzz_spool


def _inner(test: Any) -> Callable[..., None]:
    return test.hypothesis.inner_test  # type: ignore[no-any-return]


CHECKS: dict[str, Callable[[str], None]] = {
    "smtp-commands": _inner(test_fuzz_smtp.test_smtp_commands),
    "smtp-data": lambda text: _inner(test_fuzz_smtp.test_data_stream)(text, [7, 1, 64]),
    "envelope-addresses": _inner(test_fuzz_address.test_envelope_addresses),
    "header-addresses": _inner(test_fuzz_address.test_header_address_lists),
    "headers": _inner(test_fuzz_headers.test_header_blocks),
    "spool-H": _inner(test_fuzz_spool.test_header_files),
    "spool-J": lambda text: _inner(test_fuzz_spool.test_journals)(text.encode("utf-8", "surrogateescape")),
    "config": _inner(test_fuzz_config_expand.test_configurations),
    "expand": _inner(test_fuzz_config_expand.test_expansions),
}
