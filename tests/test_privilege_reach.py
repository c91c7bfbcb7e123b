"""mta.privilege.keep_python_reachable: imports go on working after a drop to a user who cannot
reach the directories Python imports from (a pyenv or a virtualenv under /root, mode 0700).

Each case forks: the child makes the aliases (or not), drops to nobody for good, imports, and
reports by its exit status.  The modules live under a 0700 directory made for the test, so the
cases mean the same whatever this machine's Python is installed under.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.privilege import keep_python_reachable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

NOBODY = 65534


@pytest.fixture
def hidden_lib() -> Iterator[Path]:
    """<0700 dir>/lib (0755) holding a module and a package with a submodule."""
    top = Path(tempfile.mkdtemp(prefix="mta-reach-"))  # mkdtemp: 0700
    lib = top / "lib"
    (lib / "reachpkg").mkdir(parents=True)
    (lib / "reachmod.py").write_text("VALUE = 1\n")
    (lib / "reachpkg" / "__init__.py").write_text("")
    (lib / "reachpkg" / "sub.py").write_text("VALUE = 2\n")
    for path in (lib, lib / "reachpkg"):
        path.chmod(0o755)
    yield lib
    import shutil

    shutil.rmtree(top)


def _in_child(lib: Path, keep: bool) -> int:
    """Exit status of a child that imports reachpkg, maybe keeps Python reachable, drops to
    nobody and imports reachmod and reachpkg.sub: 0 when both imports worked."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its status
        status = 3
        try:
            sys.path.insert(0, str(lib))
            import reachpkg  # imported before the drop, its submodule after

            made = keep_python_reachable() if keep else True
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                import reachmod
                import reachpkg.sub
            except ImportError:
                status = 1
            else:
                status = 0 if made and reachmod.VALUE + reachpkg.sub.VALUE == 3 else 2
        finally:
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_imports_after_the_drop_need_the_aliases(hidden_lib: Path) -> None:
    assert _in_child(hidden_lib, keep=False) == 1  # the case the aliases are for
    assert _in_child(hidden_lib, keep=True) == 0


def test_directories_anyone_may_reach_are_left_as_they_are(hidden_lib: Path) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its status
        status = 3
        try:
            sys.path[:] = ["/usr/lib/python3/dist-packages", str(hidden_lib)]
            keep_python_reachable()
            visible, hidden = sys.path
            status = 0 if visible == "/usr/lib/python3/dist-packages" and hidden.startswith("/proc/self/fd/") else 1
        finally:
            os._exit(status)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
