"""What this machine offers: torch build, CUDA device, memory, bitsandbytes. Imports torch."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
from typing import Any

from engine.core import errors, protocol
from engine.core.job import Job

PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def probe() -> dict[str, Any]:
    """The device probe sent in every heavy job's hello and shown by ``check-env``."""
    import psutil
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_count": psutil.cpu_count(logical=True),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(device="cuda", device_name=props.name,
                    gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}",
                    bf16=torch.cuda.is_bf16_supported())
    return info


def pick(requested: str) -> str:
    """Resolves 'auto' to the best device; refuses 'cuda' on a machine without one."""
    import torch


    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise errors.missing_dependency(
            "device: cuda was asked for but no CUDA GPU is usable here (torch "
            f"{torch.__version__}); use --device cpu or auto")
    return requested


def check_env(args: argparse.Namespace, job: Job) -> int:
    """`tunebench-engine check-env`: versions and device, as a result message."""

    data = {"packages": package_versions(), **probe()}
    try:
        import bitsandbytes  # noqa: F401  (import proves the native library loads)

        data["bitsandbytes_ok"] = True
    except Exception as exc:  # any failure to load the native library counts as unusable
        data["bitsandbytes_ok"] = False
        data["bitsandbytes_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    job.channel.send(protocol.result(data))
    return protocol.ExitCode.OK
