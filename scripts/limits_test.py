"""scripts/limits-test: the long form of the resource-limit tests, printing its figures.

Each stress runs against a real daemon (tests.support.daemon.DaemonWorld) and
is the same code as the CI test (tests.support.limits), at full size: 10,000
idle connections (smtp_accept_max raised to match, RLIMIT_NOFILE raised),
slowloris clients, ten AUTH guessers, a 1 GB message by DATA and by BDAT
against the default message_size_limit (50M) and 1 GB announced with SIZE,
10 MB header blocks, 10,000 recipients.  Every figure says how much the
daemon's processes grew (PSS, and high-water RSS) and how long a fresh client
took to get a message through meanwhile.  Exit status 1 if a limit did not
hold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mta.values import parse_size
from tests.daemon.test_hostile_clients import AUTH_AND_BROKEN
from tests.support import limits
from tests.support.daemon import DaemonWorld

MiB = 2**20


def world(main: str, transports: str = "") -> DaemonWorld:
    root = Path(tempfile.mkdtemp(prefix="mta-limits-", dir="/tmp"))
    root.chmod(0o755)
    (root / "mail").mkdir()
    (root / "mail").chmod(0o1777)
    daemon = DaemonWorld(root)
    daemon.write_config(main=main, transports=transports)
    daemon.start()
    return daemon


def finish(daemon: DaemonWorld) -> None:
    daemon.stop()
    shutil.rmtree(daemon.root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections to hold (default 10000)")
    parser.add_argument("--message", default="1G", help="size of the big message (default 1G)")
    parser.add_argument("--recipients", type=int, default=10_000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("limits-test: run it as root (the daemon drops to mta_user as a system MTA does)", file=sys.stderr)
        return 2
    size = parse_size(args.message)
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  {'ok' if ok else 'FAILED'}: {what}")
        if not ok:
            failures.append(what)

    limits.raise_nofile(args.idle + 1000)
    daemon = world(f"smtp_accept_max = {args.idle + 100}\nsmtp_receive_timeout = 5s\n"
                   "auth_advertise_hosts = 127.0.0.1\n", AUTH_AND_BROKEN)
    try:
        idle = limits.idle_connections(daemon, args.idle)
        print(f"{args.idle} idle connections: {idle}")
        check(idle.served_in < 5, "a fresh client is served while they are held")
        check(limits.timed_out(idle.sockets, 15) == args.idle, "smtp_receive_timeout closes every one of them")
        slow = limits.slowloris(daemon, in_data=20, in_command=20, interval=1.0, limit=8)
        print(f"slowloris (40 clients, a byte a second): {slow}")
        check(all(a is not None and a < 8 for a in slow.extra["closed after"]),  # type: ignore[union-attr]
              "each is closed at smtp_receive_timeout")
        guessers = limits.auth_guessers(daemon, 10)
        print(f"AUTH guessers: {guessers}")
        check(guessers.extra["then"][0] == 454, "the address is then refused AUTH (454)")  # type: ignore[index]
    finally:
        finish(daemon)

    daemon = world(f"recipients_max = {args.recipients}\nqueue_only\n")
    try:
        announced = limits.big_message(daemon, size, announce=True)
        print(f"{args.message} announced with SIZE: {announced}")
        check(announced.extra["reply"][0] == 552, "refused at MAIL")  # type: ignore[index]
        for how in ("data", "bdat"):
            big = limits.big_message(daemon, size, how)
            print(f"{args.message} by {how.upper()} against message_size_limit = 50M: {big}")
            check(big.extra["reply"][0] == 552, "refused at the end")  # type: ignore[index]
            check(big.growth_hwm < 64 * MiB, "the daemon's high-water RSS grew by less than 64 MiB")
        for one_line in (False, True):
            headers = limits.header_block(daemon, 10 * MiB, one_line)
            print(f"10 MB header block{' in one line' if one_line else ''}: {headers}")
            check(headers.extra["reply"][0] == 552, "refused (header_maxsize)")  # type: ignore[index]
        many = limits.many_recipients(daemon, args.recipients, extra=50)
        print(f"{args.recipients} recipients (+50 over recipients_max): {many}")
        check(many.extra["codes"] == {250: args.recipients, 452: 50}, "recipients_max holds")
    finally:
        finish(daemon)
    print("all limits held" if not failures else f"{len(failures)} limit(s) did not hold: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
