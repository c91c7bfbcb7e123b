"""mta.taint: which characters of a string are tainted, and the one file-name rule (issue 11, point 6)."""

from __future__ import annotations

import pytest

from mta.expand import ExpandContext, expand
from mta.taint import Tainted, concat, file_name_refusal, file_name_refused, is_tainted, tainted_spans

LOCAL = Tainted("bob")


def test_whole_value_is_one_span() -> None:
    assert Tainted("abc").spans == ((0, 3),)
    assert Tainted("").spans == ((0, 0),)


def test_concat_keeps_each_tainted_piece() -> None:
    joined = concat(["/var/mail/", LOCAL, "/inbox"])
    assert joined == "/var/mail/bob/inbox"
    assert isinstance(joined, Tainted) and joined.spans == ((10, 13),)
    assert concat(["a", "b"]) == "ab" and not is_tainted(concat(["a", "b"]))


def test_touching_pieces_are_one_run() -> None:
    assert concat(["/d/", Tainted("a"), Tainted("b"), "/x", Tainted("c")]).spans == ((3, 5), (7, 8))


def test_empty_tainted_piece_still_counts() -> None:
    assert concat(["/var/mail/", Tainted("")]).spans == ((10, 10),)


# (path as pieces, refused?)
CASES = [
    ("untainted", ["/etc/passwd"], None),
    ("classic mailbox", ["/var/spool/mail/", LOCAL], None),
    ("lists directory", ["/etc/exim/lists/", LOCAL], None),
    ("component then more", ["/home/mail/", LOCAL, "/Maildir"], None),
    ("two pieces, one component", ["/d/", Tainted("a"), Tainted("b")], None),
    ("wholly tainted", [Tainted("/var/mail/bob")], "the tainted part does not follow an absolute directory"),
    ("relative directory", ["mail/", LOCAL], "the tainted part does not follow an absolute directory"),
    ("not after a slash", ["/var/mail/x", LOCAL], "the tainted part does not follow an absolute directory"),
    ("suffix in the component", ["/var/mail/", LOCAL, ".db"], "the tainted part is not a whole path component"),
    ("two components", ["/var/", Tainted("a"), "/", Tainted("b")], "tainted data forms more than one part of it"),
    ("dot-dot", ["/var/mail/", Tainted("..")], 'it is ".."'),
    ("dot", ["/var/mail/", Tainted(".")], 'it is "."'),
    ("leading dot", ["/var/mail/", Tainted(".forward")], 'it starts with "."'),
    ("slash", ["/var/mail/", Tainted("a/b")], 'it contains "/"'),
    ("escape", ["/var/mail/", Tainted("../../etc/passwd")], 'it contains "/"'),
    ("control", ["/var/mail/", Tainted("a\nb")], "it contains a control character"),
    ("delete", ["/var/mail/", Tainted("a\x7fb")], "it contains a control character"),
    ("empty", ["/var/mail/", Tainted("")], "it is empty"),
    ("empty mid-path", ["/var/mail/", Tainted(""), "/x"], "it is empty"),
    ("encoded slash is a character", ["/var/mail/", Tainted("a%2F..%2Fb")], None),
]


@pytest.mark.parametrize(("pieces", "refusal"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_file_name_refusal(pieces: list[str], refusal: str | None) -> None:
    path = concat(pieces)
    assert file_name_refusal(path) == refusal, f"{path!r} ({getattr(path, 'spans', None)})"
    assert file_name_refused(path) is (refusal is not None)


def test_spans_survive_expansion() -> None:
    ctx = ExpandContext({"local_part": LOCAL, "home": "/home/bob"})
    path = expand("/var/spool/mail/${local_part}", ctx)
    assert isinstance(path, Tainted) and path.spans == ((16, 19),)
    assert not file_name_refused(path)
    # An operator's result is wholly tainted: the run is the operator's whole output.
    lowered = expand("/var/mail/${lc:$local_part}", ctx)
    assert lowered.spans == ((10, 13),) and not file_name_refused(lowered)  # type: ignore[attr-defined]
    assert file_name_refused(expand("/var/mail/${lc:x$local_part}", ctx)) is False  # "xbob" is all tainted
    assert file_name_refused(expand("/var/mail/${lc:x$local_part}y", ctx))  # "xboby" is only partly
    assert file_name_refused(expand("/var/mail/x${lc:$local_part}", ctx))
    # $home is trusted (from the passwd file): no taint at all.
    assert not is_tainted(expand("$home/Maildir", ctx))


def test_conditions_on_tainted_data_give_untainted_constants() -> None:
    ctx = ExpandContext({"local_part": LOCAL})
    assert not is_tainted(expand("${if eq{$local_part}{bob}{/var/mail/known}{/var/mail/other}}", ctx))


def test_tainted_spans_constructor() -> None:
    value = tainted_spans("abcdef", [(4, 6), (0, 1)])
    assert value.spans == ((0, 1), (4, 6))
    assert tainted_spans("abc", [(0, 3)]).spans == ((0, 3),)
