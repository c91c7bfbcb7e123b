"""-oem / -oew / -oee / -oep / -oeq: what happens to a message that cannot be accepted.

-oem (the default) and -oew mail a report with a copy of the message to the
sender and exit 1; -oee mails it and exits 0; -oep and -oeq only print.
All print the one-line reason on stderr.
"""

from __future__ import annotations

import pytest

from tests.support.mta import MtaEnv

NO_RECIPIENTS = "From: someone@example.com\nSubject: lost\n\nthe body\n"
REASON = "no recipients found in To:, Cc: or Bcc: (with -t)"


@pytest.mark.parametrize(
    ("flag", "exit_code", "mailed"),
    [("", 1, True), ("-oem", 1, True), ("-oew", 1, True), ("-oee", 0, True), ("-oep", 1, False),
     ("-oeq", 1, False), ("-em", 1, True), ("-ep", 1, False)],
    ids=["default", "oem", "oew", "oee", "oep", "oeq", "em", "ep"],
)
def test_error_mode(mta_env: MtaEnv, flag: str, exit_code: int, mailed: bool) -> None:
    args = ["-odq", "-t", "-f", "sender@example.org"] + ([flag] if flag else [])
    result = mta_env.run(*args, input=NO_RECIPIENTS)
    assert result.returncode == exit_code, result
    assert REASON in result.stderr
    ids = mta_env.message_ids()
    if not mailed:
        assert ids == []
        return
    [report] = ids
    header = mta_env.header_file(report)
    assert header.splitlines()[2] == "<>"  # from the null sender: a report never bounces back
    assert "sender@example.org" in header.splitlines()
    assert "-localerror" in header.splitlines()
    body = mta_env.data_file(report).decode()
    assert f"  {REASON}\n" in body
    # The copy holds the headers and the body that were submitted.
    assert "Subject: lost\n" in body and "the body\n" in body
    assert any("Error message sent to <sender@example.org>" in line for line in mta_env.log_lines())


def test_no_report_for_an_empty_sender(mta_env: MtaEnv) -> None:
    result = mta_env.run("-odq", "-t", "-f", "<>", input=NO_RECIPIENTS)
    assert result.returncode == 1
    assert mta_env.message_ids() == []


def test_errors_before_reading_are_only_printed(mta_env: MtaEnv) -> None:
    """Nothing was read yet (bad command line): there is nothing to mail back."""
    result = mta_env.run("-odq", "-f", "sender@example.org", input=NO_RECIPIENTS)
    assert result.returncode == 1
    assert "no recipients given on the command line" in result.stderr
    assert mta_env.message_ids() == []
