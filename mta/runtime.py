"""Assembling a loaded configuration into working parts.

`load_config` (floor 2) reads the file; this module turns its driver
sections into driver instances through the registries of floor 3, checks
the links between them (a director's transport must exist), and makes the
spool and logger a process uses.  Every problem is a ConfigError naming the
file and line.
"""

from __future__ import annotations

import sys

from mta import record
from mta.config.loader import Config, DriverSpec
from mta.config.options import build_options, format_all
from mta.drivers import Driver, load_driver_class
from mta.errors import ConfigError
from mta.log import Logger, parse_selector
from mta.memo import cached_property
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


# section -> (the module with its registry of driver names, the registry's name there); only the
# sections a configuration has are imported (a sendmail -t has no directors or authenticators).
_REGISTRIES = {
    "directors": ("mta.route.directors", "DIRECTORS"),
    "routers": ("mta.route.routers", "ROUTERS"),
    "transports": ("mta.transports", "TRANSPORTS"),
    "authenticators": ("mta.auth", "AUTHENTICATORS"),
}


def _registry(section: str) -> Mapping[str, str]:
    module_name, name = _REGISTRIES[section]
    __import__(module_name)
    return getattr(sys.modules[module_name], name)  # type: ignore[no-any-return]


def driver_class(spec: DriverSpec) -> type[Driver]:
    registry = _registry(spec.section)
    cls = load_driver_class(registry, spec.driver or "")
    if cls is None:
        known = ", ".join(sorted(registry)) or "none"
        raise ConfigError(
            f'{spec.section[:-1]} "{spec.name}": unknown driver "{spec.driver}" (known: {known})',
            spec.path,
            spec.line,
        )
    return cls


def build_driver(spec: DriverSpec) -> tuple[Driver, set[str]]:
    cls = driver_class(spec)
    options, hidden = build_options(cls.options_class, spec.settings, f'{spec.section[:-1]} "{spec.name}"')
    return cls(spec.name, options, (spec.path, spec.line)), hidden


def driver_option_lines(config: Config, spec: DriverSpec, admin: bool) -> list[str]:
    driver, hidden = build_driver(spec)
    return format_all(driver.options, hidden, show_hidden=admin)


@record.dataclass
class Runtime:
    """A configuration made ready for use by one process."""

    config: Config
    directors: list[Any]
    routers: list[Any]
    transports: dict[str, Any]
    authenticators: list[Any]
    log_selectors: frozenset[str]
    verbose: bool = False
    # mua_wrapper: a log that cannot be written is not worth a word on stderr.
    quiet_log_failures: bool = False
    # The daemon's delivery workers: (uid, gid) the remote part of a delivery runs as.
    remote_identity: tuple[int, int] | None = None

    @cached_property
    def logger(self) -> Logger:
        m = self.config.main
        return Logger(
            m.spool_directory,
            split_list(m.log_file_path),
            self.log_selectors,
            log_timezone=m.log_timezone,
            write_rejectlog=m.write_rejectlog,
            stderr_echo=self.verbose,
            quiet_failures=self.quiet_log_failures,
            syslog_facility=m.syslog_facility,
            syslog_processname=m.syslog_processname,
            syslog_duplication=m.syslog_duplication,
            syslog_timestamp=m.syslog_timestamp,
        )

    @cached_property
    def retry_rules(self) -> list[Any]:
        """The rules of ``begin retry`` (mta.hints.retry.RetryRule), parsed once per process."""
        from mta.hints.retry import parse_retry_rules

        return parse_retry_rules(self.config.retry_rules)

    @cached_property
    def rewrite_rules(self) -> list[Any]:
        """The rules of ``begin rewrite`` (mta.message.rewrite.RewriteRule), parsed once per process."""
        if not self.config.rewrite_rules:
            return []
        from mta.message.rewrite import parse_rules

        return parse_rules(self.config.rewrite_rules)

    @cached_property
    def spool(self) -> Any:
        from mta.spool.store import Spool

        return Spool(self.config.main.spool_directory, split=self.config.main.split_spool_directory,
                     spare_files=self.config.main.spool_spare_files)


def build_runtime(config: Config, verbose: bool = False, quiet_log_failures: bool = False) -> Runtime:
    """Instantiate and cross-check every driver; raise ConfigError on any problem."""
    built: dict[str, list[Driver]] = {}
    for section in ("directors", "routers", "transports", "authenticators"):
        built[section] = [build_driver(spec)[0] for spec in config.drivers[section]]
    try:
        selectors = parse_selector(config.main.log_selector)
    except ValueError as exc:
        raise ConfigError(f"log_selector: {exc}", config.path) from None
    runtime = Runtime(
        config=config,
        directors=built["directors"],
        routers=built["routers"],
        transports={t.name: t for t in built["transports"]},
        authenticators=built["authenticators"],
        log_selectors=selectors,
        verbose=verbose,
        quiet_log_failures=quiet_log_failures,
    )
    for driver in (*runtime.directors, *runtime.routers, *runtime.transports.values(), *runtime.authenticators):
        driver.check(runtime)
    if not config.main.mua_wrapper:
        # mua_wrapper never reads or writes retry data, so its rules are not parsed.
        _check_retry_rules(config)
    _check_rewrite_rules(runtime)
    return runtime


def _check_rewrite_rules(runtime: Runtime) -> None:
    """``begin rewrite`` and each transport's headers_rewrite: a bad rule stops start-up."""
    runtime.rewrite_rules  # noqa: B018 - parsed (and checked) now, not at the first message
    for transport in runtime.transports.values():
        text = transport.options.headers_rewrite
        if text:
            from mta.message.rewrite import parse_headers_rewrite

            try:
                parse_headers_rewrite(text)
            except ValueError as exc:
                path, line = transport.source
                raise ConfigError(f'transport "{transport.name}": headers_rewrite: {exc}', path, line) from None


def _check_retry_rules(config: Config) -> None:
    from mta.hints.retry import parse_retry_rules

    parse_retry_rules(config.retry_rules)
    _check_delay_warning_condition(config)


def _check_delay_warning_condition(config: Config) -> None:
    """delay_warning_condition must at least parse: a typo found at start-up, not at the first warning."""
    from mta.errors import ExpansionError
    from mta.expand.expander import check

    text = config.main.delay_warning_condition
    if text:
        try:
            check(text)
        except ExpansionError as exc:
            raise ConfigError(f"delay_warning_condition: {exc.message}", config.path) from None


def check_config(config: Config) -> list[str]:
    """Everything -bV checks; returns summary lines of the drivers in use."""
    runtime = build_runtime(config)
    lines = []
    for label, drivers in (
        ("Directors", runtime.directors),
        ("Routers", runtime.routers),
        ("Transports", list(runtime.transports.values())),
        ("Authenticators", runtime.authenticators),
    ):
        if drivers:
            lines.append(f"{label}: " + " ".join(f"{d.name}({d.options.driver})" for d in drivers))
    return lines
