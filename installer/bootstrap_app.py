"""Which Tunebench app the bootstrap installs: the checkout's sources, or an installed app's
wheel (``--wheel``).

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

from pathlib import Path

from bootstrap_children import StepFailed
from bootstrap_context import Context


def project_version(repo: Path) -> str:
    """The ``version = "..."`` of pyproject.toml's [project] table (no TOML parser on 3.10)."""
    for line in (repo / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "version":
            return value.strip().strip('"')
    raise StepFailed("Reading pyproject.toml", "no version line", retry=False)


def app_version(context: Context, repo: Path) -> str | None:
    """This app's version: from the installed app's wheel name (``tunebench-X-...whl``), else
    from the checkout's pyproject.toml; None when neither says."""
    if context.app_wheel is not None:
        parts = context.app_wheel.name.split("-")
        return parts[1] if len(parts) > 2 else None
    try:
        return project_version(repo)
    except (OSError, StepFailed):
        return None


def app_source(context: Context, repo: Path) -> Path:
    """The file that stands for the app's sources in the stamp: the installed app's wheel, else
    the checkout's pyproject.toml."""
    return context.app_wheel or repo / "pyproject.toml"
