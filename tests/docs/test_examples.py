"""Every marked example in docs/*.md, extracted and run (the convention is in docs/testing.md).

A fenced block's info string says what it is:

    ```mta-config                  a whole configuration file: it must load (what `mta -bV` checks)
    ```mta-config directors        a fragment of one section, checked inside the world's configuration (below)
    ```console                     `$ command` lines (`# command` for root), each followed by the output it
                                   must print
    ```<anything> file=/etc/x      also written to /etc/x in the page's world, for the blocks after it (a
                                   configuration fragment: the world's configuration with the fragment in)
    ```text, ```sh, ```ini         not run: output samples and excerpts, commands that talk to a server
                                   elsewhere on the network, systemd settings (every block needs one)

A block inside an HTML comment (`<!--` ... `-->`) is run like any other but not shown on the page:
the set-up of a queue for the examples after it, say.

One test per page; its blocks run in page order in a world of their own (a
temporary directory) and one bash.  Absolute paths under /etc/, /var/, /tmp/ and
/usr/local/ in blocks and commands are read as paths in the world, and output shows them
back as written, so an example can say /etc/aliases and mean it.  Port 2525 is
a port of 127.0.0.1 on which nothing listens (the world holds it bound), so an
example can show a host that refuses connections; on port 2526 an SMTP server
(aiosmtpd, calling itself smarthost.example.net) takes every message.  Console commands run with
`mta`, `sendmail`, `mailq` and `newaliases` given `-C /etc/mta/mta.conf`: the
world's (and so is `mta-next`'s), which is the shipped etc/mta.conf until a block with
file=/etc/mta/mta.conf replaces it; that file must set spool_directory, so that
no example can reach the machine's spool.

Expected output: each line exactly, except that `...` alone stands for any
number of lines and `...` inside a line for any text, and that a date, a time
or a message id in it stands for any of its kind: the first time an id is
matched it is bound to the id actually printed, and from then on it means that
id, in output and in commands.  So a page can show a real session, ids and
times included, and its commands can name the ids it showed.

A section fragment is put into the world's configuration (at first etc/mta.conf):
directors, routers, retry and rewrite fragments replace that section;
transports, authenticators and acl fragments add their instances to it,
replacing ones of the same name (bare ACL statements end the first ACL); `main` fragments set main options (and
named lists), replacing the earlier settings of the same ones.
Configurations are loaded in this process (mta.config.loader.load_config,
then the checks of -bV), which keeps the whole run to a second or two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.readiness import readable
from tests.support.sink import SmtpSink

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DEFAULT_CONFIG = REPO / "etc" / "mta.conf"
BIN = Path(sys.executable).parent

FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
CHECKED = ("mta-config", "console")
# Every fenced block in docs/ starts with one of these (docs/testing.md): the checked kinds, or
# what a block that cannot be run is.  A bare ``` is an error, so no example is left ambiguous.
KINDS = {
    **dict.fromkeys(CHECKED, "checked"),
    "text": "output samples, log and file excerpts, diagrams: shown, not run",
    "sh": "commands that talk to a server elsewhere on the network (swaks, openssl s_client); with file=, "
    "a script a console block runs",
    "ini": "systemd unit settings (tests/install/test_unit.py compares them with the unit)",
}
MAPPED = re.compile(r"(?<![\w.~/$-])/(etc|var|tmp|usr/local)/")
INSTANCE = re.compile(r"^([A-Za-z_][\w-]*):\s*$")
MERGED = ("transports", "authenticators", "acl")
CLOSED_PORT = "2525"  # in examples: a port where nothing listens
SMTP_PORT = "2526"  # in examples: an SMTP server that takes every message
SECTIONS = ("acl", "directors", "routers", "transports", "retry", "rewrite", "authenticators")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str
    line: int
    kind: str
    args: tuple[str, ...]
    attrs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        words = match.group("info").split()
        if not words:
            continue
        attrs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        if words[0] not in CHECKED and "file" not in attrs:
            continue
        indent = len(match.group("indent"))
        body = "".join(line[indent:] + "\n" for line in match.group("body").splitlines())
        line = text.count("\n", 0, match.start()) + 1
        args = tuple(w for w in words[1:] if "=" not in w)
        found.append(Block(page.name, line, words[0], args, attrs, body))
    return found


PAGES = sorted(p.name for p in DOCS.glob("*.md") if blocks(p))


# -- configurations ------------------------------------------------------------------------------


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """Main part and {section: body} of a configuration."""
    parts = re.split(r"^begin[ \t]+(\w+)[ \t]*\n", text, flags=re.M)
    return parts[0], dict(zip(parts[1::2], parts[2::2], strict=True))


def instances(body: str) -> list[tuple[str | None, str]]:
    """(name, text) of each instance in a section body; text before the first is (None, text)."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in body.splitlines(keepends=True):
        match = INSTANCE.match(line)
        if match:
            out.append((match.group(1), []))
        out[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in out]


def main_key(line: str) -> str | None:
    """The option or named list a main-section line sets (`no_x` sets x), or None."""
    match = re.match(r"(?:hide\s+)?(?:(domainlist|hostlist|addresslist|localpartlist)\s+)?(\w+)\s*(=|$)", line)
    if not match or line[:1].isspace():
        return None
    name = match.group(2)
    return f"list {name}" if match.group(1) else name.removeprefix("no_")


def with_fragment(section: str, fragment: str, base: str) -> str:
    """The configuration `base` with `fragment` put into `section` (see the module docstring)."""
    main, sections = split_sections(base)
    fragment = re.sub(rf"\A((?:#.*\n|\s*\n)*)begin[ \t]+{section}[ \t]*\n", r"\1", fragment)
    if section == "main":
        given = {main_key(line) for line in fragment.splitlines()} - {None}
        main = "".join(line for line in main.splitlines(keepends=True) if main_key(line) not in given)
        main += "\n" + fragment
    elif section in MERGED:
        parts = instances(fragment)
        new = {name for name, _ in parts if name}
        kept = [text for name, text in instances(sections.get(section, "")) if name not in new]
        if parts[0][1].strip() and len(kept) > 1:
            # Bare statements (an ACL's verbs without its name) end the section's first instance.
            kept[1] += parts[0][1]
            fragment = "".join(text for _, text in parts[1:])
        sections[section] = "".join(kept) + "\n" + fragment
    else:
        sections[section] = fragment
    order = [s for s in SECTIONS if s in sections]
    return main + "".join(f"begin {s}\n{sections[s]}" for s in order)


def load_problem(path: Path) -> str | None:
    """What -bV would complain about in the configuration at `path`, or None."""
    from mta.config.loader import load_config
    from mta.errors import MtaError
    from mta.receive.acl import check_acls
    from mta.runtime import check_config

    try:
        config = load_config(str(path), {})
        check_config(config)
        check_acls(config)
    except MtaError as exc:
        return str(exc)
    return None


# -- the world -------------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    root: Path
    ports: dict[str, str]  # a port an example names -> the port it is here

    def map(self, text: str) -> str:
        text = MAPPED.sub(lambda m: f"{self.root}/{m.group(1)}/", text)
        for shown, real in self.ports.items():
            text = re.sub(rf"\b{shown}\b", real, text)
        return text

    def unmap(self, text: str) -> str:
        text = text.replace(f"{self.root}/", "/")
        for shown, real in self.ports.items():
            text = re.sub(rf"\b{real}\b", shown, text)
        return text

    def write(self, path: str, text: str) -> Path:
        target = Path(self.map(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755 if text.startswith("#!") else 0o644)
        return target

    @property
    def config(self) -> Path:
        return self.root / "etc" / "mta" / "mta.conf"


def block_text(world: World, block: Block) -> str:
    """A configuration block as a whole file: a fragment goes into the world's configuration."""
    if block.kind == "mta-config" and block.args and block.args[0] in ("main", *SECTIONS):
        # The world's configuration is mapped already: map only the fragment.
        return with_fragment(block.args[0], world.map(block.text), world.config.read_text())
    return world.map(block.text)


def check_config_block(world: World, block: Block, n: int) -> str | None:
    if block.args and block.args[0] not in ("main", *SECTIONS):
        return f"{block.where}: unknown section {block.args[0]!r} after mta-config"
    path = world.write(f"/tmp/doc-configs/{n}.conf", block_text(world, block))
    problem = load_problem(path)
    return f"{block.where}: the configuration does not load: {world.unmap(problem)}" if problem else None


# -- console examples ------------------------------------------------------------------------------

MARK = "@@ mta-doc-example: done @@"
WRAPPERS = "".join(
    f'{name}() {{ command {name} -C "$MTA_DOC_CONFIG" "$@"; }}\n'
    for name in ("mta", "sendmail", "mailq", "newaliases", "mta-next")
)
# What stands for any of its kind in expected output (the module docstring).
MESSAGE_ID = r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{11}-[0-9A-Za-z]{4}|[0-9A-Za-z]{6}-[0-9A-Za-z]{2})"
TIME = (
    r"(?:\b\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d\b"  # 03-Dec-2026 11:08:21 (dumpdb, exinext)
    r"|\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b"  # 2026-12-03 11:40:54 (log lines)
    r"|\b[A-Z][a-z]{2}, \d\d? [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\b)"  # RFC 5322
)
WILDCARDS = re.compile(rf"(?P<id>\b{MESSAGE_ID}\b)|{TIME}")


@dataclasses.dataclass
class Step:
    command: str
    expected: list[str]
    as_root: bool


def parse_console(text: str) -> list[Step]:
    """The `$ ` (or root's `# `) command lines and the output after each; a trailing backslash
    continues a command on the next line (as in the shell, which is given both lines)."""
    steps: list[Step] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith(("$ ", "# ")):
            command = line[2:]
            while command.endswith("\\") and i < len(lines):
                command += "\n" + lines[i]
                i += 1
            steps.append(Step(command, [], line.startswith("#")))
        elif steps:
            steps[-1].expected.append(line)
    return steps


class Expectation:
    """Expected output lines as patterns; message ids bind to the ones printed (the docstring)."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def pattern(self, line: str) -> tuple[str, list[str]]:
        """The regex for one expected line, and the unbound ids it captures, in group order."""
        parts, captured, last = [], [], 0
        for match in WILDCARDS.finditer(line):
            parts.append(".*".join(re.escape(p) for p in line[last : match.start()].split("...")))
            token = match.group()
            if match.group("id") and token in self.ids:
                parts.append(re.escape(self.ids[token]))
            elif match.group("id"):
                if token in captured:
                    parts.append(f"(?P=i{captured.index(token)})")
                else:
                    parts.append(f"(?P<i{len(captured)}>{MESSAGE_ID})")
                    captured.append(token)
            else:
                parts.append(TIME)
            last = match.end()
        parts.append(".*".join(re.escape(p) for p in line[last:].split("...")))
        return "".join(parts), captured

    def matches(self, expected: list[str], actual: list[str]) -> bool:
        if not expected:
            return not actual
        head, rest = expected[0], expected[1:]
        if head == "...":
            return any(self.matches(rest, actual[k:]) for k in range(len(actual) + 1))
        if not actual:
            return False
        pattern, captured = self.pattern(head)
        found = re.fullmatch(pattern, actual[0])
        if found is None:
            return False
        bound = {token: found.group(f"i{n}") for n, token in enumerate(captured)}
        self.ids.update(bound)
        if self.matches(rest, actual[1:]):
            return True
        for token in bound:  # this alignment failed: undo what it bound
            del self.ids[token]
        return False


class Shell:
    """One bash for a page's console commands, so that the shell's state carries on as a reader's does."""

    def __init__(self, world: World) -> None:
        env = {
            "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(world.root),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "MTA_DOC_CONFIG": str(world.config),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }
        self.proc = subprocess.Popen(
            ["bash"],
            cwd=world.root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.send(WRAPPERS)

    def send(self, script: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()

    def run(self, command: str, timeout: float = 60) -> str:
        """What `command` prints; its standard input is /dev/null, never the rest of the script."""
        # The command's exit status is kept for the next one's `$?`.
        self.send(f"{{\n{command}\n}} </dev/null\n_status=$?\nprintf '\\n%s\\n' '{MARK}'\n(exit $_status)\n")
        assert self.proc.stdout is not None
        out = b""
        end = f"\n{MARK}\n".encode()
        deadline = time.monotonic() + timeout
        while not out.endswith(end):
            left = deadline - time.monotonic()
            if left <= 0 or not readable(self.proc.stdout.fileno(), left):
                raise AssertionError(f"$ {command}: no end after {timeout} s; printed so far:\n{out.decode()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"$ {command}: the shell exited; printed:\n{out.decode()}")
            out += chunk
        return out[: -len(end)].decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run_console(world: World, shell: Shell, ids: dict[str, str], block: Block) -> list[str]:
    if "spool_directory" not in world.config.read_text():
        return [f"{block.where}: the example configuration must set spool_directory"]
    failures = []
    expectation = Expectation(ids)
    for step in parse_console(block.text):
        if step.as_root and os.geteuid() != 0:
            continue  # a root's command (# prompt): only a test run as root can show it
        command = world.map(step.command)
        for shown, printed in ids.items():
            command = command.replace(shown, printed)
        actual = world.unmap(shell.run(command)).splitlines()
        if not expectation.matches(step.expected, actual):
            failures.append(
                f"{block.where}: {'#' if step.as_root else '$'} {step.command}\n  expected:\n"
                + "".join(f"    {line}\n" for line in step.expected)
                + "  got:\n"
                + "".join(f"    {line}\n" for line in actual)
            )
    return failures


@pytest.fixture
def ports(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The ports examples name: one of 127.0.0.1 bound but not listening (a connection to it
    is refused), and an SMTP server, for the pages that use it."""
    with socket.socket() as holder, contextlib.ExitStack() as stack:
        holder.bind(("127.0.0.1", 0))
        ports = {CLOSED_PORT: str(holder.getsockname()[1])}
        if re.search(rf"\b{SMTP_PORT}\b", (DOCS / request.node.callspec.params["page"]).read_text()):
            server = stack.enter_context(SmtpSink(server_hostname="smarthost.example.net"))
            ports[SMTP_PORT] = str(server.port)
        yield ports


@pytest.fixture
def world_root() -> Iterator[Path]:
    """A directory every user can reach (deliveries run as the recipient, or as `mail`): not under
    pytest's own temporary directory, which pytest keeps (and makes again) readable by root alone."""
    root = Path(tempfile.mkdtemp(prefix="mta-doc-world-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("page", PAGES)
def test_examples(page: str, world_root: Path, ports: dict[str, str]) -> None:
    root = world_root
    mail = root / "var" / "mail"
    mail.mkdir(parents=True)
    mail.chmod(0o1777)
    world = World(root, ports)
    # What an installation starts with: the shipped configuration, its paths in the world.
    world.write("/etc/mta/mta.conf", world.map(DEFAULT_CONFIG.read_text()))
    failures: list[str] = []
    shell: Shell | None = None
    ids: dict[str, str] = {}
    try:
        for n, block in enumerate(blocks(DOCS / page)):
            if block.kind == "mta-config":
                problem = check_config_block(world, block, n)
                if problem:
                    failures.append(problem)
            if "file" in block.attrs:
                world.write(block.attrs["file"], block_text(world, block))
            if block.kind == "console":
                shell = shell or Shell(world)
                failures += run_console(world, shell, ids, block)
    finally:
        if shell is not None:
            shell.close()
    assert not failures, "\n".join(failures)


def test_every_block_says_what_it_is() -> None:
    """A fenced block without a known info string is neither checked nor explicitly prose."""
    problems = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        paired = set()
        for match in FENCE.finditer(text):
            first = text.count("\n", 0, match.start()) + 1
            paired |= {first, first + match.group(0).count("\n")}
            words = match.group("info").split()
            if not words or words[0] not in KINDS:
                info = match.group("info")
                problems.append(f"docs/{page.name}:{first}: info string {info!r} is not one of {sorted(KINDS)}")
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("```") and number not in paired:
                problems.append(f"docs/{page.name}:{number}: a fence without its pair (or indented unlike it)")
    assert not problems, "\n".join(problems)


def test_the_convention_finds_examples() -> None:
    """The harness itself: a page with no recognised block would pass vacuously."""
    assert {"migrating.md", "operations.md", "faq.md"} <= set(PAGES)
    assert shutil.which("bash")
