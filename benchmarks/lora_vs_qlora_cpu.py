"""Benchmark: LoRA vs QLoRA (bitsandbytes NF4) training speed on this machine's CPU.

Trains the bundled default model on the bundled sample with the "CPU quick demo" settings for a
few steps with each method, through the real engine CLI, and writes tokens/s (non-padding
tokens, steps after the first) and peak resident memory to a JSON file. The "CPU quick demo"
preset's description quotes these numbers.

    python benchmarks/lora_vs_qlora_cpu.py [--steps 8] [--out benchmarks/results/lora_vs_qlora_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402
from engine.core import protocol  # noqa: E402  (stdlib only)
from engine.core.workspace import atomic_write_json  # noqa: E402


def train(method: str, steps: int, home: Path) -> dict:
    argv = [sys.executable, "-m", "engine", "train", "--json", "--preset", "cpu-quick-demo",
            "--method", method, "--max-steps", str(steps), "--warmup-steps", "0", "--device", "cpu"]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, "TUNEBENCH_HOME": str(home)},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} run failed ({done.returncode}): {done.stderr[-1500:]}")
    metrics = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "metrics"]
    speeds = [m["values"]["tokens_per_s"] for m in metrics[1:]]  # step 1 includes warm-up work
    return {"method": method, "steps": steps, "wall_s": round(time.monotonic() - started, 1),
            "tokens_per_s_median": round(statistics.median(speeds), 1),
            "peak_rss_gb": max(m["values"]["memory_gb"] for m in metrics),
            "final_loss": round(metrics[-1]["values"]["loss"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lora_vs_qlora_cpu.json")
    args = parser.parse_args()
    home = Path(os.environ.get("TUNEBENCH_HOME") or tempfile.mkdtemp(prefix="tunebench-bench-"))
    runs = [train(method, args.steps, home) for method in ("lora", "qlora")]
    result = {"machine": machine.describe(),
              "date": time.strftime("%Y-%m-%d"), "runs": runs,
              "qlora_over_lora_speed": round(runs[1]["tokens_per_s_median"] / runs[0]["tokens_per_s_median"], 2)}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
