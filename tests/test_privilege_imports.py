"""Everything code imports lazily after a privilege drop is imported before it (IMPORTS_BEFORE_DROP).

A delivery child drops to the recipient; with a Python under a directory only
root can read (pyenv under /root, as on the machines this project is built on)
an import after the drop fails with ModuleNotFoundError, and the delivery
defers for a reason that has nothing to do with the mail.  The imports inside
functions of the code that runs there are found from the source, so a new one
cannot be forgotten.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from mta.privilege import IMPORTS_BEFORE_DROP, import_before_drop

ROOT = Path(__file__).resolve().parents[1]
# The code that runs in a child after become_user: expansions and lookups, the local
# transports, reading a user's .forward and :include: files, and the child's own side.
AFTER_DROP = [
    "mta/expand", "mta/message", "mta/taint.py", "mta/config/lists.py",
    "mta/route/redirect.py", "mta/route/user_files.py",
    "mta/route/filter.py", "mta/route/filter_checks.py", "mta/route/filter_parse.py",
    "mta/deliver/local_exec.py", "mta/transports/_local.py", "mta/transports/appendfile.py",
    "mta/transports/pipe.py", "mta/transports/autoreply.py", "mta/transports/_command.py", "mta/transports/_maildir.py",
    "mta/transports/_locking.py", "mta/transports/write.py", "mta/transports/base.py",
]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def lazy_imports() -> dict[str, str]:
    """Module name -> a file that imports it inside a function (TYPE_CHECKING blocks aside)."""
    found: dict[str, str] = {}
    for entry in AFTER_DROP:
        path = ROOT / entry
        for source in [path] if path.is_file() else sorted(path.rglob("*.py")):
            tree = ast.parse(source.read_text())
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    names: list[str] = []
                    if isinstance(node, ast.Import):
                        names = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        names = [node.module]
                        # `from package import submodule` loads the submodule too.
                        names += [f"{node.module}.{a.name}" for a in node.names
                                  if _is_module(f"{node.module}.{a.name}")]
                    for name in names:
                        found.setdefault(name, str(source.relative_to(ROOT)))
    return found


def test_every_lazy_import_after_a_drop_is_imported_before_it() -> None:
    found = lazy_imports()
    assert "subprocess" in found and "hmac" in found  # the scan sees what it is meant to
    missing = {name: where for name, where in found.items()
               if name not in IMPORTS_BEFORE_DROP and name != "typing"}
    assert missing == {}, "add these to mta.privilege.IMPORTS_BEFORE_DROP"


def test_the_list_imports() -> None:
    import_before_drop()
    import sys

    assert all(name in sys.modules for name in IMPORTS_BEFORE_DROP)
