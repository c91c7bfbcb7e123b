# Shared by scripts/run and scripts/test: make the virtualenv with mta installed in it.
#
# MTA_VENV names the virtualenv to use (default: .venv in the checkout).  Set
# it when the checkout's .venv belongs to someone else, e.g. MTA_VENV=$HOME/mta-venv.
# MTA_PYTHON names the interpreter that creates it (default: python3 on PATH).
VENV="${MTA_VENV:-$PWD/.venv}"
PYTHON="${MTA_PYTHON:-python3}"

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
                    rm -rf "$VENV"
                    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                    out=$("$PYTHON" -m venv "$VENV" 2>&1) || venv_fail "$PYTHON -m venv $VENV failed: $out"
                else
                    venv_fail "$PYTHON -m venv failed because the venv module is missing:" \
                        "install it (as root: apt-get install python3-venv). $PYTHON said: $out"
                fi ;;
            *)
                venv_fail "$PYTHON -m venv $VENV failed: $out" ;;
            esac
        fi
    fi
    # Reinstall when pyproject.toml changed since the last install.
    if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
        [ -w "$VENV" ] || venv_fail "the virtualenv $VENV needs (re)installing but is not writable by $(id -un);" \
            "use MTA_VENV=\$HOME/mta-venv $0 for a virtualenv of your own"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q --config-settings editable_mode=compat -e ".[test]" ||
            venv_fail "installing mta into $VENV failed (pip's reason is above)"
        # Byte-compile once here, as pip does for a wheel: PYTHONDONTWRITEBYTECODE may be set,
        # and every later start would then compile mta again.
        "$VENV/bin/python" -m compileall -q mta spool_tools >/dev/null 2>&1 || true
        touch "$VENV/.installed"
    fi
}

ensure_test_packages() {
    # Debian tools some tests drive for real (a command-line mail client, cron-like runs).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        missing=""
        command -v bsd-mailx >/dev/null 2>&1 || missing="$missing bsd-mailx"
        if [ -n "$missing" ]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) ||
                echo "warning: could not install$missing; tests that need them will be skipped" >&2
        fi
    fi
}
