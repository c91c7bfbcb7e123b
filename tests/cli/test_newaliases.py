"""-bi / newaliases: compiles the alias files of lmdb aliasfile directors, then runs bi_command
(argv, no shell); does nothing when there is neither.

What matters is what the command did and what it said, not only the exit
status: each test checks the files it wrote and what reached stdout/stderr.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.mta import MTA, MtaEnv
from tests.support.nobody import Nobody

# A bi_command that shows what it was given and what it ran as: one line per argument.
RECORDER = '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\necho "rebuilt $# files"\n'


def recorder(env: MtaEnv) -> Path:
    script = env.root / "rebuild"
    script.write_text(RECORDER)
    script.chmod(0o755)
    return script


def test_without_bi_command_nothing_happens(mta_env: MtaEnv) -> None:
    before = sorted(p.name for p in mta_env.root.iterdir())
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sorted(p.name for p in mta_env.root.iterdir()) == before  # nothing made, no spool


def test_bi_command_runs_without_a_shell(mta_env: MtaEnv) -> None:
    script = recorder(mta_env)
    mta_env.write_config(f'bi_command = {script} /etc/aliases "{mta_env.root}/a;b" "two words"\n')
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "rebuilt 3 files\n", "")
    # Exactly these arguments: no shell split at the ; or the space, nothing added.
    assert (mta_env.root / "argv").read_text().splitlines() == ["/etc/aliases", f"{mta_env.root}/a;b", "two words"]
    assert not (mta_env.root / "b").exists()


def test_newaliases_name_runs_bi_command(mta_env: MtaEnv) -> None:
    """Called as `newaliases`, mta means -bi (the console script of that name)."""
    script = recorder(mta_env)
    mta_env.write_config(f"bi_command = {script} aliases\n")
    newaliases = str(Path(MTA).with_name("newaliases"))
    result = subprocess.run([newaliases, "-C", str(mta_env.config)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "rebuilt 1 files\n", "")
    assert (mta_env.root / "argv").read_text() == "aliases\n"


def test_bi_command_failure_is_the_exit_status(mta_env: MtaEnv) -> None:
    """The command's own status and its own complaint reach the caller unchanged."""
    mta_env.write_config('bi_command = /bin/sh -c "echo cannot rebuild: locked >&2; exit 3"\n')
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (3, "", "cannot rebuild: locked\n")


def test_relative_bi_command_is_refused(mta_env: MtaEnv) -> None:
    mta_env.write_config("bi_command = touch x\n")
    result = mta_env.run("-bi", cwd=mta_env.root)
    assert result.returncode == 1
    assert result.stderr == "mta: bi_command must start with an absolute path: 'touch x'\n"
    assert not (mta_env.root / "x").exists()  # refused, not run from $PATH


# -- compiling /etc/aliases into the database the director reads ------------------------------------

LMDB_ALIASES = """
begin directors
system_aliases:
  driver = aliasfile
  file = {root}/aliases.lmdb
  search_type = lmdb
  user = nobody
  file_transport = address_file
begin transports
address_file:
  driver = appendfile
  file = $address_file
"""


def lmdb_world(env: MtaEnv, aliases: str) -> Path:
    env.write_config(LMDB_ALIASES.format(root=env.root))
    env.config.chmod(0o644)
    source = env.root / "aliases"
    source.write_text(aliases)
    source.chmod(0o644)
    return source


def test_newaliases_compiles_and_delivery_reads_the_database(open_env: MtaEnv, nobody: Nobody) -> None:
    box = open_env.root / "mail"
    box.mkdir(mode=0o1777)
    box.chmod(0o1777)
    source = lmdb_world(open_env, f"# site aliases\npostmaster: {box}/pm\nwebmaster:\n  postmaster\n")
    result = open_env.run("-bi")
    target = open_env.root / "aliases.lmdb"
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{source}: 2 aliases compiled into {target}\n"
    assert (target.stat().st_mode & 0o777, target.stat().st_uid) == (0o644, 0)
    assert sorted(p.name for p in open_env.root.iterdir() if p.name.startswith("aliases")) == [
        "aliases", "aliases.lmdb"
    ]
    # The text file is no longer read: delivery finds the aliases in the database.
    source.write_text("")
    sent = open_env.run("-odi", "webmaster@example.com", input="Subject: through lmdb\n\nhello\n")
    assert (sent.returncode, sent.stderr) == (0, "")
    delivered = box / "pm"
    assert "Subject: through lmdb" in delivered.read_text()
    assert delivered.stat().st_uid == nobody.uid
    assert f"=> {box}/pm <webmaster@example.com> R=system_aliases T=address_file" in open_env.mainlog.read_text()


def test_an_alias_file_with_errors_replaces_nothing(mta_env: MtaEnv) -> None:
    source = lmdb_world(mta_env, "postmaster: root\n")
    assert mta_env.run("-bi").returncode == 0
    target = mta_env.root / "aliases.lmdb"
    before = (target.read_bytes(), target.stat().st_ino)
    script = recorder(mta_env)
    mta_env.write_config(f"bi_command = {script}\n" + LMDB_ALIASES.format(root=mta_env.root))
    source.write_text(
        "postmaster: root\n"
        "  \n"
        "sales alice\n"
        "lists: :include:lists.txt\n"
        "  , bob\n"
        "\tcontinued\n"
        "postmaster: other\n"
        "ok: |/usr/bin/prog, /var/mail/x, :fail: gone\n"
    )
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f'mta: warning: {source}:7: alias "postmaster" given again (line 1 is the one used)',
        f'mta: {source}:3: missing colon after the alias name "sales"',
        f'mta: {source}:4: alias "lists": included file "lists.txt" is not an absolute path in ":include:lists.txt"',
        f"mta: {target} not rebuilt: 2 error(s) in {source}",
    ]
    assert (target.read_bytes(), target.stat().st_ino) == before
    assert not (mta_env.root / "argv").exists()  # bi_command is not run after an error


def test_bi_command_runs_after_the_compile(mta_env: MtaEnv) -> None:
    lmdb_world(mta_env, "postmaster: root\n")
    script = recorder(mta_env)
    mta_env.write_config(f"bi_command = {script} more\n" + LMDB_ALIASES.format(root=mta_env.root))
    result = mta_env.run("-bi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["rebuilt 1 files"]
    assert (mta_env.root / "aliases.lmdb").exists() and (mta_env.root / "argv").read_text() == "more\n"


def test_a_database_not_named_after_its_source_is_refused(mta_env: MtaEnv) -> None:
    mta_env.write_config(LMDB_ALIASES.format(root=mta_env.root).replace("aliases.lmdb", "aliases.db"))
    result = mta_env.run("-bi")
    assert result.returncode == 1
    assert "cannot tell which text file to compile into" in result.stderr
    assert not os.path.exists(mta_env.root / "aliases.db")
