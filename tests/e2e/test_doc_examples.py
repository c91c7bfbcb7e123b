"""The documentation's examples, run as printed on the default configuration (etc/mta.conf).

Each example is a fenced block in docs/ marked ``<!-- example: NAME ... -->``;
the text is taken from the page, so an example that stops working fails
here.  What is replaced is only what a test cannot use as it is: the users
`alice` and `bob` are real accounts with random names, `example.com` is read
as this host's name (the docs say so), and `/var/mail`, the alias file and the
spool are the test's own (the default configuration's MAIL_DIR, ALIASES and
SPOOL macros, which scripts/run sets the same way).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import E2E
from tests.support.mta import MtaEnv
from tests.support.sink import SmtpSink

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "etc" / "mta.conf"


def doc_example(page: str, name: str) -> str:
    """The fenced block after ``<!-- example: name ... -->`` in docs/page, without its indentation."""
    text = (REPO / "docs" / page).read_text()
    match = re.search(rf"^( *)<!-- example: {re.escape(name)}\b[^>]*-->\n *```[^\n]*\n(.*?)^ *```", text, re.S | re.M)
    assert match, f"docs/{page} has no example called {name}"
    indent = len(match.group(1))
    return "".join(line[indent:] + "\n" for line in match.group(2).splitlines())


def run_default(e2e: E2E, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`mta` on the default configuration with this test's spool, mail directory and alias file."""
    macros = [f"-DSPOOL={e2e.env.spool}", f"-DMAIL_DIR={e2e.mail}", f"-DALIASES={e2e.aliases}"]
    return e2e.env.run("-C", str(DEFAULT_CONFIG), *macros, *args, input=input, config=False)


def wait_for(predicate, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def this_host(e2e: E2E) -> str:
    """What the docs' example.com stands for: the default configuration's primary_hostname."""
    shown = run_default(e2e, "-bP", "-n", "primary_hostname")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def test_alias_chain_and_pipe_from_directors_md(e2e: E2E) -> None:
    alice = e2e.user("alice")
    aliases = doc_example("directors.md", "aliases").replace("alice", alice.name)
    e2e.write_aliases(aliases.replace("/var/mail", str(e2e.mail)))
    domain = this_host(e2e)

    chain = run_default(e2e, "-bt", f"sales@{domain}")
    assert chain.returncode == 0, chain.stderr
    assert chain.stdout.splitlines()[:3] == [
        f"{alice.name}@{domain}",
        f"    <-- help@{domain}",
        f"    <-- sales@{domain}",
    ]
    assert "router = localuser, transport = local_delivery" in chain.stdout

    sent = run_default(e2e, "-odi", f"sales@{domain}", f"alerts@{domain}", input="Subject: doc example\n\nhello\n")
    assert sent.returncode == 0, sent.stderr
    assert "Subject: doc example" in e2e.mbox(alice)
    log = "\n".join(e2e.env.log_lines())
    tee = f"|/usr/bin/tee -a {e2e.mail}/alerts.log"
    assert f"=> {tee} <alerts@{domain}> R=system_aliases T=address_pipe" in log
    assert "**" not in log  # the pipe's output (tee copies to stdout) does not fail it
    assert "Subject: doc example" in (e2e.mail / "alerts.log").read_text()


def test_forward_to_maildir_from_directors_md(e2e: E2E) -> None:
    bob = e2e.user("bob")
    forward = doc_example("directors.md", "forward-maildir")
    e2e.write_forward(bob, forward.replace("\\bob", f"\\{bob.name}").replace("/home/bob", str(bob.home)))

    domain = this_host(e2e)
    sent = run_default(e2e, "-odi", f"{bob.name}@{domain}", input="Subject: to the maildir\n\nhello\n")
    assert sent.returncode == 0, sent.stderr
    maildir = bob.home / "Maildir"
    files = list((maildir / "new").iterdir())
    assert len(files) == 1 and "Subject: to the maildir" in files[0].read_text()
    assert files[0].stat().st_uid == bob.uid
    assert "Subject: to the maildir" in e2e.mbox(bob)
    log = "\n".join(e2e.env.log_lines())
    address = f"<{bob.name}@{domain}>"
    assert f"=> {maildir}/ {address} R=userforward T=address_directory" in log
    assert f"=> {bob.name} {address} R=localuser T=local_delivery" in log


def test_mua_wrapper_loopback_recipe(tmp_path: Path) -> None:
    conf = doc_example("mua-wrapper.md", "mua-wrapper-loopback")
    assert "port = 2526" in conf
    sink = SmtpSink().start()
    stopped = False
    try:
        config = tmp_path / "mua-test.conf"
        text = conf.replace("port = 2526", f"port = {sink.port}").replace("/tmp/mua-test-spool", str(tmp_path))
        config.write_text(text)
        env = MtaEnv(tmp_path)
        sent = env.run("-C", str(config), "-i", "you@example.org", input="Subject: test\n\nhello\n", config=False)
        assert (sent.returncode, sent.stderr) == (0, "")
        assert [m.rcpt_tos for m in sink.messages] == [["you@example.org"]]
        assert b"Subject: test" in sink.messages[0].content

        sink.stop()
        stopped = True
        failed = env.run("-C", str(config), "-i", "you@example.org", input="Subject: test\n\nhello\n", config=False)
        assert failed.returncode == 1
        assert "Connection refused" in failed.stderr
    finally:
        if not stopped:
            sink.stop()
