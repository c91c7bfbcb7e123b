"""mta: a mail transfer agent in the tradition of Exim.

Importing the package puts a finder for its own modules on sys.meta_path, just
before the standard path finder (_ModuleFinder): finders put there earlier by
someone else (an import hook of a tracer or a test) keep their turn.  Why:
a `sendmail -t` loads some sixty of them, and the standard machinery spent
about 90 us on each before running a line of it
(the path finder's walk over the package's directory cache, each suffix the
file might have, the loader's own stat and header checks, in Python); this
one goes from the module's name to its file, and takes the `.pyc` when its
header matches the source as the standard loader would check it, about half
of that.  Anything else (no `.pyc`, a stale one, hash-based or optimised
bytecode, `python -v`, a bytecode prefix) goes to the standard loader, which
compiles and caches as usual; modules not of this package are left to the
other finders.
"""

import sys
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import MAGIC_NUMBER as _MAGIC
from _frozen_importlib_external import SourceFileLoader
from _imp import _fix_co_filename
from marshal import loads
from os import F_OK, O_CLOEXEC, O_RDONLY, access, close, read, stat
from os import open as _open

__version__ = "0.1.0"

_TAG = sys.implementation.cache_tag


class _Loader(SourceFileLoader):
    """The standard source loader, with the common case (a `.pyc` that matches) done directly."""

    def exec_module(self, module: object) -> None:
        spec = module.__spec__  # type: ignore[attr-defined]
        source = spec.loader_state
        data = _read(spec.cached)
        # The header of a timestamp-checked .pyc: magic number, flags 0, the source's mtime and size
        # (as importlib._bootstrap_external._validate_timestamp_pyc checks them).
        if (
            len(data) > 16
            and data[:4] == _MAGIC
            and data[4:8] == b"\0\0\0\0"
            and int.from_bytes(data[8:12], "little") == int(source.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(data[12:16], "little") == source.st_size & 0xFFFFFFFF
        ):
            code = loads(memoryview(data)[16:])  # a .pyc cut short raises here as in the standard loader
            _fix_co_filename(code, self.path)
            exec(code, module.__dict__)  # the module's own bytecode, as the standard loader runs it
        else:
            super().exec_module(module)


def _read(path: str) -> bytes:
    """The file's bytes, or b"" if it cannot be read.  Plain system calls: io.open_code's buffered
    reader (and even an unbuffered FileIO) adds system calls and objects a module."""
    try:
        fd = _open(path, O_RDONLY | O_CLOEXEC)
    except OSError:
        return b""
    try:
        data = read(fd, 65536)  # every module of mta's is smaller: one read
        if len(data) == 65536:
            parts = [data]
            while part := read(fd, 65536):
                parts.append(part)
            data = b"".join(parts)
        return data
    except OSError:
        return b""
    finally:
        close(fd)


class _ModuleFinder:
    """Finds mta's submodules in their package's directories (see the module's docstring)."""

    @staticmethod
    def find_spec(name: str, path: list[str] | None = None, target: object = None) -> ModuleSpec | None:
        if not name.startswith("mta.") or not path or sys.flags.verbose or sys.flags.optimize or sys.pycache_prefix:
            return None
        tail = name.rpartition(".")[2]
        for directory in path:
            # As the standard path finder: a package (a directory with __init__.py) before a module
            # file.  access(), not stat(): most names are modules, and a failed stat raises.
            package = f"{directory}/{tail}"
            if access(f"{package}/__init__.py", F_OK):
                source = f"{package}/__init__.py"
                cached = f"{package}/__pycache__/__init__.{_TAG}.pyc"
            else:
                source = f"{package}.py"
                cached = f"{directory}/__pycache__/{tail}.{_TAG}.pyc"
                package = ""
            try:
                found = stat(source)
                break
            except OSError:
                pass
        else:
            return None  # an extension module, a namespace package, or nothing: the other finders
        spec = ModuleSpec(name, _Loader(name, source), origin=source, loader_state=found, is_package=bool(package))
        if package:
            spec.submodule_search_locations = [package]
        spec.cached = cached
        spec.has_location = True
        return spec


if not any(finder is _ModuleFinder for finder in sys.meta_path):
    from _frozen_importlib_external import PathFinder as _PathFinder

    _at = next((i for i, finder in enumerate(sys.meta_path) if finder is _PathFinder), len(sys.meta_path))
    sys.meta_path.insert(_at, _ModuleFinder)
