"""The installer's standard-library scripts, loaded by path for the tests.

installer/ is not a package (the packaging test checks that every package is shipped), so its
scripts cannot be imported by name. Each is loaded once and registered in sys.modules, where
dataclasses look their module up. The modules bootstrap.py imports from its own folder
(``bootstrap_*.py``, ``gpu_probe.py``, ...) are reached with ``sibling``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

INSTALLER = Path(__file__).resolve().parent.parent / "installer"


def load(relative: str) -> ModuleType:
    """``load("bootstrap")`` or ``load("windows/build_installer")``."""
    path = INSTALLER / f"{relative}.py"
    name = "tunebench_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def sibling(name: str) -> ModuleType:
    """``sibling("bootstrap_venv")``: a module bootstrap.py imports from its folder.

    It is the very module object the bootstrap uses (bootstrap.py puts its folder on sys.path
    and imports it by name), so a test that monkeypatches it reaches the bootstrap. ``load``
    would give a second, separate copy.
    """
    load("bootstrap")
    return importlib.import_module(name)
