"""One line naming the machine a benchmark ran on: figures from different processors differ
(bf16 is native on CPUs with AVX-512 BF16 or AMX and emulated elsewhere), so every results file
says which processor produced it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The instruction sets that decide which precision wins on the CPU.
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def describe() -> str:
    """E.g. 'x86_64 2 cores (AMD EPYC; avx2), Linux'."""
    name, flags = _cpuinfo()
    shown = [f for f in FLAGS_THAT_MATTER if f in flags] or ["none of " + "/".join(FLAGS_THAT_MATTER)]
    processor = f" ({name}; {', '.join(shown)})" if name else ""
    return f"{platform.machine()} {os.cpu_count()} cores{processor}, {platform.system()}"


def _cpuinfo() -> tuple[str, set[str]]:
    """The processor's model name and flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor(), set()
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("model name", ""), set(fields.get("flags", "").split())
