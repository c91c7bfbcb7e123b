"""Every marked example in docs/*.md, extracted and run (the convention is in docs/testing.md).

A fenced block's info string says what it is:

    ```mta-config                  a whole configuration file: it must load (what `mta -bV` checks)
    ```mta-config directors        a fragment of one section, checked inside etc/mta.conf (below)
    ```console                     `$ command` lines, each followed by the output it must print
    ```<anything> file=/etc/x      also written to /etc/x in the page's world, for the blocks after it
    ```text, ```sh, ```ini         not run: output samples and excerpts, commands that need a daemon,
                                   the network or root, systemd settings (every block needs one of these)

One test per page; its blocks run in page order in a world of their own (a
temporary directory).  Absolute paths under /etc/, /var/ and /tmp/ in blocks
and commands are read as paths in the world, and output shows them back as
written, so an example can say /etc/aliases and mean it.  A console block
runs in one bash, with `mta`, `sendmail`, `mailq` and `newaliases` given
`-C /etc/mta/mta.conf`: the world's, which is the shipped etc/mta.conf until a
block with file=/etc/mta/mta.conf replaces it; that file must set
spool_directory, so that no example can reach the machine's spool.
Expected output: each line exactly, except that `...` alone stands for any
number of lines and `...` inside a line for any text.

A section fragment is put into the default configuration (etc/mta.conf):
directors, routers, retry and rewrite fragments replace that section;
transports, authenticators and acl fragments add their instances to it,
replacing default ones of the same name (bare ACL statements end the first ACL); `main` fragments set main options (and
named lists), replacing the default's settings of the same ones.
Configurations are loaded in this process (mta.config.loader.load_config,
then the checks of -bV), which keeps the whole run to a second or two.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    "sh": "shell commands not run here (a daemon, the network, real users, root, a real queue)",
    "ini": "systemd unit settings (tests/install/test_unit.py compares them with the unit)",
}
MAPPED = re.compile(r"(?<![\w.~/$-])/(etc|var|tmp)/")
INSTANCE = re.compile(r"^([A-Za-z_][\w-]*):\s*$")
MERGED = ("transports", "authenticators", "acl")
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


def with_fragment(section: str, fragment: str) -> str:
    """etc/mta.conf with `fragment` put into `section` (see the module docstring)."""
    main, sections = split_sections(DEFAULT_CONFIG.read_text())
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

    def map(self, text: str) -> str:
        return MAPPED.sub(lambda m: f"{self.root}/{m.group(1)}/", text)

    def unmap(self, text: str) -> str:
        return text.replace(f"{self.root}/", "/")

    def write(self, path: str, text: str) -> Path:
        target = Path(self.map(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
        return target

    @property
    def config(self) -> Path:
        return self.root / "etc" / "mta" / "mta.conf"


def check_config_block(world: World, block: Block, n: int) -> str | None:
    text = world.map(block.text)
    if block.args:
        if block.args[0] not in ("main", *SECTIONS):
            return f"{block.where}: unknown section {block.args[0]!r} after mta-config"
        text = world.map(with_fragment(block.args[0], block.text))
    path = world.write(f"/tmp/doc-configs/{n}.conf", text)
    problem = load_problem(path)
    return f"{block.where}: the configuration does not load: {world.unmap(problem)}" if problem else None


MARK = "@@ mta-doc-example: next command @@"
WRAPPERS = "".join(
    f'{name}() {{ command {name} -C "$MTA_DOC_CONFIG" "$@"; }}\n' for name in ("mta", "sendmail", "mailq", "newaliases")
)


def parse_console(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line; a trailing backslash continues it
    on the next line (as in the shell, which is given both lines)."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i < len(lines):
                command += "\n" + lines[i]
                i += 1
            steps.append((command, []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def matches(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.split("..."))
    return re.fullmatch(pattern, actual[0]) is not None and matches(rest, actual[1:])


def run_console(world: World, block: Block) -> list[str]:
    steps = parse_console(block.text)
    if "spool_directory" not in world.config.read_text():
        return [f"{block.where}: the example configuration must set spool_directory"]
    script = WRAPPERS + "".join(f"printf '%s\\n' '{MARK}'\n{world.map(cmd)}\n" for cmd, _ in steps)
    env = {
        "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(world.root),
        "LANG": "C.UTF-8",
        "MTA_DOC_CONFIG": str(world.config),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        ["bash", "-c", script], cwd=world.root, env=env, capture_output=False, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=120,
    )
    outputs = world.unmap(proc.stdout.decode("utf-8", "replace")).split(MARK + "\n")[1:]
    failures = []
    for (command, expected), got in zip(steps, outputs, strict=False):
        actual = got.splitlines()
        if not matches(expected, actual):
            failures.append(
                f"{block.where}: $ {command}\n  expected:\n"
                + "".join(f"    {line}\n" for line in expected)
                + "  got:\n" + "".join(f"    {line}\n" for line in actual)
            )
    if len(outputs) < len(steps):
        failures.append(f"{block.where}: only {len(outputs)} of {len(steps)} commands ran")
    return failures


@pytest.mark.parametrize("page", PAGES)
def test_examples(page: str, tmp_path: Path) -> None:
    root = tmp_path / "world"
    root.mkdir()
    world = World(root)
    # What an installation starts with: the shipped configuration, its paths in the world.
    world.write("/etc/mta/mta.conf", world.map(DEFAULT_CONFIG.read_text()))
    failures: list[str] = []
    for n, block in enumerate(blocks(DOCS / page)):
        if block.kind == "mta-config":
            problem = check_config_block(world, block, n)
            if problem:
                failures.append(problem)
        if "file" in block.attrs:
            world.write(block.attrs["file"], world.map(block.text))
        if block.kind == "console":
            failures += run_console(world, block)
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
