# Shared by scripts/run and scripts/test: make .venv with mta installed in it.
VENV="${MTA_VENV:-$PWD/.venv}"

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            # Debian splits venv out of python3; install it when we can.
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                python3 -m venv "$VENV"
            else
                echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
                exit 1
            fi
        fi
    fi
    # Reinstall when pyproject.toml changed since the last install.
    if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q --config-settings editable_mode=compat -e ".[test]"
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
