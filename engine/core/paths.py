"""Where Tunebench keeps things. The one module that decides paths (docs/architecture.md, 'Paths').

Light: platformdirs and the standard library only, so the GUI can import it.

``TUNEBENCH_HOME`` moves everything (workspace, cache, settings, logs) under one folder, for
tests and portable installs. Without it the platform's per-user folders are used.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs

APP_NAME = "Tunebench"
HOME_ENV = "TUNEBENCH_HOME"


def _override() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def workspace_dir() -> Path:
    """Runs, datasets and evaluations: the user's work, never deleted by Tunebench."""
    root = _override()
    return _ensure(root if root else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)))


def cache_dir() -> Path:
    """Things that can be rebuilt: converted models."""
    root = _override()
    base = root / "cache" if root else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    return _ensure(base)


def config_dir() -> Path:
    root = _override()
    base = root / "config" if root else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return _ensure(base)


def log_dir() -> Path:
    root = _override()
    base = root / "logs" if root else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    return _ensure(base)


def runs_dir() -> Path:
    return _ensure(workspace_dir() / "runs")


def datasets_dir() -> Path:
    return _ensure(workspace_dir() / "datasets")


def evals_dir() -> Path:
    return _ensure(workspace_dir() / "evals")


def sweeps_dir() -> Path:
    """Hyperparameter sweeps: one Optuna SQLite file per sweep (NAME.db); trials are runs."""
    return _ensure(workspace_dir() / "sweeps")


def suites_dir() -> Path:
    """Saved prompt suites of the Prompt page, one JSON file each."""
    return _ensure(workspace_dir() / "suites")


def ratings_dir() -> Path:
    """Ratings of the Prompt page's answers (JSONL), the source of preference datasets."""
    return _ensure(workspace_dir() / "ratings")


def models_cache_dir() -> Path:
    return _ensure(cache_dir() / "models")


def probes_dir() -> Path:
    """Scratch folders of fit probes (`train --probe`), each removed when its probe ends."""
    return _ensure(cache_dir() / "probes")


def resources_dir() -> Path:
    """The bundled resources folder (sample data, presets, icons).

    Installed, it is the package ``tunebench_resources``; in a source checkout it is
    ``resources/`` beside the packages.
    """
    try:
        return Path(str(resources.files("tunebench_resources")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "resources"


def sample_dataset_path() -> Path:
    return resources_dir() / "sample_data" / "product_reviews.jsonl"


def presets_dir() -> Path:
    return resources_dir() / "presets"


def harness_tasks_dir() -> Path:
    """The lm-eval task configs shipped with Tunebench (YAML plus their data)."""
    return resources_dir() / "harness_tasks"
