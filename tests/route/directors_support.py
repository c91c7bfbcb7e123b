"""Helpers for the director tests: a config in a tmp dir, the engine end to end, real users.

The transports (appendfile, pipe) are written elsewhere, so the tests build
only the directors of a configuration (mta.runtime.build_driver) and give
the context the transport *names* the configuration uses: the engine and
the directors then check every transport name they hand out.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.config.loader import Config, load_config
from mta.route.base import Director
from mta.route.context import RoutingContext
from mta.route.engine import RoutingEngine, RoutingOutcome
from mta.route.item import AddressItem
from mta.runtime import Runtime, build_driver

TRANSPORT_NAMES = ("local_mbox", "address_pipe", "address_file", "address_directory", "catchall_mbox")

BASE = """\
spool_directory = {root}/spool
primary_hostname = mail.example.com
qualify_domain = example.com
domainlist local_domains = example.com : lists.example.com : other.example.com
"""


@dataclasses.dataclass
class World:
    """One test's configuration and engine."""

    root: Path
    config: Config
    directors: list[Director]

    @property
    def engine(self) -> RoutingEngine:
        return RoutingEngine(self.directors, [], self.config)

    def route(self, *addresses: str, verify: str | None = None) -> RoutingOutcome:
        ctx = RoutingContext(
            self.config,
            sender_address="sender@example.org",
            verify=verify,
            transports=dict.fromkeys(TRANSPORT_NAMES),
        )
        return self.engine.route([AddressItem(a) for a in addresses], ctx)

    def runtime(self, transports: tuple[str, ...] = TRANSPORT_NAMES) -> Runtime:
        """A Runtime holding these directors and transports of the given names, for check()."""
        return Runtime(
            config=self.config, directors=self.directors, routers=[], transports=dict.fromkeys(transports),
            authenticators=[], log_selectors=frozenset(),
        )


def make_world(root: Path, directors: str, main: str = "") -> World:
    """Write a config with `directors` as its directors section and build those directors."""
    path = root / "mta.conf"
    path.write_text(BASE.format(root=root) + main + "\nbegin directors\n\n" + directors)
    config = load_config(str(path))
    built = [build_driver(spec)[0] for spec in config.drivers["directors"]]
    return World(root, config, built)  # type: ignore[arg-type]


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# -- outcome helpers -------------------------------------------------------------


def accepted(outcome: RoutingOutcome) -> list[tuple[str, str | None]]:
    """(address, transport) of every accepted item, sorted."""
    return sorted((i.address, i.transport_name) for i in outcome.accepted)


def failed(outcome: RoutingOutcome) -> dict[str, str]:
    return {i.address: e.message for i, e in outcome.failed}


def deferred(outcome: RoutingOutcome) -> dict[str, str]:
    return {i.address: e.message for i, e in outcome.deferred}


def chain(item: AddressItem) -> list[str]:
    """The item and its ancestors, as -bt shows them (``alice <-- help <-- sales``)."""
    return [item.address] + [a.address for a in item.ancestors()]


# -- real users ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int
    home: Path


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


# One set of users per process: test modules each import the fixture, so pytest
# makes one session fixture per module; the users are created by the first and
# removed by the last to finish.
_created: dict[str, SystemUser] = {}
_holders = 0
_homes: list[Path] = []


@pytest.fixture(scope="session")
def system_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SystemUser]]:
    """Three real users (roles alice, bob, carol) with homes in a tmp dir, removed at the end."""
    global _holders
    if os.geteuid() != 0:
        pytest.skip("needs root: creates real users with useradd to test localuser and forwardfile")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel not installed")
    _holders += 1
    try:
        if not _created:
            # Not under pytest's tmp_path (0700 root): a user's .forward is read as the user,
            # who must be able to reach their home, as on a real system.
            _homes.append(Path(tempfile.mkdtemp(prefix="mta-homes-", dir="/tmp")))
            _create_users(_homes[0])
        yield dict(_created)
    finally:
        _holders -= 1
        if _holders == 0:
            while _created:
                _role, user = _created.popitem()
                _run(["userdel", user.name])
            while _homes:
                shutil.rmtree(_homes.pop(), ignore_errors=True)


def _create_users(homes: Path) -> None:
    homes.chmod(0o755)
    # The pid keeps two simultaneous test runs from fighting over the same names.
    tag = os.getpid() % 100000
    for role in ("alice", "bob", "carol"):
        name = f"mtd{tag}{role}"
        home = homes / name
        _run(["useradd", "-M", "-U", "-d", str(home), "-s", "/usr/sbin/nologin", name])
        pw = pwd.getpwnam(name)
        _created[role] = SystemUser(name, pw.pw_uid, pw.pw_gid, home)
        home.mkdir()
        os.chown(home, pw.pw_uid, pw.pw_gid)
        home.chmod(0o755)


def give(path: Path, user: SystemUser | None, mode: int = 0o644) -> Path:
    """Make `path` owned by `user` (None: root) with `mode`."""
    os.chown(path, user.uid if user else 0, user.gid if user else 0, follow_symlinks=False)
    if not path.is_symlink():
        path.chmod(mode)
    return path
