"""`mta -bP`: print options as Exim does (all, named, +lists, config_file, hidden values)."""

from __future__ import annotations

import os

import pytest

from mta.config.main import MainOptions
from mta.drivers import option_specs
from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody

# shared/ sits beside the checkout (CI clones main with shared/ next to it).
from tests.support.samples import SAMPLES

MAIN_NAMES = sorted(name for name, _spec, _default, _owner in option_specs(MainOptions))


def test_all_main_options(mta_env: MtaEnv) -> None:
    mta_env.write_config("receive_timeout = 1h30m\nmessage_size_limit = 10M\nqueue_only\n")
    result = mta_env.run("-bP")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    # One line per option, in name order; booleans print as name / no_name.
    names = [line.split(" = ")[0].removeprefix("no_") if " = " not in line else line.split(" = ")[0] for line in lines]
    assert names == MAIN_NAMES
    for want in [
        "queue_only",  # set true
        "no_message_reject_nul",  # false boolean
        "message_logs",  # true by default
        "message_size_limit = 10M",
        "header_maxsize = 1M",
        "bounce_return_size_limit = 100K",
        "receive_timeout = 1h30m",
        "delay_warning = 1d",
        "ignore_bounce_errors_after = 10w",
        "auto_thaw = 0s",
        "errors_reply_to = ",  # unset string
        "timezone = ",
        "recipients_max = 50000",
        "primary_hostname = mail.example.com",
        "qualify_recipient = example.com",  # defaults to qualify_domain
        "local_domains = example.com",  # from the named list
        f"spool_directory = {mta_env.spool}",
    ]:
        assert want in lines, want


def test_named_options_in_the_order_asked(mta_env: MtaEnv) -> None:
    result = mta_env.run("-bP", "qualify_domain", "queue_only", "primary_hostname")
    assert (result.returncode, result.stdout) == (
        0,
        "qualify_domain = example.com\nno_queue_only\nprimary_hostname = mail.example.com\n",
    )


def test_computed_defaults(mta_env: MtaEnv) -> None:
    mta_env.write_config(base="spool_directory = {spool}\nqualify_domain = q.example\n")
    result = mta_env.run("-bP", "qualify_domain", "qualify_recipient", "local_domains")
    assert result.stdout == "qualify_domain = q.example\nqualify_recipient = q.example\nlocal_domains = @\n"


def test_named_list(mta_env: MtaEnv) -> None:
    mta_env.write_config("hostlist relay_from_hosts = <; 127.0.0.1 ; ::1\n")
    result = mta_env.run("-bP", "+local_domains", "+relay_from_hosts")
    assert (result.returncode, result.stdout) == (
        0,
        "domainlist local_domains = example.com\nhostlist relay_from_hosts = <; 127.0.0.1 ; ::1\n",
    )


def test_config_file(mta_env: MtaEnv) -> None:
    result = mta_env.run("-bP", "config_file")
    assert (result.returncode, result.stdout) == (0, f"config_file = {mta_env.config}\n")


def test_config_file_is_absolute_and_named_as_asked(mta_env: MtaEnv) -> None:
    relative = os.path.relpath(mta_env.config, mta_env.root)
    result = mta_env.run("-C", relative, "-bP", "configure_file", "config_file", config=False, cwd=mta_env.root)
    assert (result.returncode, result.stdout) == (
        0,
        f"configure_file = {mta_env.config}\nconfig_file = {mta_env.config}\n",
    )


def test_config_prints_the_file_without_comments(mta_env: MtaEnv) -> None:
    mta_env.write_config("# a comment\n\nqueue_only\n")
    result = mta_env.run("-bP", "config")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == "queue_only"
    assert "# a comment" not in result.stdout


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (("nosuch_option",), 'mta: unknown option "nosuch_option"'),
        (("+nosuch_list",), "mta: no named list called nosuch_list"),
        (("router", "nosuch"), "mta: router nosuch not found"),
        (("transport",), "mta: -bP transport needs the name of a transport"),
    ],
    ids=["option", "named list", "router", "kind without name"],
)
def test_unknown_names_exit_1(mta_env: MtaEnv, args: tuple[str, ...], want: str) -> None:
    result = mta_env.run("-bP", "queue_only", *args)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["no_queue_only"]
    assert result.stderr.splitlines() == [want]


def test_hidden_option_shown_to_root(mta_env: MtaEnv) -> None:
    mta_env.write_config("hide bi_command = /usr/local/bin/secret-token\n")
    result = mta_env.run("-bP", "bi_command")
    assert result.stdout == "bi_command = /usr/local/bin/secret-token\n"
    assert "bi_command = /usr/local/bin/secret-token" in mta_env.run("-bP").stdout.splitlines()


def test_hidden_option_masked_for_non_admin(open_env: MtaEnv, nobody: Nobody) -> None:
    open_env.write_config("hide bi_command = /usr/local/bin/secret-token\nrecipients_max = 9\n")
    open_env.config.chmod(0o644)
    for args in (("-bP", "bi_command"), ("-bP",)):
        result = nobody.run(open_env, *args)
        assert result.returncode == 0, result.stderr
        assert "secret-token" not in result.stdout
        assert "bi_command = <value not displayable>" in result.stdout.splitlines()
    # Options that are not hidden are shown to anyone.
    assert nobody.run(open_env, "-bP", "recipients_max").stdout == "recipients_max = 9\n"


def test_shape_of_exim_sample(mta_env: MtaEnv) -> None:
    """The lines of exim-samples/bP-options.txt for the options we share, from the same settings."""
    sample = (SAMPLES / "bP-options.txt").read_text().splitlines()
    command = sample[0]
    names = command.split("-bP ", 1)[1].split()
    spool, logs = "/srv/exim-samples/spool", "/srv/exim-samples/log/%slog"
    mta_env.write_config(
        base=f"primary_hostname = mail.example.com\nqualify_domain = example.com\nspool_directory = {spool}\n"
        f"log_file_path = {logs}\ndelay_warning = 10s\nmessage_size_limit = 10M\n"
    )
    # The banner and Received: text name the program: ours says mta where Exim says Exim.
    shared = [n for n in names if n in MAIN_NAMES and n not in ("received_header_text", "smtp_banner")]
    assert len(shared) >= 7
    want = [line for line in sample[1:] if line.split(" = ")[0].removeprefix("no_") in shared]
    result = mta_env.run("-bP", *shared)
    assert (result.returncode, result.stdout.splitlines()) == (0, want)


TRANSPORT = (
    "begin transports\n\nlocal_mbox:\n  driver = appendfile\n  file = /var/mail/$local_part\n"
    "  mode = 0640\n  hide group = mailgrp-secret\n"
)


def _needs_appendfile() -> None:
    from mta.transports import TRANSPORTS

    assert "appendfile" in TRANSPORTS, "appendfile must be a registered transport"


def test_driver_instance_options(mta_env: MtaEnv) -> None:
    """`-bP transport NAME`: generic options first, then the driver's own; octal as 0640."""
    _needs_appendfile()
    mta_env.write_config(TRANSPORT)
    result = mta_env.run("-bP", "transport", "local_mbox")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    for want in ("driver = appendfile", "file = /var/mail/$local_part", "mode = 0640", "group = mailgrp-secret"):
        assert want in lines, want
    assert lines.index("driver = appendfile") < lines.index("mode = 0640"), "generic options come first"
    every = mta_env.run("-bP", "transports").stdout.splitlines()
    assert every[0] == "local_mbox:" and "  mode = 0640" in every and every[-1] == ""


def test_driver_hidden_option_masked_for_non_admin(open_env: MtaEnv, nobody: Nobody) -> None:
    _needs_appendfile()
    open_env.write_config(TRANSPORT)
    result = nobody.run(open_env, "-bP", "transport", "local_mbox")
    assert result.returncode == 0, result.stderr
    assert "group = <value not displayable>" in result.stdout.splitlines()
    assert "mailgrp-secret" not in result.stdout
    assert "mode = 0640" in result.stdout.splitlines()
