# Sourced by scripts/test and scripts/demo: make sure ./.venv holds sidecache and what it needs.
# The caller sets EXTRAS (e.g. "test") before sourcing; its own arguments are not read here.
# Works on a fresh Debian machine with Python 3.11+: creates the venv (installing python3-venv with
# apt-get when it is missing and we are root) and reinstalls only when pyproject.toml changed.
VENV="${SIDECACHE_VENV:-.venv}"
EXTRAS="${EXTRAS:-}"

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "sidecache needs Python 3.11 or newer as python3 (found: $(python3 --version 2>&1))" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "python3 -m venv needs python3-venv: installing it with apt-get" >&2
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$VENV"
        else
            echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)${EXTRAS:+-$EXTRAS}"
if [ ! -e "$stamp" ]; then
    # Editable, so never compiled (a compiled module would shadow the source being edited).
    SIDECACHE_COMPILE="" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -e ".${EXTRAS:+[$EXTRAS]}"
    touch "$stamp"
fi
