"""The network settings of the user's pip configuration, for children that run without it.

Every child runs with ``PIP_CONFIG_FILE=os.devnull`` (``bootstrap_children.child_env``), and
pip then skips *every* configuration file, the machine-wide one too. What an administrator set
there to reach the network (a company CA in ``cert``, a ``proxy``, a mirror) would be lost, and
installs would fail with certificate or connection errors where pip alone works. So the network
settings are read here from the files pip itself reads, in pip's order, and handed to the
children as ``PIP_*`` variables; nothing else in those files (``user``, ``target``,
``no-binary``, ...) is carried.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping

# Keys as written in pip.conf; pip accepts the long alias default-timeout for timeout.
NETWORK_KEYS = ("index-url", "extra-index-url", "trusted-host", "cert", "client-cert", "proxy",
                "timeout", "retries")
ALIASES = {"default-timeout": "timeout"}
MULTI_VALUED = ("extra-index-url", "trusted-host")
# The keys that choose where packages come from (a CUDA torch comes from PyTorch's index only).
SOURCE_KEYS = ("index-url", "extra-index-url", "find-links")


def variable(key: str) -> str:
    """pip's environment variable for a config key: ``client-cert`` -> ``PIP_CLIENT_CERT``."""
    return "PIP_" + key.upper().replace("-", "_")


def config_files(env: Mapping[str, str], platform: str = sys.platform) -> List[Path]:
    """The files pip reads, lowest precedence first: machine-wide, then the user's, then
    ``PIP_CONFIG_FILE`` (which replaces the user's when it exists). ``os.devnull`` there makes
    pip read none. The venv's own ``<prefix>/pip.conf`` is left out: ours never has one."""
    chosen = env.get("PIP_CONFIG_FILE")
    if chosen == os.devnull:
        return []
    files = _global_files(env, platform)
    if not (chosen and os.path.exists(chosen)):
        files += _user_files(env, platform)
    if chosen:
        files.append(Path(chosen))
    return files


def _global_files(env: Mapping[str, str], platform: str) -> List[Path]:
    if platform == "win32":
        return [Path(env.get("ProgramData", env.get("PROGRAMDATA", r"C:\ProgramData")), "pip", "pip.ini")]
    if platform == "darwin":
        return [Path("/Library/Application Support/pip/pip.conf")]
    dirs = [d for d in env.get("XDG_CONFIG_DIRS", "").split(os.pathsep) if d] or ["/etc/xdg"]
    return [Path(d, "pip", "pip.conf") for d in dirs] + [Path("/etc/pip.conf")]


def _user_files(env: Mapping[str, str], platform: str) -> List[Path]:
    home = Path(env.get("USERPROFILE" if platform == "win32" else "HOME", "") or str(Path.home()))
    if platform == "win32":
        appdata = env.get("APPDATA") or str(home / "AppData" / "Roaming")
        return [home / "pip" / "pip.ini", Path(appdata, "pip", "pip.ini")]
    legacy = home / ".pip" / "pip.conf"
    if platform == "darwin":
        return [legacy, home / "Library" / "Application Support" / "pip" / "pip.conf"]
    return [legacy, Path(env.get("XDG_CONFIG_HOME") or str(home / ".config"), "pip", "pip.conf")]


def network_settings(env: Mapping[str, str], platform: str = sys.platform) -> Dict[str, str]:
    """The network settings pip would use for ``pip install`` in ``env``, by config key.

    As in pip: a later file overrides an earlier one per ``section.key``; then ``[install]``
    overrides ``[global]``, and ``PIP_*`` variables override both."""
    by_section = {"global": {}, "install": {}}  # type: Dict[str, Dict[str, str]]
    for path in config_files(env, platform):
        for section, values in _read(path).items():
            by_section[section].update(values)
    merged = dict(by_section["global"])
    merged.update(by_section["install"])
    for key in NETWORK_KEYS + tuple(ALIASES):
        value = env.get(variable(key), "").strip()
        if value:
            merged[ALIASES.get(key, key)] = value
    return {key: merged[key] for key in NETWORK_KEYS if merged.get(key)}


def _read(path: Path) -> Dict[str, Dict[str, str]]:
    """The network keys of ``[global]`` and ``[install]`` in one file; an unreadable file counts
    as empty (pip would stop with an error of its own, which the user sees without us)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read(str(path), encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    found = {}  # type: Dict[str, Dict[str, str]]
    for section in ("global", "install"):
        if not parser.has_section(section):
            continue
        values = {}
        for key, value in parser.items(section):
            key = ALIASES.get(key.replace("_", "-"), key.replace("_", "-"))
            if key in NETWORK_KEYS and value.strip():
                values[key] = " ".join(value.split()) if key in MULTI_VALUED else value.strip()
        found[section] = values
    return found


def network_env(env: Mapping[str, str], platform: str = sys.platform) -> Dict[str, str]:
    """The ``PIP_*`` variables that carry ``env``'s network settings to a child."""
    return {variable(key): value for key, value in network_settings(env, platform).items()}


def without_sources(env: Mapping[str, str]) -> Dict[str, str]:
    """``env`` without the carried package sources, for a pip that must use one index only."""
    return {key: value for key, value in env.items()
            if key.upper() not in [variable(k) for k in SOURCE_KEYS]}
