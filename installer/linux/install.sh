#!/bin/sh
# Per-user install of Tunebench from this folder: no root needed.
#   ./install.sh                      set up the window now (the app's Setup page builds the
#                                     engine: torch for the machine's GPU)
#   ./install.sh --offline WHEELHOUSE set up everything from an offline wheelhouse, no network
# Without a python3 3.11+, the uv in payload/uv gets one (see find-python.sh).
# Files: ~/.local/share/tunebench (app + venv [+ python]), ~/.local/bin/tunebench,
# ~/.local/share/applications/tunebench.desktop, icons in ~/.local/share/icons/hicolor.
# Remove with ~/.local/share/tunebench/uninstall.sh.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
DATA="$DATA_HOME/tunebench"
APPDIR="$DATA/app"
BIN="$HOME/.local/bin"
UV="$HERE/payload/uv/uv"
. "$HERE/payload/installer/find-python.sh"
tunebench_find_python || { echo "[tunebench] $TUNEBENCH_NO_PYTHON" >&2; exit 1; }
# Online, only the window's small environment now; offline, everything from the wheelhouse.
GUI_ONLY=--gui-only
for arg in "$@"; do
    case "$arg" in --offline|--offline=*) GUI_ONLY= ;; esac
done

echo "[tunebench] Installing into $DATA"
mkdir -p "$DATA" "$BIN" "$DATA_HOME/applications" \
    "$DATA_HOME/icons/hicolor/256x256/apps" "$DATA_HOME/icons/hicolor/scalable/apps"
rm -rf "$APPDIR.new"
cp -R "$HERE/payload" "$APPDIR.new"
rm -rf "$APPDIR"
mv "$APPDIR.new" "$APPDIR"
sed "s|@APPDIR@|$APPDIR|" "$HERE/payload/share/tunebench-launcher.sh" > "$BIN/tunebench"
chmod 755 "$BIN/tunebench"
sed "s|^Exec=.*|Exec=\"$BIN/tunebench\"|" "$HERE/payload/share/tunebench.desktop" \
    > "$DATA_HOME/applications/tunebench.desktop"
cp "$HERE/payload/share/icons/tunebench.png" "$DATA_HOME/icons/hicolor/256x256/apps/tunebench.png"
cp "$HERE/payload/share/icons/tunebench.svg" "$DATA_HOME/icons/hicolor/scalable/apps/tunebench.svg"
cp "$HERE/uninstall.sh" "$DATA/uninstall.sh"
chmod 755 "$DATA/uninstall.sh"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$DATA_HOME/applications" || true

WHEEL=$(ls "$APPDIR"/wheels/tunebench-*.whl | head -n 1)
"$PYTHON" "$APPDIR/installer/bootstrap.py" setup $GUI_ONLY --venv "$DATA/venv" --wheel "$WHEEL" "$@"
echo "[tunebench] Installed. Start Tunebench from the applications menu or with: $BIN/tunebench"
