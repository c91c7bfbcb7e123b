# Shared by scripts/run and scripts/test: make the virtualenv with mta installed in it.
#
# MTA_VENV names the virtualenv to use (default: .venv in the checkout).  Set
# it when the checkout's .venv belongs to someone else, e.g. MTA_VENV=$HOME/mta-venv.
# MTA_PYTHON names the interpreter that creates it.  Without it: the distribution's
# /usr/bin/python3 when it is 3.11 or later, else python3 on PATH.  The distribution's is the
# one scripts/install puts the system's mta on, every user may run it (a pyenv build under
# /root nobody else can), and Debian builds it with profile-guided optimisation and LTO:
# mta does the same work in a fifth to a quarter less CPU on it than on a Python built
# with pyenv's defaults (docs/performance.md, "The interpreter").
VENV="${MTA_VENV:-$PWD/.venv}"
if [ -n "${MTA_PYTHON:-}" ]; then
    PYTHON=$MTA_PYTHON
elif [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON=/usr/bin/python3
else
    PYTHON=python3
fi

venv_fail() {
    echo "scripts: $*" >&2
    exit 1
}

# A venv exists but its interpreter cannot be run by this user: typically a
# .venv made by root from a Python under /root (pyenv), which nobody else may
# enter.  Say so, and how to get a working one, instead of "bad interpreter".
check_venv_runs() {
    if "$VENV/bin/python" -c '' 2>/dev/null; then
        return 0
    fi
    target=$(readlink -f "$VENV/bin/python" 2>/dev/null || echo "$VENV/bin/python")
    owner=$(stat -c %U "$VENV" 2>/dev/null || echo "another user")
    venv_fail "the virtualenv $VENV cannot be run by $(id -un): its interpreter $target" \
        "is missing or not readable by you (the venv belongs to $owner)." \
        "Rebuild it (rm -rf '$VENV', as $owner if needed, then run this command again)," \
        "or use a virtualenv of your own: MTA_VENV=\$HOME/mta-venv $0"
}

# What a `python -m venv` that failed for want of ensurepip left (a pyvenv.cfg and a bin/ without
# pip), before another try.  Only that: MTA_VENV may name a directory that holds other things.
discard_failed_venv() {
    if [ -f "$VENV/pyvenv.cfg" ]; then
        rm -rf "$VENV"
    fi
}

ensure_venv() {
    if [ -e "$VENV/bin/python" ] || [ -L "$VENV/bin/python" ]; then
        check_venv_runs
    else
        command -v "$PYTHON" >/dev/null 2>&1 ||
            venv_fail "no $PYTHON on PATH: install Python 3.11 or later (apt-get install python3 python3-venv)"
        if ! out=$("$PYTHON" -m venv "$VENV" 2>&1); then
            case "$out" in
            *ensurepip*|*"No module named venv"*)
                # Debian splits venv out of python3; install it when we can.
                if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                    discard_failed_venv
                    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                    out=$("$PYTHON" -m venv "$VENV" 2>&1) || venv_fail "$PYTHON -m venv $VENV failed: $out"
                elif [ -z "${MTA_PYTHON:-}" ] && [ "$PYTHON" != python3 ] && command -v python3 >/dev/null &&
                    discard_failed_venv && python3 -m venv "$VENV" >/dev/null 2>&1; then
                    # Not root: the distribution's Python lacks venv, but the one on PATH has it.
                    echo "scripts: $PYTHON has no venv module (apt-get install python3-venv);" \
                        "made $VENV with $(command -v python3) instead" >&2
                else
                    venv_fail "$PYTHON -m venv failed because the venv module is missing:" \
                        "install it (as root: apt-get install python3-venv). $PYTHON said: $out"
                fi ;;
            *)
                venv_fail "$PYTHON -m venv $VENV failed: $out" ;;
            esac
        fi
    fi
    # Reinstall when pyproject.toml changed since the last install.  `ensure_venv test` also
    # installs the test tools (scripts/test); plain `ensure_venv` (scripts/run) only what mta
    # needs, which is most of a newcomer's first wait.  Each has its own marker.
    extras="" marker="$VENV/.installed"
    if [ "${1:-}" = test ]; then extras="[test]" marker="$VENV/.installed-test"; fi
    if [ ! -f "$marker" ] || [ pyproject.toml -nt "$marker" ]; then
        [ -w "$VENV" ] || venv_fail "the virtualenv $VENV needs (re)installing but is not writable by $(id -un);" \
            "use MTA_VENV=\$HOME/mta-venv $0 for a virtualenv of your own"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q --config-settings editable_mode=compat -e ".$extras" ||
            venv_fail "installing mta into $VENV failed (pip's reason is above)"
        # Byte-compile once here, as pip does for a wheel: PYTHONDONTWRITEBYTECODE may be set,
        # and every later start would then compile mta again.
        "$VENV/bin/python" -m compileall -q mta spool_tools >/dev/null 2>&1 || true
        touch "$marker"
        # The test tools' install is a superset: scripts/run need not install again after it.
        if [ -n "$extras" ]; then touch "$VENV/.installed"; fi
    fi
    # mta's commands start Python without `site` (mta/launcher.py): pip's scripts, written again by
    # each install, are replaced; so are those of a venv installed before there were launchers.
    if [ "$(head -c 2 "$VENV/bin/mta" 2>/dev/null)" = "#!" ] && ! head -n 1 "$VENV/bin/mta" | grep -q -- ' -S$'; then
        [ -w "$VENV/bin" ] || venv_fail "the virtualenv $VENV needs its mta commands rewritten but is not" \
            "writable by $(id -un); use MTA_VENV=\$HOME/mta-venv $0 for a virtualenv of your own"
        "$VENV/bin/python" -I -m mta.launcher "$VENV/bin" || venv_fail "writing mta's commands into $VENV/bin failed"
    fi
}

ensure_test_packages() {
    # Debian tools some tests drive for real (a command-line mail client, cron-like runs;
    # logrotate for the log tools: tests/spool_tools).  All small; a test whose tool could
    # not be installed skips and says why.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        missing=""
        command -v bsd-mailx >/dev/null 2>&1 || missing="$missing bsd-mailx"
        command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing="$missing logrotate"
        if [ -n "$missing" ]; then
            (apt_quick update -qq && DEBIAN_FRONTEND=noninteractive apt_quick install -y -qq $missing >/dev/null) ||
                echo "warning: could not install$missing; tests that need them will be skipped" >&2
        fi
        # Chromium (for the screenshot of mta-stats' HTML report) is hundreds of MB: only on
        # request, so that a clean set-up does not spend minutes on it.  Without it that one
        # test skips, saying how to get it.
        if [ "${MTA_TEST_CHROMIUM:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
            (apt_quick update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) ||
                echo "warning: could not install chromium; the HTML report's screenshot test will be skipped" >&2
        fi
    fi
    ensure_exim_tools
}

# apt-get with a time limit: a set-up must not hang on a slow or absent network.
apt_quick() {
    if command -v timeout >/dev/null 2>&1; then
        timeout 120 apt-get "$@"
    else
        apt-get "$@"
    fi
}

# Exim's own exigrep, eximstats and exiqsumm (Perl scripts in Debian's exim4-base, about 1 MB), to
# compare the log tools with: downloaded and unpacked, not installed (nothing of Exim runs, no
# daemon is set up), into a cache that tests/support/exim_tools.py looks in.  Any user may do
# this: apt-get download needs no root, but it needs the package lists, so on a machine that
# has none it fails at once and the comparisons skip.  An installed exim4-base does as well.
EXIM_TOOLS_CACHE="${MTA_EXIM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/mta-tests/exim4-base}"
ensure_exim_tools() {
    [ -x "$EXIM_TOOLS_CACHE/usr/sbin/eximstats" ] || [ -x /usr/sbin/eximstats ] && return 0
    command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 || return 0
    exim_work=$(mktemp -d)
    if (cd "$exim_work" && apt_quick download -qq exim4-base >/dev/null 2>&1) &&
        mkdir -p "$EXIM_TOOLS_CACHE" && dpkg -x "$exim_work"/exim4-base_*.deb "$EXIM_TOOLS_CACHE"; then
        :
    else
        echo "warning: could not fetch Debian's exim4-base; the comparisons with Exim's tools will be skipped" >&2
    fi
    rm -rf "$exim_work"
}
