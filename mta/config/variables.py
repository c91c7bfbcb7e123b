"""Expansion variables and settings that come from the configuration and the process.

Every expansion starts from these (primary_hostname, qualify_domain, the
time of day, the caller ...); the message- and address-specific variables
are added by the code that expands in that context.  `expansion_settings()`
gives the rest of an ExpandContext a configuration decides: what ${run} and
${readsocket} may do, the environment ${env} sees, and the named lists for
${listnamed:}.
"""

from __future__ import annotations

import os
import sys
import time

from mta import __version__
from mta.config.loader import Config
from mta.expand.context import ExpandContext, ExpandPolicy, time_variables
from mta.memo import lru_cache
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mta.log import Logger
    from mta.message.rewrite import RewriteEnv

    VariableValue = str | None | Callable[[], str | None]

# Exim's $initial_cwd: where the process was started, before any chdir.
_INITIAL_CWD = os.getcwd() if os.path.isdir(".") else "/"
_LIST_TYPES = {"domain": "domainlist", "host": "hostlist", "address": "addresslist", "localpart": "localpartlist"}


# The last configuration's variables (with the ids they were made under) and the last second's
# time variables: every message's Received: header and every ACL run start from them, and making
# them afresh (an abspath, two time conversions, a dozen formats) was a measurable part of each.
_made_for: tuple[Config, int, int, dict[str, VariableValue]] | None = None
_clock: tuple[int, dict[str, str]] | None = None


def config_variables(config: Config) -> dict[str, VariableValue]:
    """A new dict of the configuration's and the process's variables and the time of day."""
    global _made_for, _clock
    uid, gid = os.getuid(), os.getgid()  # ($caller_uid ... change when a process drops privileges)
    made = _made_for
    if made is None or made[0] is not config or made[1] != uid or made[2] != gid:
        made = _made_for = (config, uid, gid, _config_variables(config))
    now = time.time()
    clock = _clock
    if clock is None or clock[0] != int(now):
        clock = _clock = (int(now), time_variables(int(now)))
    variables = dict(made[3])
    variables.update(clock[1])
    variables["tod_epoch_l"] = str(int(now * 1_000_000))  # (the only one finer than the second)
    return variables


def _config_variables(config: Config) -> dict[str, VariableValue]:
    main = config.main
    uid, gid = mta_ids(main.mta_user, main.mta_group)
    spool = main.spool_directory
    variables: dict[str, VariableValue] = {
        "primary_hostname": config.primary_hostname,
        "smtp_active_hostname": config.primary_hostname,
        "qualify_domain": config.qualify_domain,
        "qualify_recipient": config.qualify_recipient,
        "spool_directory": spool,
        "version_number": __version__,
        "exim_version": __version__,
        "compile_number": "1",
        "compile_date": _compile_date(),
        "config_file": config.path,
        "config_dir": os.path.dirname(config.path) if config.path else None,
        "exim_path": _program_path(),
        "initial_cwd": _INITIAL_CWD,
        "caller_uid": str(os.getuid()),
        "caller_gid": str(os.getgid()),
        "originator_uid": str(os.getuid()),
        "originator_gid": str(os.getgid()),
        "exim_uid": str(uid) if uid is not None else None,
        "exim_gid": str(gid) if gid is not None else None,
        "bounce_return_size_limit": str(main.bounce_return_size_limit),
        "return_size_limit": str(main.bounce_return_size_limit),
        "pid": lambda: str(os.getpid()),
        "load_average": _load_average,
        "spool_space": lambda: _space(spool, inodes=False),
        "spool_inodes": lambda: _space(spool, inodes=True),
        "log_space": lambda: _space(_log_directory(config), inodes=False),
        "log_inodes": lambda: _space(_log_directory(config), inodes=True),
        "queue_size": lambda: _queue_size(spool),
    }
    return variables


@lru_cache(maxsize=8)
def mta_ids(user: str, group: str) -> tuple[int | None, int | None]:
    """uid and gid of mta_user / mta_group (numbers allowed), None where unknown."""
    import grp
    import pwd

    uid = gid = None
    try:
        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if user.isdigit():
            uid = int(user)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            gid = int(group)
    return uid, gid


@lru_cache(maxsize=1)
def _compile_date() -> str:
    """When this mta was installed (the package's modification time), in Exim's format."""
    import time

    stamp = os.stat(os.path.dirname(os.path.abspath(__file__))).st_mtime
    return time.strftime("%d-%b-%Y %H:%M:%S", time.localtime(stamp))


def _program_path() -> str:
    program = sys.argv[0] if sys.argv and sys.argv[0] else "mta"
    return os.path.abspath(program) if os.sep in program else program


def _load_average() -> str:
    try:
        return str(int(os.getloadavg()[0] * 1000))
    except OSError:
        return "-1"


def _space(path: str, inodes: bool) -> str:
    """Exim's receive_statvfs(): free KB (or inodes) for non-root users; -1 if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return "-1"
    if inodes:
        return str(st.f_favail)
    return str(st.f_bavail * st.f_frsize // 1024)


def _log_directory(config: Config) -> str:
    paths = [p for p in split_list(config.main.log_file_path) if p and p != "syslog"]
    return os.path.dirname(paths[0]) if paths else os.path.join(config.main.spool_directory, "log")


def _queue_size(spool: str) -> str:
    count = 0
    for _root, _dirs, files in os.walk(os.path.join(spool, "input")):
        count += sum(1 for name in files if name.endswith("-H"))
    return str(count)


def environment(config: Config) -> dict[str, str]:
    """Exim's cleaned environment: only keep_environment names, plus add_environment."""
    kept: dict[str, str] = {}
    for name in split_list(config.main.keep_environment):
        if name and name in os.environ:
            kept[name] = os.environ[name]
    for setting in split_list(config.main.add_environment):
        name, equals, value = setting.partition("=")
        if name and equals:
            kept[name] = value
    return kept


def expansion_settings(config: Config) -> dict[str, object]:
    """The ExpandContext fields a configuration decides (see module docstring)."""
    main = config.main
    uid, gid = mta_ids(main.mta_user, main.mta_group)
    policy = ExpandPolicy(
        run=main.expansion_run_commands,
        readsocket=main.expansion_read_sockets,
        run_timeout=float(main.expansion_run_timeout),
        run_as=(uid, gid) if uid is not None and gid is not None else None,
    )

    def named_list(kind: str, name: str) -> str | None:
        return config.named_list(_LIST_TYPES[kind], name)

    return {"policy": policy, "environment": environment(config), "named_list": named_list}


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
    return ExpandContext(
        variables=variables,
        headers=headers,
        match_list=list_matcher(config),
        **expansion_settings(config),  # type: ignore[arg-type]
    )


def rewrite_env(
    config: Config,
    logger: Logger | None = None,
    variables: Mapping[str, VariableValue] | None = None,
    message_id: str | None = None,
) -> RewriteEnv:
    """What address rewriting needs (mta.message.rewrite.RewriteEnv) from a configuration: the
    replacements see its variables and `variables`; with a logger (mta.log.Logger), failures go to
    the main and panic logs and, with the address_rewrite selector, each rewrite to the main log."""
    from mta import debug
    from mta.message.rewrite import RewriteEnv

    base = dict(variables or {})

    def expand_with(template: str, extra: dict[str, str]) -> str:
        from mta.expand.expander import expand  # here: only rewrite rules expand (qualifying does not)

        return expand(template, expansion_context(config, {**base, **extra}))

    def panic(text: str) -> None:
        if logger is not None:
            logger.panic(text, message_id)
        else:
            debug.debug("rewrite", "%s", text)

    def log(text: str) -> None:
        assert logger is not None
        logger.main(text, message_id)

    return RewriteEnv(
        expand=expand_with,
        primary_hostname=config.primary_hostname,
        qualify_domain=config.qualify_domain,
        qualify_recipient=config.qualify_recipient,
        panic=panic,
        log=log if logger is not None and logger.selected("address_rewrite") else None,
        named_list=config.named_list,
    )
