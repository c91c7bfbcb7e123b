"""`mta -bem FILE` and `mta -be -Mset ID`: expansion testing with a message's variables (issue 11, point 4).

The -bem outputs for a sample message are also in the Exim corpus
(tests/expand/corpus, lines starting "[bem:"); these tests drive the real
command for the parts only mta has: the spool (-Mset), who may use it, and
what a bad argument says.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody

MESSAGE = """\
From: Bob <bob@example.org>
To: alice@example.com
Subject: =?utf-8?q?h=C3=A9llo?= there
X-Tag: one
X-Tag: two

First line of the body.
Second line.
"""


def test_bem_reads_a_message_file(mta_env: MtaEnv, tmp_path: Path) -> None:
    mta_env.write_config()
    message = tmp_path / "message.eml"
    message.write_text(MESSAGE)
    result = mta_env.run(
        "-bem", str(message),
        "$h_subject:|$rh_subject:", "$h_x-tag:", "${address:$h_from:}", "$message_body",
        "$message_size $message_linecount $body_linecount $message_body_size",
        "${if def:h_message-id:{has a Message-Id}}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == [
        "héllo there| =?utf-8?q?h=C3=A9llo?= there",
        "",
        "one",
        "two",
        "bob@example.org",
        "First line of the body. Second line. ",
        f"{len(MESSAGE)} 8 2 37",
        "has a Message-Id",
        "",
    ]


def test_bem_missing_file(mta_env: MtaEnv, tmp_path: Path) -> None:
    mta_env.write_config()
    result = mta_env.run("-bem", str(tmp_path / "nothing"), "x")
    assert result.returncode == 1
    assert result.stderr == f"mta: failed to open {tmp_path / 'nothing'}: No such file or directory\n"


def test_mset_gives_a_spooled_message_s_variables(mta_env: MtaEnv) -> None:
    mta_env.write_config()
    submitted = mta_env.run("-odq", "-f", "bob@example.org", "alice@example.com", "carol@example.com", input=MESSAGE)
    assert submitted.returncode == 0, submitted.stderr
    (message_id,) = mta_env.message_ids()
    result = mta_env.run(
        "-be", "-Mset", message_id,
        "$message_id", "$sender_address", "$recipients", "$recipients_count", "$h_x-tag:",
        "${sg{$message_body}{ +\\$}{}}", "$received_protocol",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == [
        message_id,
        "bob@example.org",
        "alice@example.com, carol@example.com",
        "2",
        "one",
        "two",
        "First line of the body. Second line.",
        "local",
        "",
    ]


def test_mset_unknown_message(mta_env: MtaEnv) -> None:
    mta_env.write_config()
    result = mta_env.run("-be", "-Mset", "1abcde-123456-78", "$message_id")
    assert result.returncode == 1
    assert result.stderr.startswith("mta: Failed to load message 1abcde-123456-78")
    assert mta_env.run("-be", "-Mset", "not-an-id", "x").stderr == "mta: not-an-id is not a message id\n"
    assert mta_env.run("-Mset", "1abcde-123456-78").stderr.startswith("mta: -Mset is only for use with -be")


def test_mset_is_for_administrators_only(open_env: MtaEnv, nobody: Nobody) -> None:
    result = nobody.run(open_env, "-be", "-Mset", "1abcde-123456-78", "$message_id")
    assert (result.returncode, result.stderr) == (1, "mta: permission denied\n")
