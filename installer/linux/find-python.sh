# Sourced (POSIX sh) by install.sh and the tunebench launcher: tunebench_find_python sets PYTHON
# to a Python 3.11 or newer, or returns 1. Ubuntu 22.04's python3 is 3.10, so the system's one
# is not enough: when it is missing or older, the uv carried in the .tar.gz ($UV; the .deb has
# none and depends on python3 >= 3.11) finds another or downloads one into $DATA/python, which
# uninstall.sh removes. uv gets the isolation of bootstrap_children.child_env: no user config, no UV_*.
tunebench_find_python() {
    PYTHON=$(command -v python3 || true)
    if [ -n "$PYTHON" ] && "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            2>/dev/null; then
        return 0
    fi
    PYTHON=
    [ -x "$UV" ] || return 1
    for name in $(env | sed -n 's/^\(UV_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$name"; done
    UV_NO_CONFIG=1 UV_PYTHON_INSTALL_DIR="$DATA/python" UV_CACHE_DIR="$DATA/uv-cache"
    export UV_NO_CONFIG UV_PYTHON_INSTALL_DIR UV_CACHE_DIR
    PYTHON=$("$UV" python find --system '>=3.11' 2>/dev/null) && return 0
    echo "[tunebench] No Python 3.11 or newer here: downloading one for Tunebench (once, about 30 MB)." >&2
    "$UV" python install 3.11 --no-bin >&2 \
        && PYTHON=$("$UV" python find --system '>=3.11' 2>/dev/null) && return 0
    PYTHON=
    return 1
}

TUNEBENCH_NO_PYTHON="Tunebench needs Python 3.11 or newer: none is installed and none could be downloaded (offline?); connect to the internet and try again, or install python3 3.11+."
