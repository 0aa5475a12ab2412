"""Peak memory, measured: the process's peak resident memory on the CPU, the caching allocator's
peak (plus the CUDA context) on a GPU, and what the machine makes available. Used by the fit
probe (engine/train/probe.py). torch is imported only by the CUDA readers.

CPU peaks are the kernel's own high-water mark of resident memory: ``VmHWM`` in
``/proc/self/status`` on Linux, which a write of "5" to ``/proc/self/clear_refs`` resets to the
current resident size so each phase of a probe gets its own peak; ``ru_maxrss`` on macOS and
``peak_wset`` on Windows, which cannot be reset (a phase's peak is then the process's peak so
far). ``ru_maxrss`` of a child, as ``os.wait4`` returns it, is the same figure the kernel keeps.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

GB = 2**30

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# -- the CPU ----------------------------------------------------------------------------------

def rss_bytes() -> int:
    """The process's resident memory now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """The process's peak resident memory since it started, or since the last reset."""
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024
    if os.name == "nt":
        import psutil

        return int(psutil.Process().memory_info().peak_wset)
    import resource  # Unix only: imported here, past the Windows branch above

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024  # bytes on macOS, KiB elsewhere


def reset_peak_rss() -> bool:
    """Resets the peak to the resident memory now (Linux only); False where it cannot be reset."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def ram_available_bytes() -> int:
    """RAM this process could grow into: what the system has available now plus what the
    process already holds (its peak is measured including that)."""
    import psutil

    return int(psutil.virtual_memory().available) + rss_bytes()


def ram_total_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# -- CUDA -------------------------------------------------------------------------------------

def cuda_start() -> dict[str, int]:
    """Creates the CUDA context and reads the device: ``total`` memory, ``others`` (memory other
    processes hold) and ``context`` (this process's own before any tensor: the CUDA context and
    kernels, which nvidia-smi shows but torch's allocator does not count). NVML names this
    process's share when it answers; otherwise everything in use is taken as this process's
    context (the peak then counts other processes too, which errs on the safe side)."""
    import torch

    torch.cuda.init()
    torch.empty(1, device="cuda")  # the context and the allocator exist from here
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    in_use = total - free
    own = _nvml_own_usage()
    reserved = torch.cuda.memory_reserved()
    context = max(0, (own if own is not None else in_use) - reserved)
    return {"total": int(total), "others": int(max(0, in_use - context - reserved)), "context": int(context)}


def cuda_reset_peak() -> None:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()


def cuda_peak_reserved() -> int:
    import torch

    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_reserved())


def cuda_reserved() -> int:
    import torch

    return int(torch.cuda.memory_reserved())


def _nvml_own_usage() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index())
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory:
                return int(process.usedGpuMemory)
    except Exception:  # no NVML, no driver, a container that hides pids: the fallback applies
        return None
    return None


def gpu_total_bytes() -> int | None:
    """Memory of the first CUDA GPU this process would use, read through NVML without torch (a
    Hub search must not wait seconds for it); None without a GPU, driver or NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        if visible == "" and "CUDA_VISIBLE_DEVICES" in os.environ:
            return None  # set but empty: no GPU is visible to this process
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    except Exception:  # no NVML, no driver, no GPU: the CPU's memory applies
        return None


def nvml_index() -> int:
    """NVML numbers every GPU on the machine; torch sees those in CUDA_VISIBLE_DEVICES, in order."""
    import torch

    current = torch.cuda.current_device()
    visible = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    if current < len(visible) and visible[current].isdigit():
        return int(visible[current])
    return current


def gb(value: float) -> float:
    return round(value / GB, 3)


def describe() -> dict[str, Any]:
    """What the CPU peak reader is on this system (the probe's result says which it used)."""
    if _status_kb("VmHWM") is not None:
        return {"peak_source": "VmHWM", "resettable": _CLEAR_REFS.exists()}
    return {"peak_source": "peak_wset" if os.name == "nt" else "ru_maxrss", "resettable": False}
