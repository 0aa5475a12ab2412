#!/bin/sh
# Remove a per-user Tunebench install (made by install.sh). Your models, datasets and runs are
# kept unless you add --purge.
set -e
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
DATA="$DATA_HOME/tunebench"
rm -f "$HOME/.local/bin/tunebench" "$DATA_HOME/applications/tunebench.desktop" \
    "$DATA_HOME/icons/hicolor/256x256/apps/tunebench.png" \
    "$DATA_HOME/icons/hicolor/scalable/apps/tunebench.svg"
# app/ holds the carried uv; python/ and uv-cache/ are what it downloaded (find-python.sh).
rm -rf "$DATA/app" "$DATA/venv" "$DATA/python" "$DATA/uv-cache" "$DATA/uninstall.sh"
rmdir "$DATA" 2>/dev/null || true
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$DATA_HOME/applications" || true
# Tunebench's own folders (engine/core/paths.py: platformdirs with the name "Tunebench").
if [ "$1" = "--purge" ]; then
    rm -rf "$DATA_HOME/Tunebench" "${XDG_CACHE_HOME:-$HOME/.cache}/Tunebench" \
        "${XDG_CONFIG_HOME:-$HOME/.config}/Tunebench" "${XDG_STATE_HOME:-$HOME/.local/state}/Tunebench"
    echo "[tunebench] Removed the app and your Tunebench models, datasets, runs and settings."
else
    echo "[tunebench] Removed the app. Your models, datasets and runs are kept in $DATA_HOME/Tunebench; run uninstall.sh --purge to delete them too."
fi
