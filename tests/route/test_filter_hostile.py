"""Filters against hostile messages and hostile filter files: what an attacker (a sender, or a user
writing a filter) may try, and the class of rule that stops each (docs/security.md)."""

from __future__ import annotations

import pytest

from mta.route.filter import FilterStatus, run_filter
from tests.route.test_filter import env_for

# A Subject: whose encoded word decodes to a line break and a new header; a bare CR; a folded header.
HOSTILE = [
    "Subject: =?utf-8?q?hello=0ABcc:_victim@example.net?=\n",
    "X-CR: one\rBcc: victim@example.net\n",
    "X-Folded: first\n second\n",
    "From: carol@example.net\n",
    "To: erin@example.com\n",
]


def test_system_filter_headers_add_cannot_start_a_header_from_message_data() -> None:
    env = env_for(HOSTILE, system=True)
    filter_text = (
        '# Exim filter\nheaders add "X-Subject: $h_subject:"\nheaders add "X-CR: $h_x-cr:"\n'
        'headers add "X-Folded: $h_x-folded:"\nheaders add "X-Own: 1\\nX-Own2: 2"\n'
    )
    result = run_filter(filter_text, env)
    assert result.status is FilterStatus.NOT_DELIVERED
    added = "".join(env.headers[len(HOSTILE) :])
    lines = added.split("\n")
    # Every line the data made is a continuation; only the filter's own text starts header lines.
    starts = [line.split(":", 1)[0] for line in lines if line and not line[0].isspace()]
    assert starts == ["X-Subject", "X-CR", "X-Folded", "X-Own", "X-Own2"]
    assert "\r" not in added
    assert "X-Subject: hello\n\tBcc: victim@example.net\n" in added


@pytest.mark.parametrize("command", ["mail", "vacation"])
def test_reply_header_values_from_message_data_neither_fail_nor_add_headers(command: str) -> None:
    result = run_filter(
        f'# Exim filter\n{command} subject "Re: $h_subject:" extra_headers "X-Was: $h_x-cr:" text "away"\n',
        env_for(HOSTILE),
    )
    # A hostile Subject: must not make the filter fail (which would defer the user's mail).
    assert result.status is FilterStatus.NOT_DELIVERED, result.message
    reply = result.actions[0].reply
    assert reply is not None
    assert reply.subject == "Re: hello\n\tBcc: victim@example.net"
    assert reply.headers == "X-Was: one Bcc: victim@example.net"


def test_the_users_own_header_text_is_still_checked_as_exim_does() -> None:
    result = run_filter('# Exim filter\nmail subject "a\\nBcc: b@example.net" text x\n', env_for())
    assert result.status is FilterStatus.ERROR
    assert "\\n not followed by space" in (result.message or "")


def _deep_if(n: int) -> str:
    return "# Exim filter\n" + "if $h_subject: contains urgent then\n" * n + "testprint x\n" + "endif\n" * n


@pytest.mark.parametrize(
    "text",
    [
        _deep_if(3000),
        "# Exim filter\nif " + "(" * 3000 + "$h_subject: contains x" + ")" * 3000 + " then finish endif\n",
        "# Exim filter\nif " + 'foranyaddress "a@b" (' * 3000 + "$thisaddress is a@b" + ")" * 3000 + " then endif\n",
        "# Exim filter\nif " + "$h_subject: contains x or " * 5000 + "$h_subject: contains x then finish endif\n",
        "# Exim filter\nif " + "$h_subject: contains x and " * 5000 + "$h_subject: contains x then finish endif\n",
    ],
    ids=["if", "brackets", "foranyaddress", "or", "and"],
)
def test_a_filter_nested_too_deeply_is_an_error_with_its_line_not_a_crash(text: str) -> None:
    result = run_filter(text, env_for())
    assert result.status is FilterStatus.ERROR
    assert "near line" in (result.message or "") and "filter file" in (result.message or "")


def test_nesting_up_to_the_limit_works() -> None:
    text = "# Exim filter\nif " + "(" * 10 + "$h_subject: contains urgent" + " or $h_subject: is x" * 150
    text += ")" * 10 + " then\n" + _deep_if(48)[len("# Exim filter\n") :] + "endif\n"
    result = run_filter(text, env_for(test=True, output=lambda line: None))
    assert result.status is FilterStatus.NOT_DELIVERED, result.message
