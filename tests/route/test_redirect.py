"""The alias/forward item language (mta.route.redirect), without the engine."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from mta.errors import DeferError, FailError
from mta.route.redirect import (
    MAX_INCLUDE_DEPTH,
    MAX_LIST_FILE_SIZE,
    ItemKind,
    RedirectItem,
    RedirectParse,
    RedirectSyntaxError,
    parse_redirect_list,
    read_list_file,
)
from mta.taint import Tainted

ALL = {
    "allow_pipe": True, "allow_file": True, "allow_include": True,
    "allow_fail": True, "allow_defer": True, "allow_blackhole": True,
}


def parse(text: str, **overrides: Any) -> RedirectParse:
    kwargs: dict[str, Any] = {
        "source": "test list", "incoming_domain": "in.example", "qualify_domain": "q.example", **ALL,
    }
    kwargs.update(overrides)
    return parse_redirect_list(text, **kwargs)


A, P, F, D = ItemKind.ADDRESS, ItemKind.PIPE, ItemKind.FILE, ItemKind.DIRECTORY

ITEMS = [
    ("plain", "alice", [(A, "alice@q.example")]),
    ("qualified", "bob@x.example", [(A, "bob@x.example")]),
    ("commas and newlines", "a, b\nc,,d\n\n", [(A, "a@q.example"), (A, "b@q.example"), (A, "c@q.example"),
                                               (A, "d@q.example")]),
    ("comment lines", "# list of people\na\n  # indented comment\nb", [(A, "a@q.example"), (A, "b@q.example")]),
    ("comment after comma", "a, # rest of line, c\nb", [(A, "a@q.example"), (A, "b@q.example")]),
    ("display name and comment", "Alice <a@x.example>, b@x.example (Bob)", [(A, "a@x.example"), (A, "b@x.example")]),
    ("comment only item is ignored", "(nobody), a", [(A, "a@q.example")]),
    ("quoted local part kept", '"john doe"@x.example', [(A, '"john doe"@x.example')]),
    ("whole item in quotes", '"alice"', [(A, "alice@q.example")]),
    ("pipe", "|/usr/bin/tee -a /x", [(P, "|/usr/bin/tee -a /x")]),
    ("quoted pipe with comma", '"|/bin/prog a,b", c', [(P, "|/bin/prog a,b"), (A, "c@q.example")]),
    ("quoted pipe unescaped", r'"|/bin/echo \"hi\""', [(P, '|/bin/echo "hi"')]),
    ("pipe without spaces", "|/usr/bin/procmail", [(P, "|/usr/bin/procmail")]),
    ("address that looks like a pipe", '"|cmd"@x.example', [(A, "|cmd@x.example")]),
    ("pipe-like item with domain is an address", "|cmd@x.example", [(A, "|cmd@x.example")]),
    ("file", "/var/mail/archive", [(F, "/var/mail/archive")]),
    ("directory", "/home/u/Maildir/", [(D, "/home/u/Maildir/")]),
    ("X.400-like address", "/X=a/Y=b/@gate.example", [(A, "/X=a/Y=b/@gate.example")]),
    ("backslash user", "\\alice", [(A, "alice@in.example")]),
    ("unknown is ignored", ":unknown:, a", [(A, "a@q.example")]),
    ("empty", "", []),
    ("only comments", "# nothing\n   \n", []),
    ("source route kept whole", "<@r.example,@s.example:u@x.example>", [(A, "u@x.example")]),
]


@pytest.mark.parametrize(("text", "want"), [(t, w) for _n, t, w in ITEMS], ids=[n for n, _t, _w in ITEMS])
def test_items(text: str, want: list[tuple[ItemKind, str]]) -> None:
    got = [(i.kind, i.value) for i in parse(text).items]
    assert got == want, f"got {got} want {want}"


def test_backslash_item_is_marked_not_to_redirect() -> None:
    items = parse("\\alice, bob").items
    assert items == [RedirectItem(A, "alice@in.example", no_redirect=True), RedirectItem(A, "bob@q.example")]


def test_qualify_preserve_domain_uses_incoming_domain() -> None:
    assert parse("bob", qualify_preserve_domain=True).addresses == ["bob@in.example"]


def test_dev_null_discards_only_that_item() -> None:
    result = parse("/dev/null, a")
    assert result.addresses == ["a@q.example"]
    assert result.discarded == 1
    only = parse("/dev/null")
    assert not only.items and only.discarded == 1 and not only.empty


def test_blackhole_ends_the_list() -> None:
    result = parse("a, :blackhole:, b")
    assert result.blackhole
    assert result.addresses == ["a@q.example"]  # b is never looked at


FAIL_DEFER = [
    (":fail: No such list", FailError, "No such list", 550, "5.0.0"),
    (":fail:", FailError, "Unrouteable address", 550, "5.0.0"),
    (":fail: 550 5.1.1 gone, really gone", FailError, "gone, really gone", 550, "5.1.1"),
    (":fail: 553 moved", FailError, "moved", 553, "5.0.0"),
    (":fail: 451 not a failure code", FailError, "451 not a failure code", 550, "5.0.0"),
    ("a, :fail: stop here, b", FailError, "stop here, b", 550, "5.0.0"),
    (":defer: disk full", DeferError, "disk full", 451, "4.0.0"),
    (":defer: 452 4.2.2 over quota", DeferError, "over quota", 452, "4.2.2"),
]


@pytest.mark.parametrize(("text", "cls", "message", "code", "esc"), FAIL_DEFER, ids=[r[0] for r in FAIL_DEFER])
def test_fail_and_defer(text: str, cls: type, message: str, code: int, esc: str) -> None:
    with pytest.raises(cls) as info:
        parse(text)
    assert type(info.value) is cls
    assert (info.value.message, info.value.code, info.value.esc) == (message, code, esc)


NOT_PERMITTED = [
    ("|/bin/x", "allow_pipe", "pipes are not permitted"),
    ("/tmp/f", "allow_file", "files are not permitted"),
    ("/tmp/d/", "allow_file", "files are not permitted"),
    (":include:/etc/x", "allow_include", ":include: is not permitted"),
    (":fail: x", "allow_fail", '":fail:" is not permitted'),
    (":defer: x", "allow_defer", '":defer:" is not permitted'),
    (":blackhole:", "allow_blackhole", '":blackhole:" is not permitted'),
    ("/dev/null", "allow_blackhole", "/dev/null is not permitted"),
]


@pytest.mark.parametrize(("text", "option", "reason"), NOT_PERMITTED, ids=[r[0] for r in NOT_PERMITTED])
def test_not_permitted_items_are_errors(text: str, option: str, reason: str) -> None:
    with pytest.raises(RedirectSyntaxError) as info:
        parse(text, **{option: False})
    assert reason in info.value.message
    assert info.value.message.startswith("test list: ")
    # Not permitted is never a syntax error that could be skipped.
    with pytest.raises(RedirectSyntaxError):
        parse(text, skip_syntax_errors=True, **{option: False})


SYNTAX = [
    ("bad address@", "bad address@"),
    ("a@", "a@"),
    ("\\bob@x.example", "\\bob@x.example"),
    ("<unclosed@x.example", "<unclosed@x.example"),
    ("|", "|"),
    (":include:relative/path", ":include:relative/path"),
    (":include:", ":include:"),
]


@pytest.mark.parametrize(("text", "item"), SYNTAX, ids=[r[0] for r in SYNTAX])
def test_syntax_errors_defer_naming_source_and_item(text: str, item: str) -> None:
    with pytest.raises(RedirectSyntaxError) as info:
        parse(f"good, {text}")
    err = info.value
    assert isinstance(err, DeferError)
    assert err.source == "test list"
    assert f'"{item}"' in err.message


def test_skip_syntax_errors_keeps_the_good_items() -> None:
    result = parse("a, bad address@, b", skip_syntax_errors=True)
    assert result.addresses == ["a@q.example", "b@q.example"]
    assert len(result.syntax_errors) == 1 and "bad address@" in result.syntax_errors[0]


def test_only_skipped_errors_is_empty() -> None:
    result = parse("bad address@", skip_syntax_errors=True)
    assert result.empty and result.syntax_errors


@pytest.mark.parametrize(
    ("text", "what"),
    [("|/bin/sh -c x", "pipe"), ("/etc/passwd", "file"), ("/tmp/dir/", "file"), (":include:/etc/aliases", ":include:"),
     ("/dev/null", "file")],
)
def test_tainted_text_gives_addresses_only(text: str, what: str) -> None:
    with pytest.raises(RedirectSyntaxError) as info:
        parse(Tainted(text))
    assert "tainted" in info.value.message and what in info.value.message


@pytest.mark.parametrize("text", ["|/bin/sh -c x", "/etc/passwd", "/tmp/dir/", "/dev/null"])
def test_same_items_from_trusted_text_are_accepted(text: str) -> None:
    result = parse(text)
    assert result.items or result.discarded


def test_tainted_text_may_hold_addresses() -> None:
    assert parse(Tainted("alice, bob@x.example")).addresses == ["alice@q.example", "bob@x.example"]


def test_control_characters_in_pipe_are_refused() -> None:
    with pytest.raises(RedirectSyntaxError, match="control character"):
        parse('"|/bin/x \x01"')


# -- :include: ----------------------------------------------------------------------


def test_include_is_spliced_in_place(tmp_path: Path) -> None:
    inc = tmp_path / "staff"
    inc.write_text("# staff list\ncarol, dave@x.example\n|/bin/log\n")
    result = parse(f"a, :include:{inc}, b")
    assert [i.value for i in result.items] == ["a@q.example", "carol@q.example", "dave@x.example", "|/bin/log",
                                               "b@q.example"]


def test_include_text_is_not_expanded(tmp_path: Path) -> None:
    inc = tmp_path / "list"
    inc.write_text("${run{/bin/true}}\n$local_part\n")
    assert parse(f":include:{inc}").addresses == ["${run{/bin/true}}@q.example", "$local_part@q.example"]


def test_include_in_lsearch_style_value_keeps_fail_semantics(tmp_path: Path) -> None:
    inc = tmp_path / "list"
    inc.write_text("a\n:fail: list closed\n")
    with pytest.raises(FailError, match="list closed"):
        parse(f":include:{inc}")


def test_include_options_apply_inside(tmp_path: Path) -> None:
    inc = tmp_path / "list"
    inc.write_text("|/bin/x\n")
    with pytest.raises(RedirectSyntaxError) as info:
        parse(f":include:{inc}", allow_pipe=False)
    assert f"included file {inc}" in info.value.message


def test_include_missing_file_defers(tmp_path: Path) -> None:
    with pytest.raises(RedirectSyntaxError, match="cannot open included file"):
        parse(f":include:{tmp_path}/missing")


def test_include_loop_and_depth(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.write_text(f":include:{loop}\n")
    with pytest.raises(RedirectSyntaxError, match="includes itself"):
        parse(f":include:{loop}")
    # A chain deeper than the limit.
    files = [tmp_path / f"l{i}" for i in range(MAX_INCLUDE_DEPTH + 2)]
    for here, there in itertools.pairwise(files):
        here.write_text(f"{here.name}, :include:{there}\n")
    files[-1].write_text("end\n")
    with pytest.raises(RedirectSyntaxError, match="levels of :include:"):
        parse(f":include:{files[0]}")
    assert len(parse(f":include:{files[3]}").items) == len(files) - 3


def test_include_check_is_called(tmp_path: Path) -> None:
    inc = tmp_path / "list"
    inc.write_text("a\n")
    seen: list[str] = []

    def check(path: str, st: os.stat_result) -> None:
        seen.append(path)
        if st.st_size:
            raise DeferError(f"refused {path}")

    with pytest.raises(DeferError, match="refused"):
        parse(f":include:{inc}", include_check=check)
    assert seen == [str(inc)]


# -- read_list_file -------------------------------------------------------------------


def test_read_list_file_refuses_fifo_and_directory(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DeferError, match="not a regular file"):
        read_list_file(str(fifo), "forward file")
    with pytest.raises(DeferError, match="not a regular file"):
        read_list_file(str(tmp_path), "forward file")


def test_read_list_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(MAX_LIST_FILE_SIZE + 1)
    with pytest.raises(DeferError, match="too big"):
        read_list_file(str(big), "included file")


def test_read_list_file_missing_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_list_file(str(tmp_path / "none"), "forward file")


def test_read_list_file_bad_utf8_is_replaced(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"# caf\xe9\nalice\n")
    text, _st = read_list_file(str(f), "forward file")
    assert parse(text).addresses == ["alice@q.example"]
