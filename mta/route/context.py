"""RoutingContext: what directors and routers may know about the message being routed.

One context per message (or per -bt/-bv run).  Drivers use it to expand
their options with the right variables, to match lists, and to reach the
DNS resolver; they never touch the spool or the log.
"""

from __future__ import annotations

from mta import debug as _debug
from mta import record
from mta.config.loader import Config
from mta.config.variables import config_variables, expansion_settings, list_matcher
from mta.errors import DeferError, ExpansionError
from mta.expand.context import ExpandContext, ExpandPolicy
from mta.memo import cached_property
from mta.route.item import AddressItem
from mta.taint import is_tainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

if TYPE_CHECKING:
    from mta.config.lists import ListContext
    from mta.route.dns import DnsResolver


@record.dataclass
class RoutingContext:
    config: Config
    sender_address: str
    # None when delivering; "recipient" or "sender" when verifying (-bv, ACL verify).
    verify: str | None = None
    address_test: bool = False  # -bt: route as if delivering, but only report
    message_variables: dict[str, Any] = record.field(default_factory=dict)
    headers: Callable[[str], str | None] | None = None
    transports: Mapping[str, Any] = record.field(default_factory=dict)
    debug: Callable[[str], None] | None = None
    resolver_factory: Callable[[], DnsResolver] | None = None
    first_delivery: bool = False  # the first_delivery expansion condition
    manually_thawed: bool = False  # the filters' manually_thawed condition
    filter_sn: list[int] = record.field(default_factory=lambda: [0] * 10)  # $sn0..$sn9 from the system filter

    @cached_property
    def base_variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = config_variables(self.config)
        local, _, domain = self.sender_address.rpartition("@")
        variables.update(
            {
                "sender_address": self.sender_address,
                "return_path": self.sender_address,
                "sender_address_local_part": local if self.sender_address else None,
                "sender_address_domain": domain if self.sender_address else None,
            }
        )
        variables.update(self.message_variables)
        return variables

    def expand(
        self,
        text: str,
        item: AddressItem | None = None,
        extra: Mapping[str, Any] | None = None,
        policy: ExpandPolicy | None = None,
    ) -> str:
        """Expand an option's text for `item`; ExpansionError propagates to the caller.
        `policy` replaces the configuration's (a filter file's forbid_filter_* options)."""
        if "$" not in text and "\\" not in text and not is_tainted(text):
            return text  # the expander's own shortcut, without loading it (start-up: sendmail -t)
        from mta.expand.expander import expand

        variables = dict(self.base_variables)
        if item is not None:
            variables.update(item.variables())
        if extra:
            variables.update(extra)
        settings = self._settings if policy is None else {**self._settings, "policy": policy}
        return expand(
            text,
            ExpandContext(
                variables=variables,
                headers=self.headers,
                match_list=self._matcher,
                first_delivery=self.first_delivery,
                **settings,
            ),
        )

    def expand_or_defer(self, text: str, item: AddressItem | None, what: str) -> str | None:
        """Expand an option; a forced failure gives None, any other failure defers the address."""
        try:
            return self.expand(text, item)
        except ExpansionError as exc:
            if exc.forced:
                return None
            raise DeferError(f"failed to expand {what}: {exc.message}") from None

    @cached_property
    def _matcher(self) -> Callable[[str, str, str], bool]:
        return list_matcher(self.config)

    @property
    def policy(self) -> ExpandPolicy:
        """What ${run} and ${readsocket} may do under this configuration."""
        policy: ExpandPolicy = self._settings["policy"]
        return policy

    @cached_property
    def _settings(self) -> dict[str, Any]:
        return expansion_settings(self.config)

    @cached_property
    def list_context(self) -> ListContext:
        from mta.config.lists import ListContext, default_resolve_host, local_interface_addresses

        return ListContext(
            primary_hostname=self.config.primary_hostname,
            named_list=self.config.named_list,
            local_addresses=local_interface_addresses,
            resolve_host=default_resolve_host,
            expand=None,
        )

    @cached_property
    def resolver(self) -> DnsResolver:
        if self.resolver_factory is not None:
            return self.resolver_factory()
        return make_resolver(self.config)

    def trace(self, text: str) -> None:
        """A routing trace line: to the -bt -v / -bh reader if there is one, else to -d+route."""
        if self.debug is not None:
            self.debug(text)
        elif "route" in _debug.active:
            _debug.write(text)


def make_resolver(config: Config) -> DnsResolver:
    """A resolver configured by dns_servers / dns_retrans / dns_retry."""
    from mta.errors import ConfigError
    from mta.route.dns import DnsResolver, ResolverSettings, parse_dns_servers
    from mta.values import split_list

    try:
        servers = parse_dns_servers(split_list(config.main.dns_servers))
    except ValueError as exc:
        raise ConfigError(str(exc), config.path) from None
    settings = ResolverSettings(servers=servers)
    if config.main.dns_retrans:
        settings = record.replace(settings, timeout=float(config.main.dns_retrans))
    if config.main.dns_retry:
        settings = record.replace(settings, retries=config.main.dns_retry)
    return DnsResolver(settings)
