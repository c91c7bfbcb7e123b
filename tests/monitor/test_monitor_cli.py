"""mta-monitor the command: the token, passwords, TLS off loopback, the drop to mta_user, mta -bM."""

from __future__ import annotations

import ast
import asyncio
import os
import pwd
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from mta.config.loader import load_config
from spool_tools.admin_command import ToolError
from spool_tools.monitor import cli
from spool_tools.monitor.auth import hash_password, password_matches, read_password_file, token_path
from tests.monitor.conftest import make_queue
from tests.support.mta import MtaEnv

MONITOR = [sys.executable, "-m", "spool_tools.monitor.cli"]
PACKAGE = Path(cli.__file__).parent


def _monitor(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MONITOR, *args], input=input, capture_output=True, text=True, timeout=60)


def test_token_and_passwords(queue_env: MtaEnv, tmp_path: Path) -> None:
    """--print-token makes the token once (mode 0600, the spool owner's) and prints it again the
    same; --hash-password makes a hash the password file takes; bad input is one line."""
    make_queue(queue_env)
    first = _monitor("-C", str(queue_env.config), "--print-token")
    again = _monitor("-C", str(queue_env.config), "--print-token")
    assert first.returncode == 0 and first.stdout == again.stdout and len(first.stdout.strip()) >= 40
    path = Path(token_path(load_config(str(queue_env.config))))
    st = path.stat()
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == (queue_env.spool).stat().st_uid
    path.chmod(0o644)
    refused = _monitor("-C", str(queue_env.config), "--print-token")
    assert refused.returncode == 1 and "readable by its owner only" in refused.stderr and not refused.stdout

    made = _monitor("--hash-password", input="s3cret\n")
    assert made.returncode == 0 and password_matches("s3cret", made.stdout.strip())
    assert not password_matches("other", made.stdout.strip())
    bad = _monitor("--listen", "localhost", "-C", str(queue_env.config))
    assert bad.returncode == 2 and bad.stderr.startswith("mta-monitor: --listen localhost: give an IP address")

    passwords = tmp_path / "passwords"
    passwords.write_text(f"# monitor users\nalice:{hash_password('x')}\n\nbob:plaintext\n")
    passwords.chmod(0o600)
    with pytest.raises(ToolError, match=f"^{passwords}:4: not a hash made by mta-monitor --hash-password"):
        read_password_file(str(passwords))
    passwords.write_text(f"alice:{hash_password('x')}\n")
    assert list(read_password_file(str(passwords))) == ["alice"]
    passwords.chmod(0o644)
    with pytest.raises(ToolError, match="must not be readable by others"):
        read_password_file(str(passwords))


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_sent_as_soon_as_it_listens_stops_it_cleanly(queue_env: MtaEnv, signal_name: str) -> None:
    """The signal comes before the server's loop has its handlers: it is held until then, and the
    monitor stops with status 0 (it used to die of the signal)."""
    import signal

    make_queue(queue_env)
    for _ in range(3):
        process = subprocess.Popen([*MONITOR, "-C", str(queue_env.config), "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        process.send_signal(getattr(signal, signal_name))
        _out, errors = process.communicate(timeout=20)
        assert line.startswith("mta-monitor: listening on http://127.0.0.1:"), line + errors
        assert process.returncode == 0, errors  # not -15 or -2: killed by the signal


def test_mta_bM_is_the_monitor(queue_env: MtaEnv) -> None:
    result = queue_env.run("-bM", "extra")
    assert result.returncode == 1 and "-bM takes no arguments" in result.stderr


def test_other_hosts_get_tls_and_the_server_runs_as_mta_user(queue_env: MtaEnv) -> None:
    """Started as root on an address that is not loopback: HTTPS only, the web server runs as
    mta_user, and deliver now still delivers locally (as nobody) through the root helper."""
    if os.geteuid() != 0:
        pytest.skip("the drop to mta_user needs root")
    ids = make_queue(queue_env)
    for directory in [queue_env.spool, *queue_env.spool.rglob("*")]:
        os.chown(directory, pwd.getpwnam("mail").pw_uid, pwd.getpwnam("mail").pw_gid)  # as the daemon leaves it
    process = subprocess.Popen(
        [*MONITOR, "-C", str(queue_env.config), "--listen", "0.0.0.0", "--port", "0", "--poll", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("mta-monitor: listening on https://0.0.0.0:"), line
        port = int(line.rstrip("/\n").rsplit(":", 1)[1])
        status = Path(f"/proc/{process.pid}/status").read_text()
        uid = next(row.split()[1] for row in status.splitlines() if row.startswith("Uid:"))
        assert int(uid) == pwd.getpwnam("mail").pw_uid
        token = _monitor("-C", str(queue_env.config), "--print-token").stdout.strip()
        asyncio.run(_deliver_over_https(port, token, ids[1]))
    finally:
        process.terminate()
        _out, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    log = queue_env.mainlog.read_text()
    assert f"{ids[1]} => carol <carol@example.com> R=everyone T=box" in log, log


async def _deliver_over_https(port: int, token: str, message_id: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the self-signed certificate
    base = f"https://127.0.0.1:{port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/login"):
                pass
        async with http.post(base + "/login", data={"token": token}, ssl=context, allow_redirects=False) as r:
            assert r.status == 302 and "Secure" in r.headers["Set-Cookie"]
        async with http.get(base + "/api/session", ssl=context) as r:
            csrf = (await r.json())["csrf"]
        async with http.post(
            f"{base}/api/messages/{message_id}/deliver", ssl=context, headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 200, await r.text()


def _function_imports(source: Path) -> set[str]:
    names: set[str] = set()
    for function in ast.walk(ast.parse(source.read_text())):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
    return names


def test_what_runs_after_the_drop_is_imported_before_it() -> None:
    """The modules the serving code imports inside functions are loaded by prepare_for_drop (a
    Python under /root imports nothing once the monitor runs as mta_user)."""
    lazy = set().union(*(_function_imports(PACKAGE / name) for name in ("server.py", "watch.py", "starter.py")))
    code = (
        "import sys, spool_tools.monitor.cli as c; c.prepare_for_drop(); "
        f"print(sorted(m for m in {sorted(lazy)!r} if m not in sys.modules))"
    )
    missing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert missing.strip() == "[]", missing
