#!/bin/sh
# Per-user install of Tunebench from this folder: no root needed.
#   ./install.sh                      set up now (downloads torch and the app's dependencies)
#   ./install.sh --offline WHEELHOUSE set up from an offline wheelhouse, with no network
#   ./install.sh --torch cpu          force a torch build (auto|cpu|cu126|cu130)
# Files: ~/.local/share/tunebench (app + venv), ~/.local/bin/tunebench,
# ~/.local/share/applications/tunebench.desktop, icons in ~/.local/share/icons/hicolor.
# Remove with ~/.local/share/tunebench/uninstall.sh.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
DATA="$DATA_HOME/tunebench"
APPDIR="$DATA/app"
BIN="$HOME/.local/bin"
PYTHON=$(command -v python3 || true)
[ -n "$PYTHON" ] || { echo "[tunebench] python3 (3.11 or newer) is needed; install it first." >&2; exit 1; }

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
"$PYTHON" "$APPDIR/installer/bootstrap.py" setup --venv "$DATA/venv" --wheel "$WHEEL" "$@"
echo "[tunebench] Installed. Start Tunebench from the applications menu or with: $BIN/tunebench"
