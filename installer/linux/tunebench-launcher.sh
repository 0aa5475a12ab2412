#!/bin/sh
# Tunebench launcher. The first start sets up the per-user environment of the window (the
# app's Setup page then builds the engine: torch for the GPU); later starts open the window in
# seconds, and a damaged environment is repaired. @APPDIR@ is filled in when the package is
# built. --gui-only is always passed: a fuller setup (install.sh --offline) covers it too.
set -e
APPDIR="@APPDIR@"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}/tunebench"
VENV="$DATA/venv"
WHEEL=$(ls "$APPDIR"/wheels/tunebench-*.whl | head -n 1)
UV="$APPDIR/uv/uv"
. "$APPDIR/installer/find-python.sh"
# Started from the menu (no terminal) before the environment exists: show the setup's progress
# in a terminal window rather than leave the user waiting with nothing on screen.
if [ ! -f "$VENV/tunebench-bootstrap.json" ] && [ ! -t 1 ] && [ -z "$TUNEBENCH_IN_TERMINAL" ] \
        && command -v x-terminal-emulator >/dev/null 2>&1; then
    TUNEBENCH_IN_TERMINAL=1 exec x-terminal-emulator -e "$0" "$@"
fi
if ! tunebench_find_python; then
    echo "[tunebench] $TUNEBENCH_NO_PYTHON" >&2
    [ -z "$TUNEBENCH_IN_TERMINAL" ] || { echo "Press Enter to close."; read -r _; }
    exit 1
fi
exec "$PYTHON" "$APPDIR/installer/bootstrap.py" run --gui-only --venv "$VENV" --wheel "$WHEEL" \
    -- "$@"
