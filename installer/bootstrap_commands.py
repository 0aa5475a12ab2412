"""The bootstrap's commands: set up the venv, then do what the command asks (``run``, ``setup``,
``test``, ``wheelhouse``, ``engine``), or report the GPU and an engine's freshness (``probe``).

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_children as children
import bootstrap_engine
import bootstrap_installs as installs
import bootstrap_launch
import bootstrap_llama
import bootstrap_locks
import bootstrap_log
import bootstrap_offline
import bootstrap_paths as paths
import bootstrap_pip
import bootstrap_torch
import bootstrap_venv
import gpu_probe
import system_tools
from bootstrap_cli import Options
from bootstrap_context import Context
from bootstrap_torch import TorchBuild


def run_command(context: Context, options: Options, repo: Path = paths.REPO_ROOT) -> int:
    """Set up the venv, then do what the command asks.

    Args:
        context: This invocation's state; its ``app_wheel`` is ``options.wheel``.
        options: The parsed command line.
        repo: The checkout (an installed app works in its venv instead).

    Returns:
        The exit code.
    """
    if options.command == "probe":
        return run_probe(context, options, repo)
    bootstrap_venv.check_venv_folder(options.venv)
    start_log(context, options)
    env = children.child_env()
    extras = ("gui",) if options.gui_only else bootstrap_locks.EXTRAS[options.command]
    if options.wheel is not None:  # an installed app: no checkout to work in
        repo = options.venv
    build = choose_build(context, options, extras)
    # Offline, the wheelhouse is the pin: it holds one version of each package, downloaded
    # with the locks of the machine that built it.
    locks = bootstrap_locks.chosen_locks(context.log, extras, build,
                                         options.locks and options.offline is None)
    python = bootstrap_venv.ensure_venv(context.log, options.venv, env)
    if options.command == "wheelhouse":
        return make_wheelhouse(context, options, python, repo, build, extras, env, locks)
    stamp = installs.prepare_environment(
        context, python, repo, options.venv, extras, build, env, reinstall=options.reinstall,
        locks=locks)
    if "engine" in extras:
        stamp = bootstrap_llama.ensure_once(context, python, options.venv, stamp, env, repo)
    if options.command == "engine":
        return finish_engine(context, options, python, repo, build, stamp, env)
    if options.command == "test":
        return run_suite(context, options, python, repo, env)
    if build is not None:
        installs.prepare_default_model(context.log, python, repo, options.venv, stamp, env)
    if options.command == "setup":
        return finish_setup(context, build)
    return bootstrap_launch.launch_app(context, python, repo, options.passthrough, env)


def start_log(context: Context, options: Options) -> None:
    """Start this invocation's log: in the venv, or beside the bundle ``wheelhouse`` builds."""
    if options.command == "wheelhouse":  # the log goes beside the bundle, not into the venv
        context.log.start(options.out.with_name(options.out.name + ".log"))
    else:
        context.log.start(options.venv / paths.LOG_NAME)


def choose_build(context: Context, options: Options,
                 extras: Sequence[str]) -> TorchBuild | None:
    """The torch build to install and say so: the wheelhouse's offline, else ``--torch``'s;
    None for a GUI-only setup (the engine comes from the app's Setup page)."""
    build = None  # type: TorchBuild | None
    if options.offline is not None:
        build = bootstrap_offline.use_wheelhouse(context, options.offline)
    elif "engine" in extras:
        build = bootstrap_torch.pick_torch_build(context.log, options.torch)
    if options.gui_only:
        context.log.say("Setting up the window only; the engine is set up from the app's Setup "
                        "page")
        return None
    context.log.say("torch build: %s -- %s" % (build.name, build.reason))
    return build


def make_wheelhouse(context: Context, options: Options, python: Path, repo: Path,
                    build: TorchBuild, extras: Sequence[str], env: Mapping[str, str],
                    locks: Sequence[Path]) -> int:
    """``wheelhouse``: download everything a setup installs into ``--out``."""
    context.pip_sources = bootstrap_pip.read_pip_sources(context.log, python, os.environ)
    manifest = bootstrap_offline.build_wheelhouse(context, python, repo, options.out, build,
                                                  extras, env, locks)
    context.log.say("Wheelhouse ready: %s (%d wheels). Install it with: %s" % (
        options.out, len(manifest["files"]),
        bootstrap_log.readme_command("setup --offline DIR")))
    return 0


def finish_engine(context: Context, options: Options, python: Path, repo: Path,
                  build: TorchBuild, stamp: dict, env: Mapping[str, str]) -> int:
    """``engine``: make the environment complete on its own, verify it, name its python."""
    # The default model is converted with this environment's python.
    installs.prepare_default_model(context.log, python, repo, options.venv, stamp, env)
    bootstrap_engine.verify_engine(context.log, python, build, env, repo)
    context.log.say("The engine environment is ready and verified.")
    print(json.dumps({bootstrap_engine.ENGINE_READY_KEY: str(python),
                      "llama_cpp": bootstrap_llama.status_line(options.venv)}), flush=True)
    return 0


def run_suite(context: Context, options: Options, python: Path, repo: Path,
              env: Mapping[str, str]) -> int:
    """``test``: the Debian tools the installer tests need, then pytest."""
    if options.system_packages:
        system_tools.ensure_tools(context.log.say, context.log.write)
    # The installer tests run bootstraps of their own: they get the user's sources this way.
    sources = context.pip_sources or bootstrap_pip.read_pip_sources(context.log, python,
                                                                    os.environ)
    test_env = dict(env, **bootstrap_pip.sources_env(sources))
    return bootstrap_launch.run_tests(context.log, python, repo, options.passthrough, test_env)


def finish_setup(context: Context, build: TorchBuild | None) -> int:
    """``setup``: say how to open the app."""
    if build is None:
        context.log.say("The window is set up; set up the engine on its Setup page. Open it "
                        "with: " + bootstrap_log.readme_command("run --gui-only"))
    else:
        context.log.say("Setup complete. Open the app with: "
                        + bootstrap_log.readme_command("run"))
    return 0


def run_probe(context: Context, options: Options, repo: Path) -> int:
    """``probe``: the GPU report; with ``--venv ENGINE_VENV`` also whether that engine
    environment is current for this app (see ``engine_freshness``). Nothing is installed or
    written.

    An installed app's wheel (``context.app_wheel``) is what its engine was built from.
    """
    found = gpu_probe.probe() if options.torch == "auto" else None
    build = (gpu_probe.choose(found) if found is not None
             else bootstrap_torch.pick_torch_build(context.log, options.torch))
    report = bootstrap_engine.probe_report(build, found)
    if options.venv_given:
        report.update(bootstrap_engine.engine_freshness(context, options.venv, repo,
                                                        options.locks))
    print(json.dumps(report), flush=True)
    return 0
