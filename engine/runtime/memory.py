"""Process memory settings that keep a training process's resident memory near what it uses.

Two allocators hold on to memory the process no longer needs unless told otherwise:

- glibc's malloc serves large blocks with mmap only below a threshold that it raises by itself
  each time such a block is freed (up to 32 MB). After the first training steps every activation
  tensor then comes from the heap, and the heap does not shrink when tensors are freed: measured on
  the default model, a LoRA run's resident memory settled about 0.5 GB above what it was using.
  Fixing the threshold (which also stops glibc raising it) makes large tensors mmap'd again, so
  freeing one returns its pages at once. Other platforms' allocators need nothing here.
- oneDNN's kernel caches (see CPU_KERNEL_CACHE_ENTRIES).

Measuring memory is engine/runtime/peak.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("engine")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
# glibc's own starting value: a small model's activations are a few hundred KB each, so a higher
# threshold would leave most of them on the heap.
MMAP_THRESHOLD_BYTES = 128 * 2**10

# oneDNN, which runs the CPU's bf16 matrix multiplies, keeps a compiled kernel for every matrix
# shape it meets, in two caches of 1024 entries each (its primitive cache and ideep's LRU cache).
# Padding-free batches give nearly every step new shapes, so a bf16 CPU run's memory grew with
# every step for hundreds of steps. Measured on a 2-core AMD EPYC (AVX-512 BF16), torch 2.13 CPU,
# LoRA, sample dataset, micro-batch 4, max length 256: the tiny test model's peak went from 0.60 GB
# after 2 steps to 1.53 GB after 60; SmolLM2-135M's from 1.86 GB to 2.37 GB after 20. A step meets
# few distinct kernels, every layer sharing them (counted with ONEDNN_VERBOSE on the tiny model:
# 30 for LoRA, 40 for DoRA, 20 for a full fine-tune), so 64 entries keep a step's kernels cached
# and bound the growth: the tiny model's 60 steps then peaked at 0.65 GB in the same CPU time
# (68 s vs 67 s uncapped). 32 would thrash with DoRA (a new kernel at every layer).
CPU_KERNEL_CACHE_ENTRIES = 64
CPU_KERNEL_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def configure_process() -> None:
    """Both settings, at the start of every engine command, before its first allocation of size
    and its first matrix multiply."""
    return_freed_memory()
    bound_cpu_kernel_caches()


def bound_cpu_kernel_caches() -> None:
    """Caps oneDNN's kernel caches (see CPU_KERNEL_CACHE_ENTRIES) unless the environment sets
    them. oneDNN reads these at its first matrix multiply, so this runs before a job's first."""
    for name in CPU_KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, str(CPU_KERNEL_CACHE_ENTRIES))


def return_freed_memory() -> bool:
    """Fixes glibc's mmap threshold; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("malloc mmap threshold fixed at %d bytes: %s", MMAP_THRESHOLD_BYTES, done)
    return done
