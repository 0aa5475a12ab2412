#!/bin/sh
# Tunebench launcher. The first start sets up the per-user environment (a few minutes:
# torch and the app are installed by the bootstrap); later starts open the window in seconds,
# and a damaged environment is repaired. @APPDIR@ is filled in when the package is built.
set -e
APPDIR="@APPDIR@"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}/tunebench"
VENV="$DATA/venv"
WHEEL=$(ls "$APPDIR"/wheels/tunebench-*.whl | head -n 1)
PYTHON=$(command -v python3 || true)
if [ -z "$PYTHON" ]; then
    echo "Tunebench needs python3 (3.11 or newer); install it first." >&2
    exit 1
fi
# Started from the menu (no terminal) before the environment exists: show the setup's progress
# in a terminal window rather than leave the user waiting with nothing on screen.
if [ ! -f "$VENV/tunebench-bootstrap.json" ] && [ ! -t 1 ] && [ -z "$TUNEBENCH_IN_TERMINAL" ] \
        && command -v x-terminal-emulator >/dev/null 2>&1; then
    TUNEBENCH_IN_TERMINAL=1 exec x-terminal-emulator -e "$0" "$@"
fi
exec "$PYTHON" "$APPDIR/installer/bootstrap.py" run --venv "$VENV" --wheel "$WHEEL" -- "$@"
