"""Process memory settings that keep a training process's resident memory near what it uses,
without slowing it down.

Two allocators hold on to memory the process no longer needs unless told otherwise:

- glibc's malloc serves large blocks with mmap only below a threshold that it raises by itself
  each time such a block is freed (up to 32 MB), and the heap does not shrink when tensors are
  freed. Fixing the threshold makes blocks above it mmap'd, so freeing one returns its pages at
  once -- but every such allocation then costs page faults. See MMAP_THRESHOLD_BYTES.
- oneDNN's kernel caches (see CPU_KERNEL_CACHE_ENTRIES).

And one setting makes the large blocks cheaper to map (HUGE_PAGES).

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
# Measured on the default model (2-core AMD EPYC, bf16, LoRA, micro-batch 4, max length 256, 15
# steps): at glibc's starting value of 128 KiB nearly every activation was mmap'd afresh and the
# page faults took 28 s of system time, 133 tokens/s at a 1.48 GB peak; at 256 KiB 211 tokens/s,
# 1.50 GB; at 1 MiB 358 tokens/s, 1.68 GB (2.3 s of system time); at 32 MiB (glibc's own ceiling)
# no faster and no smaller. 1 MiB keeps the large MLP and logits blocks returning to the system.
# Below the threshold the heap keeps what a step frees: on the default model in fp32, 0.35 GB of
# free heap at the end of a forward pass (malloc_trim returned it). Trimming after every decoder
# layer took the peak from 1.61 to 1.37 GB but each step 20% longer (the pages fault back in);
# laying the saved bf16 copies out in separate 16 MiB slabs did not shrink it.
MMAP_THRESHOLD_BYTES = 2**20

# oneDNN, which runs the CPU's bf16 matrix multiplies, keeps a compiled kernel for every matrix
# shape it meets, in two caches of 1024 entries each (its primitive cache and ideep's LRU cache).
# Padding-free batches give nearly every step new shapes, so a bf16 CPU run's memory grew with
# every step for hundreds of steps. Measured on a 2-core AMD EPYC (AVX-512 BF16), torch 2.13 CPU,
# LoRA, sample dataset, micro-batch 4, max length 256: the tiny test model's peak went from 0.60 GB
# after 2 steps to 1.53 GB after 60; SmolLM2-135M's from 1.86 GB to 2.37 GB after 20. A step meets
# few distinct kernels, every layer sharing them (counted with ONEDNN_VERBOSE on the tiny model:
# 30 for LoRA, 40 for DoRA, 20 for a full fine-tune), so 64 entries keep a step's kernels cached
# and bound the growth: the tiny model's 60 steps then peaked at 0.65 GB in the same CPU time
# (68 s vs 67 s uncapped). 32 would thrash with DoRA (a new kernel at every layer). Each cached
# primitive holds its prepacked weights (about 2 MB each on the default model): the primitive cache
# at 128 entries peaked 65 MB above 64. ideep's LRU cache is not needed by the matrix multiplies:
# at 1 entry the default model ran as fast (366 vs 366 tokens/s) with a 1.59 GB peak against 1.63.
CPU_KERNEL_CACHE_ENTRIES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": 64, "LRU_CACHE_CAPACITY": 1}


# PyTorch's CPU allocator can align blocks of 2 MiB and more to 2 MiB and ask Linux for
# transparent huge pages on them (madvise; THP_MEM_ALLOC_ENABLE, read at torch's first
# allocation). A training step maps and unmaps its large activations afresh (the mmap threshold
# above), and each 4 KiB page costs a fault; a huge page takes one fault per 2 MiB. Measured on
# the default model (2-core AMD EPYC without AVX-512, fp32, LoRA, micro-batch 4, max length 256,
# 19 steps): 2.42 s per step against 2.62-2.70 s, system time 7.4 s against 9-10 s, the same
# 1.59 GB peak.
HUGE_PAGES = {"THP_MEM_ALLOC_ENABLE": "1"}


def configure_process() -> None:
    """All settings, at the start of every engine command, before torch is imported, its first
    allocation of size and its first matrix multiply."""
    return_freed_memory()
    bound_cpu_kernel_caches()
    use_huge_pages()


def use_huge_pages() -> None:
    """Huge pages for torch's large CPU blocks (see HUGE_PAGES) unless the environment says
    otherwise; Linux only, where the kernel's transparent huge pages exist."""
    if sys.platform.startswith("linux"):
        for name, value in HUGE_PAGES.items():
            os.environ.setdefault(name, value)


def bound_cpu_kernel_caches() -> None:
    """Caps oneDNN's kernel caches (see CPU_KERNEL_CACHE_ENTRIES) unless the environment sets
    them. oneDNN reads these at its first matrix multiply, so this runs before a job's first."""
    for name, entries in CPU_KERNEL_CACHE_ENTRIES.items():
        os.environ.setdefault(name, str(entries))


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
