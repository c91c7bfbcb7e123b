"""The `mta`, `sendmail`, `mailq` and `newaliases` commands of a virtualenv: scripts that start fast.

pip's console scripts start Python with its `site` module, which reads every
`.pth` file of the virtualenv (setuptools' `distutils-precedence.pth` imports a
module; coverage's runs code) and looks for `sitecustomize`: about 3 ms of
every `sendmail` a cron job or a mail client starts, a tenth of its run in
mua_wrapper mode.  These scripts start Python with `-S` and put on `sys.path`
only what mta needs: the virtualenv's site-packages (mta's dependencies, and
mta itself when installed from a wheel) and, for an editable install, the
checkout.  When coverage asks child processes to measure themselves
(COVERAGE_PROCESS_START), or MTA_RUN_SITE is set (to any value: for a `sitecustomize`
or `.pth` file that must run, such as the test suite's system-call tracer), they run `site`
after all, as before.

They also start with the cyclic garbage collector off: importing mta's
modules makes tens of thousands of objects and the collector walked them
several times over (2-4 ms); `mta.cli.main` turns it on again for every mode
that may run long (see `mta.cli.SHORT_MODES`).  They end through
`mta.cli.run`, which spares a short run the interpreter's teardown.

`scripts/_venv.sh` and `scripts/install` run this module with the
virtualenv's Python after pip has installed mta: it rewrites those four
scripts in place.  The first line keeps the interpreter's path, which
scripts/install then relocates as it does for pip's scripts.

    python -m mta.launcher BIN_DIRECTORY
"""

from __future__ import annotations

import os
import sys

# command -> the function of mta.cli that it runs (as in pyproject.toml's [project.scripts])
COMMANDS = {"mta": "main", "sendmail": "main", "mailq": "mailq_main", "newaliases": "newaliases_main"}

TEMPLATE = """\
#!{python} -S
# Written by mta.launcher: Python without `site` (see that module), then mta.cli.{function}.
import sys
from os import environ

if "MTA_RUN_SITE" in environ or "COVERAGE_PROCESS_START" in environ or "COVERAGE_PROCESS_CONFIG" in environ:
    import site

    site.main()
else:
    # Not this script's directory (bin/: no modules there, and a directory listed at every start);
    # the checkout of an editable install before site-packages (whose listing mta's import then
    # spares).  The virtualenv is the one whose bin/python runs this (sys.executable, not resolved).
    venv = sys.executable.rpartition("/bin/")[0]
    del sys.path[0]
    sys.path += [*{extra!r}, *(f"{{venv}}/{{path}}" for path in {site_packages!r})]
import gc

gc.disable()
from mta.cli import {function}, run

if __name__ == "__main__":
    run({function})
"""


def script_text(python: str, function: str, site_packages: list[str], extra: list[str]) -> str:
    """The launcher for mta.cli.`function`, run by `python` (a virtualenv's bin/python);
    `site_packages` relative to the virtualenv, `extra` absolute."""
    return TEMPLATE.format(python=python, function=function, site_packages=site_packages, extra=extra)


def site_packages() -> list[str]:
    """The site-packages directories of the virtualenv whose Python runs this, relative to it."""
    import sysconfig

    found = [os.path.abspath(sysconfig.get_path(name)) for name in ("purelib", "platlib")]
    return [os.path.relpath(path, sys.prefix) for path in dict.fromkeys(found)]


def _checkout() -> str:
    """The directory this mta is imported from (a checkout, or site-packages when installed)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_launchers(bin_directory: str) -> list[str]:
    """Rewrite the mta commands in `bin_directory`, the bin/ of the virtualenv whose Python runs
    this (so that sysconfig names its site-packages); the paths written."""
    if os.path.realpath(os.path.join(sys.prefix, "bin")) != os.path.realpath(bin_directory):
        raise SystemExit(f"mta.launcher: run it with the Python of the virtualenv of {bin_directory}")
    relative = site_packages()
    # An editable install: mta is imported from the checkout, which pip names in a .pth file that
    # these scripts do not read.
    here = _checkout()
    installed = {os.path.realpath(os.path.join(sys.prefix, path)) for path in relative}
    extra = [] if os.path.realpath(here) in installed else [here]
    bin_directory = os.path.abspath(bin_directory)  # the first line names the interpreter absolutely
    python = os.path.join(bin_directory, "python")
    written = []
    for command, function in COMMANDS.items():
        path = os.path.join(bin_directory, command)
        if not os.path.exists(path):
            continue
        _write(path, script_text(python, function, relative, extra))
        written.append(path)
    return written


def write_checkout_launcher(path: str, function: str = "main") -> None:
    """A command at `path` that runs this checkout's mta.cli.`function` with the running
    virtualenv's Python, as the virtualenv's own would: for benchmarks of a checkout."""
    _write(path, script_text(os.path.join(sys.prefix, "bin", "python"), function, site_packages(), [_checkout()]))


def _write(path: str, text: str) -> None:
    temp = f"{path}.new"
    with open(temp, "w") as f:
        f.write(text)
    os.chmod(temp, 0o755)
    os.replace(temp, path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m mta.launcher BIN_DIRECTORY")
    write_launchers(sys.argv[1])
