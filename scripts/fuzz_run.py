"""scripts/fuzz: run the hypothesis fuzz targets of tests/fuzz with many examples each.

Each target is the test function itself (tests/fuzz/test_fuzz_*.py), run with the long profile
(MTA_FUZZ_EXAMPLES examples, hypothesis deadline on).  For each it prints the inputs it tried, the
time, and the outcome; a failure prints hypothesis's minimal example (put it in an @example once
the bug is fixed).  Exit status 1 if any target failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    "smtp-commands": ("tests.fuzz.test_fuzz_smtp", "test_smtp_commands"),
    "smtp-data": ("tests.fuzz.test_fuzz_smtp", "test_data_stream"),
    "envelope-addresses": ("tests.fuzz.test_fuzz_address", "test_envelope_addresses"),
    "header-addresses": ("tests.fuzz.test_fuzz_address", "test_header_address_lists"),
    "headers": ("tests.fuzz.test_fuzz_headers", "test_header_blocks"),
    "spool-H": ("tests.fuzz.test_fuzz_spool", "test_header_files"),
    "spool-J": ("tests.fuzz.test_fuzz_spool", "test_journals"),
    "config": ("tests.fuzz.test_fuzz_config_expand", "test_configurations"),
    "expand": ("tests.fuzz.test_fuzz_config_expand", "test_expansions"),
}


def run_target(name: str) -> tuple[str, int, float, str]:
    """(name, inputs tried, seconds, "ok" or the failure) for one target, in this process."""
    import importlib
    import warnings

    warnings.filterwarnings("ignore", "Generating overly large repr")
    module_name, function_name = TARGETS[name]
    module = importlib.import_module(module_name)
    from tests.fuzz.fuzzing import TALLIES

    TALLIES.clear()
    started = time.monotonic()
    outcome = "ok"
    try:
        getattr(module, function_name)()
    except Exception:
        outcome = "FAILED\n" + traceback.format_exc(limit=-3)
    inputs = sum(t.inputs for t in TALLIES.values())
    return name, inputs, time.monotonic() - started, outcome


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--examples", type=int,
                        default=int(os.environ.get("MTA_FUZZ_EXAMPLES") or 100_000),
                        help="examples per target (default: MTA_FUZZ_EXAMPLES, else 100000)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="targets run at once (processes)")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("names", nargs="*", help="run the targets whose name contains one of these")
    args = parser.parse_args()
    if args.list:
        print("\n".join(TARGETS))
        return 0
    names = [n for n in TARGETS if not args.names or any(part in n for part in args.names)]
    if not names:
        parser.error(f"no target matches {args.names}; --list shows them")
    os.environ["MTA_FUZZ_EXAMPLES"] = str(args.examples)  # read by tests/fuzz/fuzzing.py on import
    sys.path.insert(0, str(ROOT))
    print(f"{len(names)} targets, {args.examples} examples each, {args.jobs} at once")
    print(f"{'target':<20} {'inputs':>9} {'seconds':>9} {'inputs/s':>9}  result", flush=True)
    started = time.monotonic()
    failed = 0
    total = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, inputs, seconds, outcome in pool.map(run_target, names):
            total += inputs
            failed += outcome != "ok"
            print(f"{name:<20} {inputs:>9} {seconds:>9.1f} {inputs / max(seconds, 1e-9):>9.0f}  {outcome}",
                  flush=True)
    print(f"{'total':<20} {total:>9} {time.monotonic() - started:>9.1f}  "
          f"{'all targets passed' if not failed else f'{failed} target(s) FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
