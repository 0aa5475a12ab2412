"""Which number format training computes in: the ``precision`` knob resolved for this device.

bf16 halves the frozen weights' memory and, where the hardware multiplies bf16 natively (CUDA
GPUs from Ampere on; CPUs with AVX-512 BF16 or AMX), runs the matrix multiplies about twice as
fast. On a CPU without those instructions bf16 is emulated and slower than fp32, so ``auto``
decides on the CPU by a short measurement rather than by a list of processor names.
"""

from __future__ import annotations

import functools
import logging
import time

log = logging.getLogger("engine.train")

# bf16 must beat fp32 by this much on the CPU before auto picks it: a marginal gain is not worth
# the rounding.
CPU_BF16_MIN_SPEEDUP = 1.3


def resolve(precision: str, device_name: str) -> str:
    """'fp32', 'bf16' or 'fp16' for ``precision`` ('auto' or one of those) on ``device_name``."""
    if precision != "auto":
        return precision
    if device_name == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_speedup() >= CPU_BF16_MIN_SPEEDUP else "fp32"


def torch_dtype(precision: str) -> object:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 time over bf16 time of a matmul shaped like a small model's projections (~0.1 s)."""
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return 0.0
    x, w = torch.randn(256, 1024), torch.randn(1024, 1024)
    timings = {dtype: _best_time(x.to(dtype), w.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    speedup = timings[torch.float32] / timings[torch.bfloat16]
    log.debug("CPU bf16 matmul speed-up measured: %.2fx", speedup)
    return speedup


def _best_time(x: object, w: object, repeats: int = 5) -> float:
    import torch

    best = float("inf")
    for _ in range(repeats + 1):  # the first call also sets oneDNN up
        started = time.perf_counter()
        for _ in range(4):
            torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - started)
    return best
