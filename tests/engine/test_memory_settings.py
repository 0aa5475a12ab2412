"""The engine's process memory settings (engine/runtime/memory.py) reach torch's allocator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runtime import memory

REPO = Path(__file__).resolve().parents[2]
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# How much of eight touched 8 MiB tensors the kernel backs with huge pages, in kB.
HUGE_PAGES_OF_LARGE_BLOCKS = """
import re, sys
from engine.runtime import memory
if sys.argv[1] == "configured":
    memory.configure_process()
import torch
blocks = [torch.ones(8 << 20, dtype=torch.uint8) for _ in range(8)]
with open("/proc/self/smaps_rollup") as smaps:
    print(re.search(r"AnonHugePages:\\s+(\\d+) kB", smaps.read()).group(1))
"""


def _kernel_huge_page_mode() -> str:
    try:
        return re.search(r"\[(\w+)\]", THP_MODE.read_text()).group(1)
    except (OSError, AttributeError):
        return "absent"


@pytest.mark.skipif(_kernel_huge_page_mode() in ("never", "absent"),
                    reason="the kernel offers no transparent huge pages")
def test_engine_processes_give_torch_huge_pages_for_large_blocks() -> None:
    def huge_kb(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k not in memory.HUGE_PAGES}
        result = subprocess.run([sys.executable, "-c", HUGE_PAGES_OF_LARGE_BLOCKS, mode], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=120, check=True)
        return int(result.stdout.strip())

    assert huge_kb("configured") > 0
    if _kernel_huge_page_mode() == "madvise":  # only where asked for, so the setting is what asks
        assert huge_kb("plain") == 0


def test_settings_from_the_environment_win(monkeypatch) -> None:
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    memory.bound_cpu_kernel_caches()
    memory.use_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"
