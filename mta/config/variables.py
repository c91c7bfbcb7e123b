"""Expansion variables that come from the configuration and the process.

Every expansion starts from these (primary_hostname, qualify_domain, the
time of day, the caller ...); the message- and address-specific variables
are added by the code that expands in that context.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from mta import __version__
from mta.config.loader import Config
from mta.expand.expander import ExpandContext, time_variables

VariableValue = str | None | Callable[[], str | None]


def config_variables(config: Config) -> dict[str, VariableValue]:
    variables: dict[str, VariableValue] = {
        "primary_hostname": config.primary_hostname,
        "qualify_domain": config.qualify_domain,
        "qualify_recipient": config.qualify_recipient,
        "spool_directory": config.main.spool_directory,
        "version_number": __version__,
        "compile_number": "1",
        "caller_uid": str(os.getuid()),
        "caller_gid": str(os.getgid()),
    }
    variables.update(time_variables())
    return variables


def list_matcher(config: Config) -> Callable[[str, str, str], bool]:
    """The match_domain/match_address/... hook for the expander, bound to this config."""

    def match(list_kind: str, subject: str, list_text: str) -> bool:
        from mta.config.lists import match_list

        return match_list(list_kind, subject, list_text, list_context(config)).matched

    return match


def list_context(config: Config):  # type: ignore[no-untyped-def]
    from mta.config.lists import ListContext, local_interface_addresses

    return ListContext(
        primary_hostname=config.primary_hostname,
        named_list=config.named_list,
        local_addresses=local_interface_addresses,
        resolve_host=None,
        expand=None,
    )


def expansion_context(
    config: Config,
    extra: Mapping[str, VariableValue] | None = None,
    headers: Callable[[str], str | None] | None = None,
) -> ExpandContext:
    variables = config_variables(config)
    if extra:
        variables.update(extra)
    return ExpandContext(variables=variables, headers=headers, match_list=list_matcher(config))
