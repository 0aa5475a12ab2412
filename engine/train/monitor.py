"""What the hardware is doing during a run, for the metrics events: memory (peak GPU memory from
torch on CUDA, the process's resident memory otherwise) and, where NVIDIA's management library
answers (nvidia-ml-py, optional), GPU utilisation, temperature and device memory in use.

A value the machine cannot give is left out, never sent as 0: the plots show a gap, not a lie.
Also the TensorBoard writer for the run folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.runtime.peak import nvml_index as _nvml_index

log = logging.getLogger("engine.train.run")

_nvml_state: dict[str, Any] = {}  # "handle" once NVML answered, "failed" once it did not


def hardware_metrics(on_cuda: bool) -> dict[str, float]:
    values = {"memory_gb": _torch_memory_gb() if on_cuda else _rss_gb()}
    if on_cuda:
        values.update(nvml_metrics())
    return values


def _torch_memory_gb() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def _rss_gb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**30, 3)


def nvml_metrics() -> dict[str, float]:
    """gpu_util (%), gpu_temp_c and gpu_memory_used_gb (the whole device, other processes
    included) from NVML; {} when the library or the driver does not answer."""
    handle = _nvml_handle()
    if handle is None:
        return {}
    import pynvml

    values: dict[str, float] = {}
    readers = {
        "gpu_util": lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        "gpu_temp_c": lambda: float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        "gpu_memory_used_gb": lambda: round(pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30, 3),
    }
    for key, read in readers.items():
        try:
            values[key] = read()
        except pynvml.NVMLError:  # some boards do not report every sensor
            continue
    return values


def _nvml_handle() -> Any:
    if "handle" in _nvml_state or "failed" in _nvml_state:
        return _nvml_state.get("handle")
    try:
        import pynvml

        pynvml.nvmlInit()
        _nvml_state["handle"] = pynvml.nvmlDeviceGetHandleByIndex(_nvml_index())
    except Exception as exc:  # ImportError, NVMLError (no driver), a bad index: all mean "no NVML"
        _nvml_state["failed"] = True
        log.debug("NVML unavailable, GPU utilisation and temperature not reported: %s", exc)
        return None
    return _nvml_state["handle"]


def tensorboard_callbacks(folder: Path) -> list[Any]:
    """transformers' TensorBoardCallback writing into ``folder`` (loss, lr, grad_norm and every
    other number the Trainer logs), or nothing when neither tensorboard nor tensorboardX is
    installed."""
    from transformers.integrations import TensorBoardCallback, is_tensorboard_available

    if not is_tensorboard_available():
        log.warning("TensorBoard files are not written: install tensorboard (pip install tensorboard)")
        return []
    callback = TensorBoardCallback()
    callback.logging_dir = str(folder)  # the documented alternative is a process-wide env var
    return [callback]
