"""llama-cpp-python, which the engine's llama.cpp backend needs (engine/infer/gguf_backend.py).

Installed with the engine, never fatally:
1. a wheel this machine built earlier, from the per-machine wheel cache (later setups and CI reuse it);
2. else a prebuilt wheel, where the package sources have one for this machine;
3. else a wheel built from the sdist, where a C compiler is found (pip fetches CMake for the
   build), put in the wheel cache, then installed;
4. else nothing: the engine keeps transformers for GGUF models.
The log says which; the outcome, with a one-line reason when it is not installed, goes to the
venv's STATUS_NAME, which ``check-env`` and the Setup page show.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_children as children
import bootstrap_installs as installs
import bootstrap_locks
import bootstrap_paths as paths
import bootstrap_stamp as stamps
from bootstrap_children import StepFailed
from bootstrap_context import Context

VERSION = "0.3.36"
SPEC = "llama-cpp-python==" + VERSION
STATUS_NAME = "llama-cpp-status.json"
# A native build: llama.cpp's speed comes from the CPU's own vector instructions. Such a wheel
# fits only CPUs with the same instructions, hence a cache folder per CPU (machine_key).
CMAKE_ARGS = "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
FALLBACK = "GGUF models run with transformers"
SDIST_PREFIX = "llama_cpp_python-"  # the source archive a wheelhouse carries (download_sources)
# The sdist's build-system requirement, and the CMake and Ninja it asks for where none is installed.
BUILD_TOOLS = ("scikit-build-core[pyproject]>=0.9.2", "cmake>=3.21", "ninja")
VERSION_PROBE = ("import importlib.metadata as m\ntry:\n    print(m.version('llama-cpp-python'))\n"
                 "except m.PackageNotFoundError:\n    pass\n")


def machine_key() -> str:
    """What a native wheel depends on: the OS, the architecture, the Python and the CPU's flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    text = "|".join((sys.platform, platform.machine(), "%d.%d" % sys.version_info[:2], flags))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def wheel_cache() -> Path:
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "Tunebench" / "Cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunebench"
    return base / "wheels" / ("llama-cpp-python-%s-%s" % (VERSION, machine_key()))


def compiler() -> str | None:
    names = ("cl",) if os.name == "nt" else ("cc", "gcc", "clang")
    return next((shutil.which(name) for name in names if shutil.which(name)), None)


def status_line(venv: Path) -> str:
    """One line for the Setup page: what the engine environment's llama.cpp backend is."""
    try:
        status = json.loads((venv / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "not installed yet: set up or repair the engine to install it; %s" % FALLBACK
    if not isinstance(status, dict):
        return "unknown (%s is damaged): repair the engine" % STATUS_NAME
    if status.get("installed"):
        return "llama-cpp-python %s, %s: GGUF models run with llama.cpp" % (status.get("version"), status.get("how"))
    return str(status.get("reason") or "not installed; %s" % FALLBACK)


def ensure_once(context: Context, python: Path, venv: Path, stamp: dict, env: Mapping[str, str],
                cwd: Path) -> dict:
    """Tries once per environment (the stamp remembers; --reinstall tries again)."""
    if "llama_cpp" in stamp:
        return stamp
    status = ensure(context, python, venv, env, cwd)
    stamp = dict(stamp, llama_cpp=status["installed"])
    stamps.write_stamp(venv / paths.STAMP_NAME, stamp)
    return stamp


def ensure(context: Context, python: Path, venv: Path, env: Mapping[str, str], cwd: Path) -> dict:
    """Installs llama-cpp-python if it can; returns and records what happened."""
    status = _install(context, python, env, cwd)
    status["version"] = VERSION
    (venv / STATUS_NAME).write_text(json.dumps(status), encoding="utf-8")
    if not status["installed"]:
        context.log.say("llama.cpp backend not installed: %s" % status["reason"])
    return status


def installed_version(python: Path, env: Mapping[str, str]) -> str:
    """The llama-cpp-python version in the venv, or "" (pip would call this one satisfied)."""
    done = children.run_child([python, "-c", VERSION_PROBE], env=env, capture=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _install(context: Context, python: Path, env: Mapping[str, str], cwd: Path) -> dict:
    cache = wheel_cache()
    if installed_version(python, env) == VERSION:
        return {"installed": True, "how": "already in the environment"}
    try:
        built = _cached(cache)
        if built is not None:
            _install_wheel(context, python, env, cwd, built, "the wheel this machine built earlier")
            return {"installed": True, "how": "cached wheel %s" % built.name}
        try:
            children.run_step(context.log, "Installing llama-cpp-python %s (a prebuilt wheel)" % VERSION,
                              installs.install_command(context, python, "--only-binary", "llama-cpp-python", SPEC),
                              env, cwd)
            return {"installed": True, "how": "prebuilt wheel"}
        except StepFailed:
            context.log.say("No prebuilt llama-cpp-python wheel for this machine")
        if compiler() is None:
            return {"installed": False, "reason": "no prebuilt llama-cpp-python wheel for this machine and no C "
                    "compiler to build one (install gcc, or Visual Studio's C++ tools, then run setup "
                    "again); %s" % FALLBACK}
        _build(context, python, env, cwd, cache)
        built = _cached(cache)
        if built is None:
            return {"installed": False, "reason": "the llama-cpp-python build left no wheel; %s" % FALLBACK}
        _install_wheel(context, python, env, cwd, built, "the wheel just built")
        return {"installed": True, "how": "built from source"}
    except StepFailed as failure:
        return {"installed": False, "reason": "%s failed (%s; see the setup log); %s" % (
            failure.step, failure.status, FALLBACK)}


def download_sources(context: Context, python: Path, folder: Path, env: Mapping[str, str], cwd: Path,
                     locks: Sequence[Path]) -> None:
    """For an offline wheelhouse: the sdist and what building it takes (scikit-build-core, and
    CMake and Ninja for a machine without its own), their dependencies pinned by ``locks`` as the
    rest of the wheelhouse is. A wheel is built for one CPU's instructions, so each offline
    machine builds its own from these, once, as ``setup`` does online."""
    sdist = installs.pip_command(context.log, python, "download", "-d", str(folder), "--no-deps",
                                 "--no-binary", "llama-cpp-python", SPEC)
    children.run_step(context.log, "Downloading the llama-cpp-python %s source" % VERSION,
                      sdist + context.sources.all(), env, cwd)
    tools = installs.pip_command(context.log, python, "download", "-d", str(folder), "--only-binary", ":all:",
                                 *BUILD_TOOLS) + bootstrap_locks.constraint_flags(locks)
    children.run_step(context.log, "Downloading llama-cpp-python's build tools", tools + context.sources.all(),
                      env, cwd)


def _cached(cache: Path) -> Path | None:
    wheels = sorted(cache.glob("llama_cpp_python-%s-*.whl" % VERSION)) if cache.is_dir() else []
    return wheels[-1] if wheels else None


def _build(context: Context, python: Path, env: Mapping[str, str], cwd: Path, cache: Path) -> None:
    """``pip wheel`` from the sdist, verbose so the compiler's progress shows, into the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    build_env = dict(env, CMAKE_ARGS=CMAKE_ARGS, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 1))
    argv = installs.pip_command(context.log, python, "wheel", "--no-deps", "-v", SPEC, "-w", str(cache))
    children.run_step(context.log, "Building llama-cpp-python %s from source for this CPU (once per machine; "
                      "about 10 to 20 minutes on 2 cores)" % VERSION, argv + context.sources.all(), build_env, cwd)


def _install_wheel(context: Context, python: Path, env: Mapping[str, str], cwd: Path, wheel: Path,
                   what: str) -> None:
    children.run_step(context.log, "Installing llama-cpp-python from %s" % what,
                      installs.install_command(context, python, str(wheel)), env, cwd)
