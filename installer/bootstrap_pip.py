"""The package sources every pip install gets: the user's mirrors, proxies and certificates,
carried as explicit flags because every child runs without the user's pip configuration.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import bootstrap_children as children
import bootstrap_log
from bootstrap_log import Log

# pip settings carried from the user's configuration, as flags: where packages come from and
# how to reach them (a mirror, a proxy, a company certificate). Everything else in a pip
# config (user = true, target, no-binary, require-hashes, ...) changes how pip installs and
# is ignored. Keys as ``pip config list`` prints them -> the install flag.
CARRIED_SOURCES = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
                   "find-links": "--find-links"}
CARRIED_NETWORK = {"trusted-host": "--trusted-host", "cert": "--cert",
                   "client-cert": "--client-cert", "proxy": "--proxy", "timeout": "--timeout",
                   "default-timeout": "--timeout", "retries": "--retries"}
MULTI_VALUED = ("extra-index-url", "find-links", "trusted-host")
# Later sections override earlier ones, as in pip: [global] < [install] < PIP_* variables.
SECTION_ORDER = ("global", "install", ":env:")

# Our own variable handing the carried sources down to nested bootstraps (the installer tests
# run bootstraps inside ``bootstrap.py test``, whose environment no longer has the user's pip
# settings): a JSON object {"sources": [...], "network": [...]}.
SOURCES_ENV = "TUNEBENCH_PIP_SOURCES"


@dataclass(frozen=True)
class PipSources:
    """The package sources and network flags given to every pip install.

    Attributes:
        sources: ``--index-url`` / ``--extra-index-url`` / ``--find-links`` flags (or
            ``--no-index --find-links DIR`` for an offline wheelhouse).
        network: ``--cert`` / ``--proxy`` / ``--trusted-host`` / ``--timeout`` flags.
    """

    sources: tuple = ()
    network: tuple = ()

    def all(self) -> list[str]:
        """Every flag: for installs from the ordinary sources."""
        return list(self.sources) + list(self.network)

    @property
    def offline(self) -> bool:
        """Whether installs come from a local wheelhouse only."""
        return "--no-index" in self.sources


def parse_pip_config(text: str) -> PipSources:
    """Pick the carried settings out of ``pip config list`` output (``section.key='value'``)."""
    merged = {}  # type: dict[str, str]
    for section in SECTION_ORDER:
        for line in text.splitlines():
            head, _, raw = line.partition("=")
            found_section, _, key = head.strip().rpartition(".")
            if found_section != section or not raw:
                continue
            try:
                value = ast.literal_eval(raw.strip())
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str) and value.strip():
                merged[key] = value.strip()
    return PipSources(tuple(_flags(merged, CARRIED_SOURCES)),
                      tuple(_flags(merged, CARRIED_NETWORK)))


def _flags(merged: Mapping[str, str], names: Mapping[str, str]) -> list[str]:
    flags = []  # type: list[str]
    for key, flag in names.items():
        if key not in merged or (key == "default-timeout" and "timeout" in merged):
            continue
        values = merged[key].split() if key in MULTI_VALUED else [merged[key]]
        for value in values:
            flags += [flag, value]
    return flags


def sources_from_env(user_env: Mapping[str, str]) -> PipSources | None:
    """The sources an outer bootstrap handed down, or None."""
    try:
        found = json.loads(user_env.get(SOURCES_ENV, ""))
        return PipSources(tuple(str(x) for x in found["sources"]),
                          tuple(str(x) for x in found["network"]))
    except (ValueError, KeyError, TypeError):
        return None


def sources_env(sources: PipSources) -> dict[str, str]:
    """The variable that hands ``sources`` down to child bootstraps."""
    return {SOURCES_ENV: json.dumps({"sources": list(sources.sources),
                                     "network": list(sources.network)})}


def read_pip_sources(log: Log, python: Path, user_env: Mapping[str, str]) -> PipSources:
    """Ask the venv's pip which package sources the user's configuration names.

    Runs ``pip config list`` with the user's own environment (PIP_* variables and the user's
    config file count here), minus what would make Python itself look elsewhere. Sources handed
    down by an outer bootstrap (TUNEBENCH_PIP_SOURCES) are taken as they are.
    """
    handed_down = sources_from_env(user_env)
    if handed_down is not None:
        log.write("package sources handed down: "
                  + bootstrap_log.format_command(handed_down.all()))
        return handed_down
    env = {key: value for key, value in user_env.items()
           if key.upper() not in children.DROPPED_VARIABLES
           and not key.upper().startswith("CONDA")}
    env["PYTHONNOUSERSITE"] = "1"
    try:
        done = children.run_child([python, "-m", "pip", "config", "list"], env=env, capture=True)
    except OSError:
        return PipSources()
    found = parse_pip_config(done.stdout if done.returncode == 0 else "")
    if found.all():
        log.write("package sources carried from the pip configuration: "
                  + bootstrap_log.format_command(found.all()))
    return found
