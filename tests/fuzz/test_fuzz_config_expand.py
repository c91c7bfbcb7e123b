"""Fuzzing the configuration loader and the string expander.

The loader gets whole configurations (the shipped one, the Exim sample, every complete one in
the manual) mutated; only ConfigError may come out of loading and of the -bV checks.  The
expander gets the expansion corpus (checked against Exim) mutated; only ExpansionError may come
out, and ${run} and ${readsocket} stay refused (the context's policy is the default: off).
Both within the time bound of tests/fuzz/fuzzing.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given

from mta.config.loader import load_config
from mta.errors import ConfigError, ExpansionError
from mta.expand.context import ExpandContext, HeaderLines
from mta.expand.expander import check, expand
from mta.runtime import check_config
from mta.taint import Tainted
from tests.fuzz.fuzzing import config_seeds, expression_seeds, fuzz_settings, inputs, surrogate_bytes, tally

# A failing example may be a long input: let hypothesis print it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

CONFIGS = config_seeds()
CONFIG_WORDS = ["\n", "\\\n", " = ", "=", "no_", "begin ", "acl", "routers", "transports", "directors", "retry",
                "rewrite", "authenticators", ":", "driver = ", "transport = ", "domainlist ", "hostlist ",
                ".include ", ".ifdef ", ".endif", "MACRO = ", "MACRO", "${", "}", "$", "\"", "\\", "#", "<", ";",
                "10M", "1h30m", "-1", "99999999999999999999", "\u00b2", "*", "+local_domains", "!"]


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """Where the configurations are written: one directory for all of hypothesis's examples
    (a function-scoped fixture would be shared by them anyway), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="mta-fuzz-config-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@fuzz_settings(ci_examples=25)
@given(inputs(CONFIGS, CONFIG_WORDS))
def test_configurations(work: Path, text: str) -> None:
    path = work / "mta.conf"
    path.write_bytes(surrogate_bytes(text))
    with tally("config loader").example():
        try:
            config = load_config(str(path))
            check_config(config)
        except ConfigError:
            pass


EXPRESSIONS = expression_seeds()
EXPAND_WORDS = ["${", "}", "{", "$", "\\", "\\N", "${if ", "${lookup", "${sg{", "${extract{", "${map{", "${reduce{",
                "${eval:", "${substr_", "${length_", "${hash_", "${nhash_", "${tr{", "${addresses:", "${local_part:",
                "match{", "eq{", "<", ">", ",", ":", "<,", "${lc:", "${base62:", "${mask:", "${ipv6norm:",
                "${listextract{", "${filter{", "${sort{", "${quote:", "${rxquote:", "${utf8clean:",
                "9223372036854775807",
                "-9223372036854775808", "0x", "(.*)*", "(a|a)+$", "\u00b2"]


HEADERS = ["Subject: hello\n", "From: Alice <a@example.com>\n", "To: b@x.example,\n c@y.example\n"]


def context() -> ExpandContext:
    return ExpandContext(
        variables={"local_part": Tainted("alice"), "domain": "example.com", "sender_address": Tainted("b@x.example"),
                   "primary_hostname": "mail.example.com", "acl_m0": "a:b:c", "value": None, "n": 7},
        headers=HeaderLines(lambda: HEADERS),
    )


@fuzz_settings(ci_examples=80)
@given(inputs(EXPRESSIONS, EXPAND_WORDS))
@example("${run{/bin/echo fuzz}}")
def test_expansions(text: str) -> None:
    with tally("string expander").example():
        try:
            expand(text, context())
        except ExpansionError:
            pass
        try:
            check(text)
        except ExpansionError:
            pass
