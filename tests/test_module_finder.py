"""mta's own module finder (mta/__init__.py) loads what the standard machinery would, and leaves
to it every case it does not handle: a stale or missing `.pyc`, a name not of mta."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import py_compile
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mta
import mta.config


@pytest.fixture
def extra_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory searched for mta's submodules after the package's own, and the names imported
    from it forgotten afterwards."""
    mta.__path__.append(str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        mta.__path__.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]
        importlib.invalidate_caches()


def test_finds_what_the_path_finder_finds() -> None:
    for name, path in (("mta.wrapper", mta.__path__), ("mta.config.loader", mta.config.__path__)):
        ours = mta._ModuleFinder.find_spec(name, path)
        theirs = importlib.machinery.PathFinder.find_spec(name, path)
        assert ours is not None and theirs is not None
        assert (ours.origin, ours.cached, ours.submodule_search_locations, ours.parent) == (
            theirs.origin,
            theirs.cached,
            theirs.submodule_search_locations,
            theirs.parent,
        )
    package = mta._ModuleFinder.find_spec("mta.route", mta.__path__)
    assert package is not None and package.submodule_search_locations == [os.path.join(mta.__path__[0], "route")]
    # Just before the standard path finder: an import hook put first by a tracer or a test (the
    # syscall trace's) is still asked before it.
    assert sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder) - 1] is mta._ModuleFinder
    assert isinstance(importlib.import_module("mta.wrapper").__loader__, mta._Loader)


def test_other_names_and_missing_modules_are_left_to_the_other_finders() -> None:
    assert mta._ModuleFinder.find_spec("json", None) is None
    assert mta._ModuleFinder.find_spec("mta.no_such_module", mta.__path__) is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mta.no_such_module")


def test_a_current_pyc_is_run(extra_dir: Path) -> None:
    source = extra_dir / "finder_current.py"
    source.write_text("VALUE = 'source'\n")
    py_compile.compile(str(source), doraise=True)
    module = importlib.import_module("mta.finder_current")
    assert module.VALUE == "source"
    assert module.__file__ == str(source)
    assert module.__cached__ == str(extra_dir / "__pycache__" / f"finder_current.{sys.implementation.cache_tag}.pyc")
    assert module.__loader__.get_source("mta.finder_current") == "VALUE = 'source'\n"


def test_a_stale_pyc_is_not_run(extra_dir: Path) -> None:
    source = extra_dir / "finder_stale.py"
    source.write_text("VALUE = 'old'\n")
    py_compile.compile(str(source), doraise=True)
    source.write_text("VALUE = 'newer'\n")
    stat = source.stat()
    os.utime(source, (stat.st_atime, stat.st_mtime + 5))
    assert importlib.import_module("mta.finder_stale").VALUE == "newer"


def test_a_package_before_a_module_of_the_same_name(extra_dir: Path) -> None:
    (extra_dir / "finder_both").mkdir()
    (extra_dir / "finder_both" / "__init__.py").write_text("KIND = 'package'\n")
    (extra_dir / "finder_both" / "part.py").write_text("KIND = 'submodule'\n")
    (extra_dir / "finder_both.py").write_text("KIND = 'module'\n")
    assert importlib.import_module("mta.finder_both").KIND == "package"
    assert importlib.import_module("mta.finder_both.part").KIND == "submodule"
