"""Plant known bugs one at a time in a copy of the tree and check that the tests catch each.

Run it through scripts/plant-bugs.  For every bug below: copy the working tree
(tracked and untracked files, not the ignored ones) to a temporary directory,
make the one edit, run the tests that should catch it there, and print
"caught" (some test failed) or "NOT CAUGHT".  Before that the same tests run
once on an unplanted copy: they must pass, or no verdict means anything.

The planted copy is what both the in-process tests and the `mta` subprocesses
run: pytest puts the copy first on sys.path (pyproject's pythonpath), and
PYTHONPATH points the CLI subprocesses at it.  Exit status 0 when every bug
was caught.  Not part of CI: it runs the chosen tests ten times over.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Bug:
    name: str
    what: str
    path: str
    old: str  # must occur exactly once in `path`
    new: str
    tests: tuple[str, ...]


DURABILITY_TESTS = ("tests/spool/test_durability.py",)

BUGS = [
    # -- the table of issue 10 ------------------------------------------------------------------
    Bug(
        "fsync-D",
        "the fsync of -D before -H is written, removed",
        "mta/spool/writer.py",
        "            os.fsync(self.lock.fd)  # the body is on disk before any -H names it\n",
        "            pass  # planted: no fsync of -D\n",
        DURABILITY_TESTS,
    ),
    Bug(
        "fsync-hdr",
        "the fsync of the -H temporary file before its rename, removed",
        "mta/spool/files.py",
        "            os.fsync(fd)  # the contents are on disk before the rename can be\n",
        "",
        DURABILITY_TESTS,
    ),
    Bug(
        "fsync-J",
        "the fsync after a -J journal line, removed",
        "mta/spool/store.py",
        "                write_all(fd, line)  # one write(): a crash tears at most this line\n"
        "                os.fsync(fd)\n",
        "                write_all(fd, line)  # one write(): a crash tears at most this line\n",
        DURABILITY_TESTS,
    ),
    Bug(
        "shaper-hold-back",
        "the hold-back of a line end across a chunk boundary in the output shaper, removed",
        "mta/transports/write.py",
        "        if len(rest) >= self.hold:\n"
        "            out += self._shape(rest, True)\n"
        "            self.at_line_start = False\n"
        "        else:\n"
        "            self.pending = rest\n",
        "        out += self._shape(rest, True)\n        self.at_line_start = False\n",
        ("tests/transports/test_write_shaping.py", "tests/e2e/test_chunk_boundaries.py"),
    ),
    Bug(
        "no-remote-bounce",
        "the bounce for a remote 550, not sent",
        "mta/deliver/delivery.py",
        "        for item, error in self.report.failed:\n            if item.errors_to == \"\":\n",
        "        for item, error in self.report.failed:\n"
        "            if getattr(error, \"host\", None) is not None:\n"
        "                continue  # planted: failures at a remote host are not reported\n"
        "            if item.errors_to == \"\":\n",
        ("tests/e2e/test_remote_delivery.py",),
    ),
    Bug(
        "wrapper-ignores-defer",
        "mua_wrapper ignoring a routing deferral (a :defer: alias, a DNS timeout)",
        "mta/wrapper.py",
        "for item, error in (*outcome.failed, *outcome.deferred)]",
        "for item, error in outcome.failed]",
        ("tests/wrapper/test_mua_wrapper.py",),
    ),
    # -- more of the same kind, for the checks added with them --------------------------------------
    Bug(
        "fsync-dir-after-rename",
        "the fsync of the spool directory after -H is renamed into place, removed",
        "mta/spool/files.py",
        "        raise os_error(\"rename\", final, exc) from exc\n    fsync_directory(directory)\n",
        "        raise os_error(\"rename\", final, exc) from exc\n",
        DURABILITY_TESTS,
    ),
    Bug(
        "journal-dropped-first",
        "-J removed before the rewritten -H is written",
        "mta/deliver/delivery.py",
        "        self.spool.rewrite_envelope(envelope)\n        self.spool.remove_journal(self.message_id)\n",
        "        self.spool.remove_journal(self.message_id)\n        self.spool.rewrite_envelope(envelope)\n",
        DURABILITY_TESTS,
    ),
    Bug(
        "split-crlf",
        "a CR LF cut by a chunk boundary shaped as two line ends (the bug these tests found)",
        "mta/transports/write.py",
        "        if self.spec.crlf and block.endswith(b\"\\r\"):\n",
        "        if False:  # planted: no carry of a trailing CR\n",
        ("tests/transports/test_write_shaping.py",),
    ),
    Bug(
        "data-tail-hold-back",
        "DATA framing forgets the line end of a previous chunk when the last one is a single byte",
        "mta/transports/smtp_wire.py",
        "        tail = chunk[-2:] if len(chunk) >= 2 else tail[-1:] + chunk\n",
        "        tail = chunk[-2:]\n",
        ("tests/transports/test_write_shaping.py", "tests/transports/test_smtp_wire.py"),
    ),
    # -- the daemon's batched commits (mta/receive/spool_writer.py) ------------------------------------
    Bug(
        "batch-fsync-dir-after-rename",
        "the receiver's batch reports its messages durable before the directory fsync after the renames",
        "mta/receive/spool_writer.py",
        "        if not _sync(directory, renamed):\n            continue\n",
        "",
        ("tests/receive/test_spool_writer.py", "tests/daemon/test_spool_durability.py"),
    ),
    Bug(
        "batch-one-failure-fails-all",
        "one message that cannot be written stops the rest of its batch",
        "mta/receive/spool_writer.py",
        "            except Exception as exc:\n                commit.error = exc\n\n    started",
        "            except Exception as exc:\n                commit.error = exc\n                pending.clear()\n\n"
        "    started",
        ("tests/receive/test_spool_writer.py",),
    ),
    Bug(
        "cancel-aborts-mid-batch",
        "a session cancelled while its message is in a batch removes its files without waiting for the batch",
        "mta/receive/spooler.py",
        "                cancelled = exc\n                if future.done():\n                    break\n",
        "                cancelled = exc\n                self._done = False\n"
        "                await asyncio.shield(self.abort())\n                break\n",
        ("tests/receive/test_spool_writer.py",),
    ),
    # -- crash consistency (issue 16: found by scripts/crash-test) ----------------------------------------
    Bug(
        "no-tidy",
        "queue runs no longer tidy crash leftovers (a killed reception's -D stays for ever)",
        "mta/queue/runner.py",
        "    tidy_leftovers(runtime)\n    with DeliveryLoop(runtime) as runner:\n",
        "    with DeliveryLoop(runtime) as runner:\n",
        ("tests/queue/test_crash_leftovers.py",),
    ),
    Bug(
        "msglog-after-H",
        "removing a message unlinks its -H before its msglog (a crash between leaves an orphan msglog)",
        "mta/spool/store.py",
        "            self.remove_msglog(message_id, preserve=preserve_msglog)\n"
        "            if unlink(directory / (message_id + HEADER_SUFFIX)):\n"
        "                fsync_directory(directory)\n",
        "            if unlink(directory / (message_id + HEADER_SUFFIX)):\n"
        "                fsync_directory(directory)\n"
        "            self.remove_msglog(message_id, preserve=preserve_msglog)\n",
        ("tests/queue/test_crash_leftovers.py",),
    ),
    Bug(
        "journal-left-as-roots",
        "reading a -J as root no longer gives it to mta_user (a crash before append_journal's fchown "
        "then makes the daemon deliver its remote recipients again at every queue run)",
        "mta/spool/store.py",
        "                adopt_directory_owner(journal.fileno(), path.parent)\n",
        "",
        ("tests/daemon/test_journal_after_crash.py",),
    ),
]


def tree_files() -> list[str]:
    """Tracked and untracked (not ignored) files: the working tree as the developer has it."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


def copy_tree(files: list[str], target: Path) -> None:
    for name in files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)


def plant(tree: Path, bug: Bug) -> None:
    path = tree / bug.path
    text = path.read_text()
    count = text.count(bug.old)
    if count != 1:
        raise SystemExit(f"plant-bugs: {bug.name}: the text to replace occurs {count} times in {bug.path}; "
                         "update scripts/plant_bugs.py to the code as it is now")
    path.write_text(text.replace(bug.old, bug.new))


def run_tests(tree: Path, tests: tuple[str, ...], python: str, stop_first: bool) -> tuple[int, str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH", "")) if p)
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        env.pop(name, None)
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests]
    if stop_first:
        argv.insert(4, "-x")
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    failed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
    return proc.returncode, (failed[0] if failed else ""), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="plant only these bugs (default: all)")
    parser.add_argument("--list", action="store_true", help="list the bugs and the tests that should catch them")
    parser.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = parser.parse_args()
    bugs = [bug for bug in BUGS if not args.names or bug.name in args.names]
    if args.list or not bugs:
        for bug in BUGS:
            print(f"{bug.name:24} {bug.what}\n{'':24} {bug.path}; tests: {' '.join(bug.tests)}")
        return 0 if bugs else 1
    python = sys.executable
    files = tree_files()
    work = Path(tempfile.mkdtemp(prefix="mta-plant-"))
    work.chmod(0o755)  # tests that run mta as nobody must reach the copy
    try:
        control = work / "control"
        copy_tree(files, control)
        all_tests = tuple(sorted({t for bug in bugs for t in bug.tests}))
        status, _first, seconds = run_tests(control, all_tests, python, stop_first=False)
        if status != 0:
            print(f"plant-bugs: the tests fail without any planted bug ({' '.join(all_tests)}): no verdict")
            return 2
        print(f"control: the tests pass on an unplanted copy ({seconds:.0f}s)")
        missed = []
        for bug in bugs:
            tree = work / bug.name
            copy_tree(files, tree)
            plant(tree, bug)
            status, first, seconds = run_tests(tree, bug.tests, python, stop_first=True)
            if status == 1:
                verdict = f"caught      ({seconds:.0f}s, first failure: {first})"
            elif status == 0:
                verdict = f"NOT CAUGHT  ({seconds:.0f}s)"
                missed.append(bug.name)
            else:
                verdict = f"ERROR       (pytest exit {status}: the planted copy did not run)"
                missed.append(bug.name)
            print(f"{bug.name:24} {verdict}\n{'':24} {bug.what}", flush=True)
            if not args.keep:
                shutil.rmtree(tree, ignore_errors=True)
        print(f"{len(bugs) - len(missed)} of {len(bugs)} planted bugs caught")
        return 1 if missed else 0
    finally:
        if args.keep:
            print(f"trees kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
