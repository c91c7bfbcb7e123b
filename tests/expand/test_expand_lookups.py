"""Single-key lookups against real files: lsearch, wildlsearch, dsearch, lmdb."""

from __future__ import annotations

import os
from pathlib import Path

import lmdb
import pytest

from mta.errors import ExpansionError
from mta.expand import LookupDeferError, build_lmdb_from_lsearch, lookup, lookup_types
from mta.expand.lookups.lsearch import parse_lsearch
from mta.taint import Tainted, is_tainted
from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody

LSEARCH = """\
# comment line
postmaster: root
Root:  admin@example.org<TRAILING>
tab\tdata after tab
spaced   :   colon after spaces
"quoted:key": quoted data
"esc\\"aped" : escaped quote
"two words"  two words data
empty:
folded: first,
  second,

# a comment inside a continuation is skipped
\tthird
nocolon
after: folded ends here
dup: first dup
DUP: second dup
bare-continued:
    only continuation
*: star default
*@example.com: star at example.com
""".replace("<TRAILING>", " \t ")

LSEARCH_CASES = [
    ("colon", "postmaster", "root"),
    ("caseless-key", "ROOT", "admin@example.org"),
    ("trailing-space-removed", "root", "admin@example.org"),
    ("tab-terminates-key", "tab", "data after tab"),
    ("spaces-then-colon", "spaced", "colon after spaces"),
    ("quoted-key-with-colon", "quoted:key", "quoted data"),
    ("quoted-key-escape", 'esc"aped', "escaped quote"),
    ("quoted-key-space", "two words", "two words data"),
    ("empty-data", "empty", ""),
    ("continuation-lines", "folded", "first, second, third"),
    ("key-without-data", "nocolon", ""),
    ("after-continuation", "after", "folded ends here"),
    ("first-match-wins", "dup", "first dup"),
    ("continuation-only", "bare-continued", " only continuation"),
    ("not-found", "nobody", None),
    ("comment-not-a-key", "#", None),
    ("continuation-not-a-key", "second,", None),
    ("partial-key-no-match", "post", None),
]


@pytest.fixture
def lsearch_file(tmp_path: Path) -> str:
    path = tmp_path / "table"
    path.write_text(LSEARCH)
    return str(path)


@pytest.mark.parametrize(("key", "want"), [c[1:] for c in LSEARCH_CASES], ids=[c[0] for c in LSEARCH_CASES])
def test_lsearch(key: str, want: str | None, lsearch_file: str) -> None:
    got = lookup("lsearch", lsearch_file, key)
    assert got == want, f"lsearch {key!r}: got {got!r}, want {want!r}"


STAR_CASES = [
    ("star-exact-first", "lsearch*", "postmaster", "root"),
    ("star-default", "lsearch*", "nobody", "star default"),
    ("plain-no-default", "lsearch", "nobody", None),
    ("star-at-domain", "lsearch*@", "someone@example.com", "star at example.com"),
    ("star-at-domain-caseless", "lsearch*@", "someone@EXAMPLE.com", "star at example.com"),
    ("star-at-falls-to-star", "lsearch*@", "someone@other.org", "star default"),
    ("star-at-no-at", "lsearch*@", "someone", "star default"),
    ("star-at-exact", "lsearch*@", "postmaster", "root"),
    ("star-only-no-domain-try", "lsearch*", "x@example.com", "star default"),
]


@pytest.mark.parametrize(
    ("search_type", "key", "want"), [c[1:] for c in STAR_CASES], ids=[c[0] for c in STAR_CASES]
)
def test_lsearch_defaults(search_type: str, key: str, want: str | None, lsearch_file: str) -> None:
    got = lookup(search_type, lsearch_file, key)
    assert got == want, f"{search_type} {key!r}: got {got!r}, want {want!r}"


def test_parse_lsearch_order_and_keys() -> None:
    got = parse_lsearch("a: 1\n# c\nb 2\n  cont\n\"c d\": 3\n")
    want = [("a", "1"), ("b", "2 cont"), ("c d", "3")]
    assert got == want, f"got {got!r}, want {want!r}"


def test_crlf_file(tmp_path: Path) -> None:
    path = tmp_path / "dos"
    path.write_bytes(b"a: one\r\nb: two\r\n  more\r\n")
    assert lookup("lsearch", str(path), "b") == "two more"
    assert lookup("lsearch", str(path), "a") == "one"


def test_non_utf8_bytes_do_not_break_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes(b"caf\xe9: x\nok: fine\n")
    assert lookup("lsearch", str(path), "ok") == "fine"


def test_cache_sees_changes(tmp_path: Path) -> None:
    path = tmp_path / "changing"
    path.write_text("key: old\n")
    assert lookup("lsearch", str(path), "key") == "old"
    # Same size, rewritten: the inode/mtime stamp must still notice it.
    tmp = tmp_path / "changing.new"
    tmp.write_text("key: new\n")
    os.replace(tmp, path)
    got = lookup("lsearch", str(path), "key")
    assert got == "new", f"after rewrite: got {got!r}, want 'new'"
    path.write_text("key: newer and longer\n")
    got = lookup("lsearch", str(path), "key")
    assert got == "newer and longer", f"after in-place edit: got {got!r}"


WILD = """\
# wildcards and regexes, first match wins
exact.example: exact
*.wild.example: star suffix
^mail\\d+\\.example$: regex
^[a-z]+@Regex\\.Org$: regex address
*: catch all
"""

WILD_CASES = [
    ("literal", "exact.example", "exact"),
    ("literal-caseless", "EXACT.example", "exact"),
    ("star-suffix", "a.b.wild.example", "star suffix"),
    ("star-suffix-caseless", "A.WILD.EXAMPLE", "star suffix"),
    ("regex", "mail12.example", "regex"),
    ("regex-caseless", "bob@regex.org", "regex address"),
    ("regex-anchored", "xmail1.example", "catch all"),
    ("catch-all", "anything.else", "catch all"),
]


@pytest.mark.parametrize("search_type", ["wildlsearch", "nwildlsearch"])
@pytest.mark.parametrize(("key", "want"), [c[1:] for c in WILD_CASES], ids=[c[0] for c in WILD_CASES])
def test_wildlsearch(search_type: str, key: str, want: str, tmp_path: Path) -> None:
    path = tmp_path / "wild"
    path.write_text(WILD)
    got = lookup(search_type, str(path), key)
    assert got == want, f"{search_type} {key!r}: got {got!r}, want {want!r}"


def test_wildlsearch_not_found_and_literal_lsearch(tmp_path: Path) -> None:
    path = tmp_path / "wild"
    path.write_text("*.example: x\n")
    assert lookup("nwildlsearch", str(path), "example.org") is None
    # plain lsearch takes "*.example" literally
    assert lookup("lsearch", str(path), "a.example") is None
    assert lookup("lsearch", str(path), "*.example") == "x"


def test_wildlsearch_bad_regex(tmp_path: Path) -> None:
    path = tmp_path / "wild"
    path.write_text("^(unclosed: x\n")
    with pytest.raises(ExpansionError, match="bad regular expression"):
        lookup("wildlsearch", str(path), "a")


@pytest.fixture
def mail_dir(tmp_path: Path) -> str:
    directory = tmp_path / "mail"
    directory.mkdir()
    (directory / "bob").write_text("")
    (directory / "Carol").mkdir()
    (directory / "link").symlink_to("/nonexistent/target")
    (tmp_path / "outside").write_text("")
    return str(directory)


DSEARCH_CASES = [
    ("file", "bob", "bob"),
    ("directory", "Carol", "Carol"),
    ("case-sensitive", "carol", None),
    ("dangling-symlink-is-an-entry", "link", "link"),
    ("absent", "dave", None),
    ("slash", "../outside", None),
    ("subpath", "Carol/x", None),
    ("dot", ".", None),
    ("dotdot", "..", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("key", "want"), [c[1:] for c in DSEARCH_CASES], ids=[c[0] for c in DSEARCH_CASES])
def test_dsearch(key: str, want: str | None, mail_dir: str) -> None:
    got = lookup("dsearch", mail_dir, key)
    assert got == want, f"dsearch {key!r}: got {got!r}, want {want!r}"


def test_dsearch_result_untainted(mail_dir: str) -> None:
    got = lookup("dsearch", mail_dir, Tainted("bob"))
    assert got == "bob" and not is_tainted(got), f"got {got!r}"


def test_lsearch_result_untainted(lsearch_file: str) -> None:
    got = lookup("lsearch", lsearch_file, Tainted("postmaster"))
    assert got == "root" and not is_tainted(got), f"got {got!r}"


def test_dsearch_on_a_file_defers(lsearch_file: str) -> None:
    with pytest.raises(LookupDeferError, match="Not a directory"):
        lookup("dsearch", lsearch_file, "x")


@pytest.fixture
def lmdb_file(tmp_path: Path, lsearch_file: str) -> tuple[str, int]:
    target = str(tmp_path / "table.lmdb")
    count = build_lmdb_from_lsearch(lsearch_file, target)
    return target, count


LMDB_CASES = [
    ("colon", "postmaster", "root"),
    ("lowercased-on-build", "root", "admin@example.org"),
    ("caseless-lookup", "ROOT", "admin@example.org"),
    ("quoted-key", "quoted:key", "quoted data"),
    ("continuation", "folded", "first, second, third"),
    ("first-dup-wins", "dup", "first dup"),
    ("empty-data", "empty", ""),
    ("missing", "nobody", None),
]


@pytest.mark.parametrize(("key", "want"), [c[1:] for c in LMDB_CASES], ids=[c[0] for c in LMDB_CASES])
def test_lmdb(key: str, want: str | None, lmdb_file: tuple[str, int]) -> None:
    got = lookup("lmdb", lmdb_file[0], key)
    assert got == want, f"lmdb {key!r}: got {got!r}, want {want!r}"


def test_lmdb_star_defaults(lmdb_file: tuple[str, int]) -> None:
    assert lookup("lmdb*", lmdb_file[0], "nobody") == "star default"
    assert lookup("lmdb*@", lmdb_file[0], "x@example.com") == "star at example.com"


def test_lmdb_build_counts_distinct_keys(lmdb_file: tuple[str, int], lsearch_file: str) -> None:
    target, count = lmdb_file
    keys = {key.lower() for key, _ in parse_lsearch(Path(lsearch_file).read_text())}
    assert count == len(keys), f"got {count} records, want {len(keys)}"
    env = lmdb.open(target, subdir=False, readonly=True, lock=False)
    try:
        assert env.stat()["entries"] == count
    finally:
        env.close()


def test_lmdb_build_is_atomic_and_replaces(tmp_path: Path) -> None:
    source = tmp_path / "aliases"
    target = tmp_path / "aliases.lmdb"
    source.write_text("a: one\n")
    assert build_lmdb_from_lsearch(str(source), str(target)) == 1
    # A leftover from a crashed earlier build must not get in the way.
    (tmp_path / "aliases.lmdb.tmp").write_text("junk")
    source.write_text("a: two\nb: three\n")
    assert build_lmdb_from_lsearch(str(source), str(target)) == 2
    assert lookup("lmdb", str(target), "a") == "two"
    assert lookup("lmdb", str(target), "b") == "three"
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["aliases", "aliases.lmdb"], f"got files {leftovers}"


def test_lmdb_large_build_grows_map(tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.write_text("".join(f"user{i}: {'x' * 200}{i}\n" for i in range(5000)))
    target = tmp_path / "big.lmdb"
    assert build_lmdb_from_lsearch(str(source), str(target)) == 5000
    assert lookup("lmdb", str(target), "user4999") == "x" * 200 + "4999"


def test_lmdb_build_refuses_overlong_key(tmp_path: Path) -> None:
    source = tmp_path / "bad"
    source.write_text("k" * 600 + ": x\n")
    with pytest.raises(ExpansionError, match="longer than 511 bytes"):
        build_lmdb_from_lsearch(str(source), str(tmp_path / "bad.lmdb"))
    assert not (tmp_path / "bad.lmdb").exists()


def test_lmdb_not_a_database_defers(lsearch_file: str) -> None:
    with pytest.raises(LookupDeferError):
        lookup("lmdb", lsearch_file, "x")


MISSING = [
    ("lsearch", "failed to open"),
    ("lsearch*", "failed to open"),
    ("wildlsearch", "failed to open"),
    ("nwildlsearch", "failed to open"),
    ("dsearch", "failed to open"),
    ("lmdb", "failed to open"),
]


@pytest.mark.parametrize(("search_type", "message"), MISSING, ids=[c[0] for c in MISSING])
def test_missing_file_defers(search_type: str, message: str, tmp_path: Path) -> None:
    path = str(tmp_path / "does-not-exist")
    with pytest.raises(LookupDeferError) as info:
        lookup(search_type, path, "key")
    assert message in info.value.message, f"{search_type}: got {info.value.message!r}"
    assert info.value.path == path
    assert info.value.errno == 2 or search_type == "lmdb", f"errno {info.value.errno}"
    assert isinstance(info.value, ExpansionError) and not info.value.forced


def test_unreadable_file_defers(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A file the lookup may not read defers with the reason.  Root reads a mode-000 file, so as
    root the lookup runs in `mta -be` as nobody; otherwise in this process."""
    if os.geteuid() != 0:
        path = tmp_path / "secret"
        path.write_text("a: b\n")
        path.chmod(0)
        with pytest.raises(LookupDeferError, match="Permission denied"):
            lookup("lsearch", str(path), "a")
        return
    nobody: Nobody = request.getfixturevalue("nobody")
    env: MtaEnv = request.getfixturevalue("open_env")
    secret = env.root / "secret"
    secret.write_text("a: b\n")
    secret.chmod(0)
    readable = env.root / "readable"
    readable.write_text("a: b\n")
    readable.chmod(0o644)
    good = nobody.run(env, "-be", f"${{lookup{{a}}lsearch{{{readable}}}}}")
    assert (good.returncode, good.stdout) == (0, "b\n"), good.stderr  # the same lookup works when readable
    result = nobody.run(env, "-be", f"${{lookup{{a}}lsearch{{{secret}}}}}")
    # How -be reports a failed expansion (stream, exit status) is -be's business; here what
    # matters is that the lookup failed, saying why, and did not answer as if the key were absent.
    said = result.stdout + result.stderr
    assert "Permission denied" in said and str(secret) in said, said
    assert "b" not in result.stdout.split()


def test_build_from_missing_source_defers(tmp_path: Path) -> None:
    with pytest.raises(LookupDeferError):
        build_lmdb_from_lsearch(str(tmp_path / "none"), str(tmp_path / "none.lmdb"))


def test_lookup_types() -> None:
    want = ["dsearch", "iplsearch", "lmdb", "lsearch", "nwildlsearch", "passwd", "wildlsearch"]
    assert lookup_types() == want, f"got {lookup_types()}, want {want}"


BAD_TYPES = [
    ("unknown", "xyz", 'unknown lookup type "xyz"'),
    ("unknown-star", "xyz*", 'unknown lookup type "xyz"'),
    ("bad-partial", "partial+lsearch", 'format error in lookup type "partial+lsearch"'),
    ("not-shipped", "dnsdb", 'lookup type "dnsdb" is not available'),
    ("partial-query-style", "partial-passwd", '"partial" is not permitted for lookup type "passwd"'),
]


@pytest.mark.parametrize(("search_type", "message"), [c[1:] for c in BAD_TYPES], ids=[c[0] for c in BAD_TYPES])
def test_bad_lookup_type(search_type: str, message: str, lsearch_file: str) -> None:
    with pytest.raises(ExpansionError) as info:
        lookup(search_type, lsearch_file, "x")
    assert message in info.value.message, f"got {info.value.message!r}, want {message!r}"


def test_tainted_filename_refused(lsearch_file: str) -> None:
    with pytest.raises(ExpansionError, match="Tainted filename"):
        lookup("lsearch", Tainted(lsearch_file), "postmaster")
