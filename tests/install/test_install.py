"""scripts/install into a fresh root, and mta used there through the installed system paths.

The fresh root is a temporary directory with an /etc of its own (root, daemon, mail and nobody),
an empty /var, and an /usr that is an overlay: Debian's /usr of this machine underneath (so
/usr/bin/python3 and its libraries are there, as on any Debian system), and a layer of its own
on top that receives whatever the installer writes.  Everything runs in a mount and pid
namespace of its own (unshare), so nothing is mounted, and no process is left, outside it.
In the root, through chroot and the real installed paths: root's `sendmail -t`, then the daemon
(confined as the unit confines it: /usr and /etc read-only, only the unit's capabilities) and an
ordinary user's `sendmail -t` through the daemon's socket; the mailbox is checked for its owner.
Then --uninstall puts back the fake sendmails the root had before (one a Debian package owned,
so set aside with dpkg-divert; one a plain file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.sink import free_port

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """\
root:x:0:
daemon:x:1:
mail:x:8:
users:x:100:
nogroup:x:65534:
"""
FAKE_SENDMAIL = "#!/bin/sh\necho the old MTA\n"


class FreshRoot:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.upper = base / "usr-upper"  # what was written under the root's /usr
        self.work = base / "usr-work"
        for path in (self.root, self.upper, self.work):
            path.mkdir()
        for name in ("usr", "etc", "var", "var/lib", "dev", "proc", "run", "home", "root", "tmp"):
            (self.root / name).mkdir(exist_ok=True)
        (self.root / "tmp").chmod(0o1777)
        (self.root / "root").chmod(0o700)
        for name in ("bin", "sbin", "lib", "lib64"):  # merged /usr, as Debian 12 has it
            (self.root / name).symlink_to(f"usr/{name}")
        etc = self.root / "etc"
        (etc / "passwd").write_text(PASSWD)
        (etc / "group").write_text(GROUP)
        (etc / "shadow").write_text("".join(f"{line.split(':')[0]}:*:19000:0:99999:7:::\n"
                                            for line in PASSWD.splitlines()))
        (etc / "gshadow").write_text("".join(f"{line.split(':')[0]}:*::\n" for line in GROUP.splitlines()))
        for name in ("shadow", "gshadow"):
            (etc / name).chmod(0o640)
        (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nshadow: files\nhosts: files\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        if Path("/etc/login.defs").exists():
            shutil.copy("/etc/login.defs", etc / "login.defs")

    def prelude(self) -> str:
        r = self.root
        return textwrap.dedent(f"""\
            set -eu
            mount --make-rprivate /
            mount -t overlay overlay -o lowerdir=/usr,upperdir={self.upper},workdir={self.work} {r}/usr
            mount --rbind /dev {r}/dev
            mount -t proc proc {r}/proc
            R={r}
            inroot() {{ env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot {r} "$@"; }}
            """)

    def run(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`script` (sh) in a mount and pid namespace with the root's /usr mounted."""
        proc = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c",
                               self.prelude() + script], capture_output=True, text=True, timeout=timeout)
        return proc

    def check(self, script: str, timeout: float = 120) -> str:
        proc = self.run(script, timeout)
        assert proc.returncode == 0, f"status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc.stdout

    def snapshot(self) -> dict[str, tuple]:
        """Every entry the installer may have touched: type, mode, owner, link target, content hash."""
        seen: dict[str, tuple] = {}
        for top, label in ((self.root / "etc", "etc"), (self.root / "var", "var"), (self.upper, "usr")):
            for path in [top, *sorted(top.rglob("*"))]:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    extra = os.readlink(path)
                elif stat.S_ISREG(st.st_mode):
                    extra = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    extra = ""
                seen[f"{label}/{path.relative_to(top)}"] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                            st.st_uid, st.st_gid, extra)
        return seen


def capabilities() -> str:
    """The unit's CapabilityBoundingSet in setpriv's spelling (+net_bind_service,+setuid,...)."""
    line = next(x for x in (REPO / "etc/mta.service").read_text().splitlines()
                if x.startswith("CapabilityBoundingSet="))
    return ",".join("+" + name.removeprefix("CAP_").lower() for name in line.split("=", 1)[1].split())


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "installing needs root (a user, chown, a mount namespace)"
    for tool in ("unshare", "chroot", "useradd", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3 to make the installed virtualenv from"
    probe = Path("/tmp") / f"mta-overlay-probe-{os.getpid()}"
    try:
        for name in ("lower", "upper", "work", "merged"):
            (probe / name).mkdir(parents=True)
        proc = subprocess.run(["unshare", "--mount", "--fork", "sh", "-c",
                               f"mount --make-rprivate / && mount -t overlay overlay -o lowerdir={probe}/lower,"
                               f"upperdir={probe}/upper,workdir={probe}/work {probe}/merged"],
                              capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if proc.returncode != 0:
        return (f"cannot mount an overlay in a mount namespace here ({proc.stderr.strip()}): the fresh root's /usr "
                "is Debian's /usr with a layer of its own on top")
    return None


def fake_dpkg(root: Path) -> None:
    """A dpkg database in which a package 'fake-mta' ships /usr/sbin/sendmail (as exim4 does)."""
    admin = root / "var" / "lib" / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text("Package: fake-mta\nStatus: install ok installed\nVersion: 1.0\n"
                                  "Architecture: all\nMaintainer: t <t@example.com>\nDescription: an old MTA\n\n")
    (admin / "info" / "fake-mta.list").write_text("/.\n/usr\n/usr/sbin\n/usr/sbin/sendmail\n")


def test_install_into_a_fresh_root_deliver_there_and_uninstall(tmp_path: Path) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"mta-install-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir(mode=0o755)
    try:
        run_scenario(FreshRoot(base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_scenario(fresh: FreshRoot) -> None:
    root = fresh.root
    fake_dpkg(root)
    # The old MTA: /usr/sbin/sendmail a link into its package, /usr/lib/sendmail a plain file;
    # no mailq or newaliases (whatever this machine's /usr has is hidden in the root).
    fresh.check(f"""
        mkdir -p $R/usr/lib/fake-mta
        printf '{FAKE_SENDMAIL}' > $R/usr/lib/fake-mta/sendmail
        chmod 755 $R/usr/lib/fake-mta/sendmail
        rm -f $R/usr/sbin/sendmail $R/usr/lib/sendmail $R/usr/bin/mailq $R/usr/bin/newaliases
        ln -s ../lib/fake-mta/sendmail $R/usr/sbin/sendmail
        cp $R/usr/lib/fake-mta/sendmail $R/usr/lib/sendmail
    """)

    first = fresh.check(f"{INSTALL} --root $R --admin alice")
    assert "created the system user mta" in first
    assert "/usr/sbin/sendmail diverted (dpkg, package fake-mta) to /usr/sbin/sendmail.mta-saved" in first
    assert "/usr/lib/sendmail renamed to /usr/lib/sendmail.mta-saved" in first
    after_first = fresh.snapshot()
    second = fresh.check(f"{INSTALL} --root $R --admin alice")
    assert "nothing to do" in second, second
    assert fresh.snapshot() == after_first  # idempotent: not one owner, mode, link or byte changed

    # What the daemon expects of the spool (mta/daemon/master.py, _prepare_spool).
    mta_uid, mta_gid = (int(x) for x in next(line.split(":")[2:4] for line in (root / "etc/passwd").read_text()
                                             .splitlines() if line.startswith("mta:")))
    spool = root / "var/spool/mta"
    expected = {"": 0o751, "input": 0o750, "msglog": 0o750, "db": 0o750, "log": 0o750, "offline": 0o3733}
    for name, mode in expected.items():
        st = (spool / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (mta_uid, mta_gid, mode), name
    assert "mta:x:" in (root / "etc/passwd").read_text() and ":/var/spool/mta:/usr/sbin/nologin" in \
        (root / "etc/passwd").read_text()
    assert "MTA_USER = mta\n" in (root / "etc/mta/mta.conf").read_text()
    assert "root: alice\n" in (root / "etc/aliases").read_text()
    assert (root / "etc/systemd/system/mta.service").read_text() == (REPO / "etc/mta.service").read_text()
    assert "su mta mta" in (root / "etc/logrotate.d/mta").read_text()
    assert os.readlink(fresh.upper / "sbin/sendmail") == "/usr/local/lib/mta/bin/sendmail"
    assert os.readlink(fresh.upper / "sbin/sendmail.mta-saved") == "../lib/fake-mta/sendmail"
    assert "/usr/sbin/sendmail.mta-saved" in (root / "var/lib/dpkg/diversions").read_text()
    # mta's own launcher (Python without site), relocated to the installed path; mta from site-packages.
    launcher = (fresh.upper / "local/lib/mta/bin/sendmail").read_text()
    assert launcher.startswith("#!/usr/local/lib/mta/bin/python -S\n") and ".new" not in launcher
    assert "sys.path += [*[], " in launcher  # no checkout on sys.path: mta is the venv's own copy

    # In the root, with the installed paths only.  Root's mail (never delivered as root) goes to
    # alice through /etc/aliases; a mailbox belongs to its user, group mail.
    port = free_port()
    out = fresh.check(f"""
        inroot useradd --create-home --shell /bin/sh alice
        inroot useradd --create-home --shell /bin/sh bob
        printf 'To: alice\\nSubject: from root\\n\\nfirst\\n' | inroot /usr/sbin/sendmail -t
        printf 'To: root\\nSubject: for root\\n\\nsecond\\n' | inroot /usr/lib/sendmail -t -odi
        # The daemon as the unit runs it: /usr and /etc read-only (ProtectSystem=full) and only the
        # unit's CapabilityBoundingSet, which a local delivery's change of user must be able to live with.
        mount -o remount,ro $R/usr
        mount --bind $R/etc $R/etc && mount -o remount,bind,ro $R/etc
        inroot setpriv --bounding-set=-all,{capabilities()} /usr/sbin/mta -bd -q30m -oX 127.0.0.1.{port}
        printf 'To: alice\\nSubject: from bob\\n\\nthird\\n' | \\
            inroot setpriv --reuid=bob --regid=bob --init-groups /usr/sbin/sendmail -t
        for i in $(seq 200); do
            [ "$(grep -c '^Subject: ' $R/var/mail/alice 2>/dev/null)" = 3 ] && break
            sleep 0.05
        done
        inroot /usr/bin/mailq
        echo "owner: $(inroot stat -c '%U:%G %a' /var/mail/alice)"
        kill $(cat $R/var/spool/mta/mta-daemon.pid)
        if command -v systemd-analyze >/dev/null; then
            echo "verify: [$(systemd-analyze verify --root=$R /etc/systemd/system/mta.service 2>&1)]"
        fi
    """, timeout=180)
    mailbox = (root / "var/mail/alice").read_text()
    for subject in ("from root", "for root", "from bob"):
        assert f"Subject: {subject}" in mailbox, mailbox
    assert "owner: alice:mail 660" in out, out
    if shutil.which("systemd-analyze"):
        assert "verify: []" in out, out  # the installed unit, its ExecStart the installed /usr/sbin/mta
    log = (spool / "log/mainlog").read_text()
    assert "U=bob" in log, log  # the daemon learnt who bob is from the kernel, not from the message

    (root / "etc/mta/mta.conf").write_text((root / "etc/mta/mta.conf").read_text() + "# edited\n")
    gone = fresh.check(f"{INSTALL} --root $R --uninstall")
    assert "restored /usr/sbin/sendmail from /usr/sbin/sendmail.mta-saved" in gone
    assert "left in place" in gone and "/var/spool/mta" in gone
    assert os.readlink(fresh.upper / "sbin/sendmail") == "../lib/fake-mta/sendmail"
    assert (fresh.upper / "lib/sendmail").read_text() == FAKE_SENDMAIL
    assert "sendmail" not in (root / "var/lib/dpkg/diversions").read_text()
    for path in ("sbin/sendmail.mta-saved", "lib/sendmail.mta-saved", "sbin/mta", "sbin/mta-qgrep"):
        assert not os.path.lexists(fresh.upper / path), path
    for path in ("bin/mailq", "bin/newaliases"):  # absent before: absent again (a whiteout in the overlay)
        entry = fresh.upper / path
        assert not entry.exists() or stat.S_ISCHR(entry.lstat().st_mode), path
    assert not (fresh.upper / "local/lib/mta").exists()
    assert not (root / "etc/systemd/system/mta.service").exists()
    assert not (root / "etc/logrotate.d/mta").exists()
    assert (root / "etc/mta/mta.conf").read_text().endswith("# edited\n")  # configuration and spool stay
    assert "from bob" in (root / "var/mail/alice").read_text() and spool.is_dir()
    again = fresh.check(f"{INSTALL} --root $R --uninstall")
    assert "nothing to uninstall" in again
