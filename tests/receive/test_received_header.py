"""The Received: header made without the expander (the default received_header_text's fast path).

reception.default_received_text builds what the default received_header_text
expands to, for speed.  Every combination of the values it reads must give
exactly the expander's text, and a value with a line break, CR or NUL must
leave the work to the expander (whose fold_message_data places such
characters by where they sit).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from mta.config.loader import load_config
from mta.config.main import DEFAULT_RECEIVED_HEADER_TEXT
from mta.config.variables import expansion_context
from mta.expand.expander import expand
from mta.message.headers import fold_message_data
from mta.receive.reception import default_received_text
from mta.taint import Tainted


def expander_text(config: object, variables: dict[str, str | None]) -> str:
    return str(fold_message_data(expand(DEFAULT_RECEIVED_HEADER_TEXT, expansion_context(config, variables))))


def test_the_fast_path_gives_the_expanders_text_for_every_combination(tmp_path: Path) -> None:
    conf = tmp_path / "mta.conf"
    conf.write_text(f"primary_hostname = mx.example.net\nspool_directory = {tmp_path}/spool\n")
    config = load_config(str(conf))
    choices: dict[str, tuple[str | None, ...]] = {
        "sender_rcvhost": (None, "", Tainted("client.example.org [192.0.2.7] (helo=pc)")),
        "sender_ident": (None, Tainted("ident-user")),
        "sender_helo_name": (None, Tainted("laptop.example")),
        "received_protocol": (None, "esmtpsa"),
        "tls_in_ver": (None, "TLS1.3"),
        "tls_in_cipher_std": (None, "TLS_AES_256_GCM_SHA384"),
        "sender_host_authenticated": (None, "plain"),
        "authenticated_id": (None, Tainted("alice")),
        "sender_address": (None, "", Tainted("bob@example.org")),
        "received_for": (None, Tainted("carol@example.com")),
    }
    names = list(choices)
    checked = 0
    for values in itertools.product(*(choices[name] for name in names)):
        variables = dict(zip(names, values, strict=True))
        variables.update(version_number="0.1.0", message_exim_id="1xZ0qu-000000005HX-3m60",
                         message_id="1xZ0qu-000000005HX-3m60")
        assert default_received_text(config.primary_hostname, variables) == expander_text(config, variables), variables
        checked += 1
    assert checked == 3 * 2**8 * 3


def test_a_line_break_in_a_value_goes_to_the_expander() -> None:
    for bad in ("a\nX-Forged: 1", "a\rb", "a\0b"):
        variables = {"sender_helo_name": Tainted(bad), "message_exim_id": "1xZ0qu-000000005HX-3m60"}
        assert default_received_text("mx.example.net", variables) is None
