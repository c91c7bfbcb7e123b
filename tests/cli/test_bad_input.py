"""Bad input, tried as a new user would: one clear line on stderr, a non-zero exit, no partial spool files.

The exceptions are deliberate and documented in docs/getting-started.md: a
message of only headers is accepted (as Exim does), NUL bytes are stored
unless `message_reject_nul` is set, and a 10 MB line is fine under the
default size limit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from mta.spool.format import read_header_file
from tests.support.mta import MTA, MtaEnv
from tests.support.nobody import Nobody, give_spool_to

SIMPLE = "Subject: x\n\nbody\n"


def assert_refused(result: subprocess.CompletedProcess[str], env: MtaEnv, message: str) -> None:
    """Exit 1, exactly `message` as the one line on stderr, nothing on the spool."""
    assert result.returncode == 1, result
    assert result.stderr == message + "\n"
    assert env.spool_files() == []


def test_no_recipients_without_t(mta_env: MtaEnv) -> None:
    assert_refused(
        mta_env.run("-odq", "-oep", input=SIMPLE),
        mta_env,
        "mta: no recipients given on the command line (use -t to take them from the headers)",
    )


@pytest.mark.parametrize(
    "text",
    ["Subject: x\n\nbody\n", "To: \nCc: undisclosed-recipients:;\n\nbody\n"],
    ids=["no headers", "empty headers"],
)
def test_no_recipients_with_t(mta_env: MtaEnv, text: str) -> None:
    result = mta_env.run("-odq", "-oep", "-t", input=text)
    assert_refused(result, mta_env, "mta: no recipients found in To:, Cc: or Bcc: (with -t)")


def test_unterminated_header_block(mta_env: MtaEnv) -> None:
    mta_env.write_config("header_maxsize = 1K\n")
    text = "".join(f"X-Header-{i}: some value\n" for i in range(100))  # about 2.5K, no blank line
    assert_refused(
        mta_env.run("-odq", "-oep", "bob@example.com", input=text),
        mta_env,
        "mta: header section is larger than header_maxsize (1024 bytes): is the blank line after the headers missing?",
    )


def test_message_of_only_headers_is_accepted(mta_env: MtaEnv) -> None:
    """Exim accepts a message with no body (and no blank line): so do we."""
    result = mta_env.run("-odq", "-oep", "bob@example.com", input="Subject: only headers\nX-A: b\n")
    assert (result.returncode, result.stderr) == (0, "")
    (message_id,) = mta_env.message_ids()
    assert mta_env.data_file(message_id) == f"{message_id}-D\n".encode()
    assert "\n-body_linecount 0\n" in mta_env.header_file(message_id)


def test_nul_bytes_stored_as_they_are_by_default(mta_env: MtaEnv) -> None:
    result = mta_env.run("-odq", "-oep", "bob@example.com", input=b"Subject: x\n\na\0b\0\0c\n")
    assert (result.returncode, result.stderr) == (0, "")
    (message_id,) = mta_env.message_ids()
    assert mta_env.data_file(message_id) == f"{message_id}-D\n".encode() + b"a\0b\0\0c\n"
    raw_h = next((mta_env.spool / "input").rglob(f"{message_id}-H")).read_bytes()
    assert read_header_file(raw_h, message_id).body_zerocount == 3
    assert b"\n-body_zerocount 3\n" in raw_h


def test_nul_bytes_refused_with_message_reject_nul(mta_env: MtaEnv) -> None:
    mta_env.write_config("message_reject_nul = true\n")
    assert_refused(
        mta_env.run("-odq", "-oep", "bob@example.com", input=b"Subject: x\n\na\0b\n"),
        mta_env,
        "mta: message body contains 1 NUL byte(s); refused (message_reject_nul is set)",
    )


def test_nul_in_a_header_is_refused(mta_env: MtaEnv) -> None:
    assert_refused(
        mta_env.run("-odq", "-oep", "bob@example.com", input=b"Subject: a\0b\n\nbody\n"),
        mta_env,
        "mta: NUL character in header line 1",
    )


TEN_MB = 10 * 1024 * 1024


def test_ten_megabyte_single_line_accepted(mta_env: MtaEnv) -> None:
    result = mta_env.run("-odq", "-oep", "bob@example.com", input=b"Subject: big\n\n" + b"x" * TEN_MB + b"\n")
    assert (result.returncode, result.stderr) == (0, "")
    (message_id,) = mta_env.message_ids()
    data_path = next((mta_env.spool / "input").rglob(f"{message_id}-D"))
    assert data_path.stat().st_size == len(f"{message_id}-D\n") + TEN_MB + 1
    assert f"\n-max_received_linelength {TEN_MB}\n" in mta_env.header_file(message_id)


def test_ten_megabyte_line_refused_over_message_size_limit(mta_env: MtaEnv) -> None:
    mta_env.write_config("message_size_limit = 1M\n")
    assert_refused(
        mta_env.run("-odq", "-oep", "bob@example.com", input=b"Subject: big\n\n" + b"x" * TEN_MB + b"\n"),
        mta_env,
        "mta: message too big (size limit is 1048576 bytes)",
    )


def test_headers_push_message_over_the_limit(mta_env: MtaEnv) -> None:
    """The limit counts the headers too (Exim's message_size), not only the body."""
    mta_env.write_config("message_size_limit = 1K\n")
    text = "X-Filler: " + "y" * 900 + "\n\n" + "z" * 100 + "\n"
    result = mta_env.run("-odq", "-oep", "bob@example.com", input=text)
    assert result.returncode == 1
    assert result.stderr.startswith("mta: message too big (size ") and result.stderr.endswith(", limit 1024)\n")
    assert result.stderr.count("\n") == 1
    assert mta_env.spool_files() == []


def test_missing_config(mta_env: MtaEnv) -> None:
    missing = mta_env.root / "missing.conf"
    result = mta_env.run("-C", str(missing), "-odq", "bob@example.com", input=SIMPLE, config=False)
    assert_refused(result, mta_env, f"mta: configuration error: {missing}: configuration file not found")


def test_unreadable_config(open_env: MtaEnv, nobody: Nobody) -> None:
    open_env.config.chmod(0o000)
    result = nobody.run(open_env, "-odq", "bob@example.com", input=SIMPLE)
    assert_refused(
        result,
        open_env,
        f"mta: configuration error: {open_env.config}: configuration file is not readable (permission denied)",
    )


def test_config_is_a_directory(mta_env: MtaEnv) -> None:
    result = mta_env.run("-C", str(mta_env.root), "-bV", config=False)
    assert result.returncode == 1
    assert result.stderr == f"mta: configuration error: {mta_env.root}: configuration file is a directory\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-Q",), "mta: unknown option -Q (see man page; mta --help lists the common ones)"),
        (("--frobnicate",), "mta: unknown option --frobnicate"),
        (("-bZ",), "mta: unknown option -bZ"),
        (("-odx", "bob@example.com"), "mta: unknown delivery mode -odx (use -odb, -odf, -odi, -odq or -odqs)"),
        (("-f",), "mta: option -f needs an argument"),
    ],
    ids=["-Q", "long option", "-bZ", "-odx", "-f without argument"],
)
def test_unknown_or_malformed_options(mta_env: MtaEnv, args: tuple[str, ...], message: str) -> None:
    assert_refused(mta_env.run(*args, input=SIMPLE), mta_env, message)


def test_expansion_error_in_be(mta_env: MtaEnv) -> None:
    # As Exim: the failure is one line on stdout, and -be itself still succeeds.
    result = mta_env.run("-be", "${if eq{a}}")
    assert result.returncode == 0
    assert result.stdout == 'Failed: missing 2nd string in {} after "eq"\n'
    assert result.stderr == ""


def test_spool_not_writable_and_no_daemon_running(open_env: MtaEnv, nobody: Nobody) -> None:
    """An ordinary user's sendmail never writes root's spool: it goes to the daemon, or to the drop
    directory; with neither there, it says so and fails, leaving nothing behind."""
    open_env.spool.mkdir(mode=0o755)  # root's, as after an install; nobody may not write it
    result = nobody.run(open_env, "-odq", "bob@example.com", input=SIMPLE)
    assert_refused(
        result,
        open_env,
        f"mta: cannot queue the message: the mail daemon is not running and the drop directory "
        f"{open_env.spool}/offline cannot be written (No such file or directory)",
    )


def test_spool_input_directory_not_writable(open_env: MtaEnv, nobody: Nobody) -> None:
    give_spool_to(open_env, nobody)
    (open_env.spool / "input").mkdir(mode=0o755)  # root's input/ inside nobody's spool
    result = nobody.run(open_env, "-odq", "bob@example.com", input=SIMPLE)
    assert result.returncode == 1
    # nobody owns the spool but not input/: not a spool it can write, so no direct write is tried.
    assert "cannot queue the message: the mail daemon is not running" in result.stderr
    assert open_env.spool_files() == []


def test_spool_directory_below_a_regular_file(mta_env: MtaEnv) -> None:
    blocker = mta_env.root / "blocker"
    blocker.write_text("")
    mta_env.write_config(base=f"spool_directory = {blocker}/spool\n")
    result = mta_env.run("-odq", "-oep", "bob@example.com", input=SIMPLE)
    assert result.returncode == 1
    assert result.stderr == f"mta: spool directory {blocker} exists and is not a directory\n"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (
            "a b@c",
            'mta: bad recipient address "a b@c": unexpected "b" after address (missing comma or angle brackets?)'
            " in 'a b@c'",
        ),
        ("<>", "mta: bad recipient address <>: an empty address cannot be a recipient"),
    ],
    ids=["space", "empty"],
)
def test_bad_recipient_address(mta_env: MtaEnv, address: str, reason: str) -> None:
    assert_refused(mta_env.run("-odq", "-oep", address, input=SIMPLE), mta_env, reason)


def test_bad_address_in_to_with_t(mta_env: MtaEnv) -> None:
    result = mta_env.run("-odq", "-oep", "-t", input="To: <unterminated@example.com\n\nb\n")
    assert result.returncode == 1
    assert result.stderr.startswith("mta: bad address in To: header: ") and result.stderr.count("\n") == 1
    assert mta_env.spool_files() == []


def test_crash_before_H_is_renamed_leaves_no_message(mta_env: MtaEnv) -> None:
    """SIGKILL while the body is being read: -bp and -bpc must not see a half message."""
    proc = subprocess.Popen(
        [MTA, "-C", str(mta_env.config), "-odq", "bob@example.com"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"Subject: crash\n\n" + b"part of the body\n" * 1000)
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    input_dir = mta_env.spool / "input"
    while not any(name.endswith("-D") for name in (os.listdir(input_dir) if input_dir.exists() else [])):
        assert proc.poll() is None, "mta ended before it was killed"
        assert time.monotonic() < deadline, "no -D file appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    proc.stdin.close()
    assert mta_env.message_ids() == []
    listing = mta_env.run("-bp")
    assert (listing.returncode, listing.stdout, listing.stderr) == (0, "", "")
    count = mta_env.run("-bpc")
    assert (count.returncode, count.stdout) == (0, "0\n")
    assert mta_env.run("-bpi").stdout == ""
