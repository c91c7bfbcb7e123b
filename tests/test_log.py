"""Logs: file names from log_file_path, Exim's line format, failures that never lose a message.

The file-name and fallback rules are checked on `mta.log.Logger` itself
(rejections and panics are hard to provoke from the CLI); the arrival line,
log_file_path and an unwritable log are checked through a real submission.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from mta.log import DEFAULT_SELECTORS, KNOWN_SELECTORS, Logger, escape, log_timestamp, parse_selector
from tests.support.mta import MtaEnv

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
SIMPLE = "Subject: x\n\nbody\n"


def submit(env: MtaEnv, *args: str, input: str | bytes = SIMPLE) -> tuple[str, str]:
    """Submit with -odq; return (message id, stderr)."""
    result = env.run("-odq", *args, input=input)
    assert result.returncode == 0, result.stderr
    (message_id,) = env.message_ids()
    return message_id, result.stderr


# -- file names -------------------------------------------------------------


def test_default_paths_under_the_spool(tmp_path: Path) -> None:
    logger = Logger(str(tmp_path / "spool"))
    logger.main("main line")
    logger.reject("reject line", ["Envelope-from: <a@b>"])
    logger.panic("panic line")
    logger.close()
    log_dir = tmp_path / "spool" / "log"
    assert sorted(p.name for p in log_dir.iterdir()) == ["mainlog", "paniclog", "rejectlog"]
    main = (log_dir / "mainlog").read_text().splitlines()
    # A rejection and a panic are written to the main log as well.
    assert [line.split(" ", 2)[2] for line in main] == ["main line", "reject line", "panic line"]
    assert (log_dir / "rejectlog").read_text().splitlines()[1:] == ["Envelope-from: <a@b>"]
    assert (log_dir / "paniclog").read_text().split(" ", 2)[2] == "panic line\n"


def test_percent_s_and_percent_D(tmp_path: Path) -> None:
    now = time.mktime((2026, 3, 4, 12, 0, 0, 0, 0, -1))
    logger = Logger(str(tmp_path), [str(tmp_path / "logs" / "%s-%D.log"), str(tmp_path / "copy" / "%slog.%M")])
    assert logger.path_for("main", now) == [
        str(tmp_path / "logs/main-20260304.log"),
        str(tmp_path / "copy/mainlog.202603"),
    ]
    assert logger.path_for("reject", now)[0].endswith("/logs/reject-20260304.log")
    assert logger.path_for("panic", now)[0].endswith("/logs/panic-20260304.log")
    logger.main("to both files")
    logger.close()
    today = time.strftime("%Y%m%d")
    assert (tmp_path / "logs" / f"main-{today}.log").read_text().endswith(" to both files\n")
    assert (tmp_path / "copy" / f"mainlog.{time.strftime('%Y%m')}").read_text().endswith(" to both files\n")


def test_log_file_path_through_the_cli(mta_env: MtaEnv) -> None:
    mta_env.write_config(f"log_file_path = {mta_env.root}/var/%s-%D.log\n")
    message_id, _ = submit(mta_env, "bob@example.com")
    path = mta_env.root / "var" / f"main-{time.strftime('%Y%m%d')}.log"
    (line,) = path.read_text().splitlines()
    assert f" {message_id} <= root@example.com " in line
    assert not mta_env.mainlog.exists()


def test_write_rejectlog_false(tmp_path: Path) -> None:
    logger = Logger(str(tmp_path), write_rejectlog=False)
    logger.reject("rejected RCPT <x@y>: relay not permitted")
    logger.close()
    assert not (tmp_path / "log" / "rejectlog").exists()
    assert (tmp_path / "log" / "mainlog").read_text().endswith(" rejected RCPT <x@y>: relay not permitted\n")


# -- line format ------------------------------------------------------------


def test_arrival_line_format(mta_env: MtaEnv) -> None:
    message_id, _ = submit(mta_env, "bob@example.com", input="Message-ID: <m1@example.org>\n\nb\n")
    (line,) = mta_env.log_lines()
    assert re.fullmatch(rf"{STAMP} {message_id} <= root@example.com U=root P=local S=\d+ id=m1@example.org", line), line
    stamp = line[:19]
    assert abs(time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) - time.time()) < 60


@pytest.mark.parametrize(
    ("selector", "pattern"),
    [
        ("+received_recipients", r" S=\d+ for bob@example.com carol@example.org$"),
        ("+subject", r' S=\d+ T="Hello there"$'),
        ("-msg_id", r" S=\d+$"),
        ("+pid", rf"^{STAMP} \[\d+\] "),
        ("+millisec", rf"^{STAMP}\.\d{{3}} "),
    ],
)
def test_log_selector_items(mta_env: MtaEnv, selector: str, pattern: str) -> None:
    mta_env.write_config(f"log_selector = {selector}\n")
    submit(mta_env, "bob@example.com", "carol@example.org", input="Subject: Hello there\n\nb\n")
    (line,) = mta_env.log_lines()
    assert re.search(pattern, line), line


def test_log_timezone(mta_env: MtaEnv) -> None:
    mta_env.write_config("log_timezone = true\n")
    submit(mta_env, "bob@example.com")
    assert re.match(rf"{STAMP} [+-]\d{{4}} \S+ <= ", mta_env.log_lines()[0])


def test_timestamp_function() -> None:
    now = time.mktime((2026, 11, 22, 12, 42, 54, 0, 0, -1)) + 0.25
    assert log_timestamp(now) == "2026-11-22 12:42:54"
    assert log_timestamp(now, millisec=True) == "2026-11-22 12:42:54.250"
    assert re.fullmatch(r"2026-11-22 12:42:54 [+-]\d{4}", log_timestamp(now, with_zone=True))


def test_timestamps_of_one_second_are_made_once_and_change_with_the_second() -> None:
    """The stamp of the last second is kept (a worker writes several lines a second); a time in
    another second, earlier or later, gets its own."""
    now = time.mktime((2026, 11, 22, 12, 42, 54, 0, 0, -1))
    assert log_timestamp(now + 0.1) == "2026-11-22 12:42:54"
    assert log_timestamp(now + 0.9) == "2026-11-22 12:42:54"
    assert log_timestamp(now + 0.95, millisec=True) == "2026-11-22 12:42:54.950"
    assert log_timestamp(now + 1.0) == "2026-11-22 12:42:55"
    assert log_timestamp(now - 0.5) == "2026-11-22 12:42:53"
    assert log_timestamp(now + 1.5, millisec=True) == "2026-11-22 12:42:55.500"


def test_undated_log_names_are_made_once_and_dated_ones_follow_the_day(tmp_path: Path) -> None:
    undated = Logger(str(tmp_path), [str(tmp_path / "%slog")])
    assert undated.path_for("main") == [str(tmp_path / "mainlog")]
    assert undated.path_for("reject") == [str(tmp_path / "rejectlog")]
    assert undated.path_for("main") == [str(tmp_path / "mainlog")]
    dated = Logger(str(tmp_path), [str(tmp_path / "%slog"), str(tmp_path / "%s-%D")])
    day = time.mktime((2026, 3, 4, 12, 0, 0, 0, 0, -1))
    assert dated.path_for("main", day) == [str(tmp_path / "mainlog"), str(tmp_path / "main-20260304")]
    assert dated.path_for("main", day + 86400)[1] == str(tmp_path / "main-20260305")


def test_parse_selector() -> None:
    assert parse_selector("") == DEFAULT_SELECTORS
    assert parse_selector("+all") == KNOWN_SELECTORS
    assert parse_selector("-all +subject") == {"subject"}
    assert "msg_id" not in parse_selector("-msg_id")
    with pytest.raises(ValueError, match='unknown log_selector item "nosuch"'):
        parse_selector("+nosuch")
    with pytest.raises(ValueError, match='log_selector item "subject" must start with \\+ or -'):
        parse_selector("subject")


# -- escaping ---------------------------------------------------------------

ESCAPES = [
    ("plain text", "plain text"),
    ("a\nb", "a\\nb"),
    ("a\r\nb", "a\\r\\nb"),
    ("tab\there", "tab\\there"),
    ("esc\x1b[31m", "esc\\033[31m"),
    ("nul\x00", "nul\\000"),
    ("back\\slash", "back\\\\slash"),
    ("del\x7f", "del\\177"),
    ("caf\u00e9", "caf\u00e9"),
]


@pytest.mark.parametrize(("text", "want"), ESCAPES, ids=[e[1] for e in ESCAPES])
def test_escape(text: str, want: str) -> None:
    assert escape(text) == want


def test_control_characters_escaped_in_the_log(mta_env: MtaEnv) -> None:
    mta_env.write_config("log_selector = +subject\n")
    submit(mta_env, "bob@example.com", input=b"Message-ID: <a\x1bb\tc@x>\nSubject: s\x0b\x7f\n\nbody\n")
    (line,) = mta_env.log_lines()
    assert line.endswith(' id=a\\033b\\tc@x T="s\\013\\177"'), line
    assert not any(ch in line for ch in "\x1b\t\x0b\x7f")


def test_forged_line_cannot_be_injected(mta_env: MtaEnv) -> None:
    mta_env.write_config("log_selector = +subject\n")
    submit(mta_env, "bob@example.com", input="Subject: x\n 2026-01-01 00:00:00 fake <= line\n\nb\n")
    lines = mta_env.log_lines()
    assert len(lines) == 1
    assert 'T="x\\n 2026-01-01 00:00:00 fake <= line"' in lines[0]


# -- a log that cannot be written -------------------------------------------


def test_main_log_unwritable_goes_to_panic_log(mta_env: MtaEnv) -> None:
    (mta_env.spool / "log" / "mainlog").mkdir(parents=True)  # a directory where the file should be
    message_id, stderr = submit(mta_env, "bob@example.com")
    assert stderr == ""
    panic = (mta_env.spool / "log" / "paniclog").read_text().splitlines()
    assert re.fullmatch(rf"{STAMP} cannot write main log {mta_env.spool}/log/mainlog: Is a directory", panic[0])
    assert re.fullmatch(rf"{STAMP} {message_id} <= root@example.com U=root P=local S=\d+", panic[1])
    assert (mta_env.spool / "input" / f"{message_id}-H").exists()


def test_log_directory_is_a_file_goes_to_stderr(mta_env: MtaEnv) -> None:
    mta_env.spool.mkdir()
    (mta_env.spool / "log").write_text("not a directory\n")
    message_id, stderr = submit(mta_env, "bob@example.com")
    assert (mta_env.spool / "input" / f"{message_id}-H").exists()
    lines = stderr.splitlines()
    assert lines[0] == f"mta: cannot write main log {mta_env.spool}/log/mainlog: Not a directory"
    assert re.fullmatch(rf"mta: {STAMP} {message_id} <= root@example.com .*", lines[1]), lines
    # -bp still works and shows the message: the spool is the truth.
    assert message_id in mta_env.run("-bp").stdout


def test_logger_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    logger = Logger(str(tmp_path), [str(blocker / "%slog")])
    logger.main("lost?")
    logger.panic("panic too")
    err = capsys.readouterr().err
    assert f"mta: cannot write main log {blocker}/mainlog: Not a directory" in err
    assert err.count(" lost?\n") == 1 and err.count(" panic too\n") >= 1


def test_rotated_log_is_reopened(tmp_path: Path) -> None:
    logger = Logger(str(tmp_path))
    logger.main("one")
    mainlog = tmp_path / "log" / "mainlog"
    mainlog.rename(tmp_path / "log" / "mainlog.1")
    logger.main("two")
    logger.close()
    assert mainlog.read_text().endswith(" two\n")
    assert (tmp_path / "log" / "mainlog.1").read_text().endswith(" one\n")
