"""MAIL and RCPT parameters: xtext (ENVID, AUTH=, ORCPT) that decodes to a control character is refused."""

from __future__ import annotations

import pytest

from mta.receive.smtp_commands import CommandError, parse_mail, parse_rcpt

EXTENSIONS = {"DSN", "AUTH", "SIZE"}
CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]


def test_xtext_that_decodes_to_a_control_character_is_refused() -> None:
    for code in CONTROLS:
        check_refused(f"a+{code:02X}b")


def check_refused(encoded: str) -> None:
    for parse in (lambda: parse_mail(f"FROM:<a@example.org> ENVID={encoded}", EXTENSIONS),
                  lambda: parse_mail(f"FROM:<a@example.org> AUTH={encoded}@example.org", EXTENSIONS),
                  lambda: parse_rcpt(f"TO:<b@example.com> ORCPT=rfc822;{encoded}@example.com", EXTENSIONS, False)):
        with pytest.raises(CommandError) as info:
            parse()
        assert info.value.code == 501 and "control character" in info.value.text


def test_printable_xtext_is_decoded() -> None:
    mail = parse_mail("FROM:<a@example.org> ENVID=a+2Bb+20c+3D AUTH=x+2By@example.org", EXTENSIONS)
    assert (mail.envid, mail.auth) == ("a+b c=", "x+y@example.org")
    rcpt = parse_rcpt("TO:<b@example.com> ORCPT=rfc822;b+2Bc@example.com", EXTENSIONS, False)
    assert rcpt.orcpt == "rfc822;b+c@example.com"
