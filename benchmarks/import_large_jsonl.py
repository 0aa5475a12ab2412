"""Benchmark: `tunebench-engine data import` of a large JSONL against `datasets.load_dataset`.

Generates a seeded JSONL of N chat rows (OpenAI messages shape) in a temp folder, then runs in
separate processes, one after the other:

- Tunebench's importer: ``python -m engine data import FILE --json`` (validates every row,
  normalises it and stores a versioned dataset);
- ``datasets.load_dataset("json", data_files=FILE)`` (parses to Arrow, no validation).

Each runs under a small wrapper process that reports the wall time and the peak RSS of exactly
that one child (``getrusage(RUSAGE_CHILDREN)`` in a fresh wrapper, so the two runs never share a
maximum; psutil polling where ``resource`` is missing, i.e. Windows). Results go atomically to
``benchmarks/results/import_large_jsonl.json`` and are printed.

Usage: python benchmarks/import_large_jsonl.py [--rows 1000000] [--seed 0] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "import_large_jsonl.json"
sys.path.insert(0, str(REPO))

WORDS = ("the battery lasts all day but the screen is dim and the keyboard feels cheap while the "
         "speakers are loud clear and the price seems fair for what you get overall").split()

# Runs one command and prints {"wall_s", "peak_rss_mb", "rc"} of that child as its last line.
MEASURE = r"""
import json, subprocess, sys, time
cmd = json.loads(sys.argv[1])
start = time.perf_counter()
try:
    import resource
except ImportError:
    resource = None
if resource is not None:
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_mb = peak_kb / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS
else:
    import psutil
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    proc, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    rc, peak_mb = child.returncode, peak / 2**20
print(json.dumps({"wall_s": time.perf_counter() - start, "peak_rss_mb": peak_mb, "rc": rc}))
"""

LOAD_DATASET = r"""
import sys, datasets
data = datasets.load_dataset("json", data_files=sys.argv[1], split="train")
print(len(data), file=sys.stderr)
"""


def generate(path: Path, rows: int, seed: int) -> None:
    """Writes ``rows`` chat rows; lengths vary like real reviews (a few to ~60 words)."""
    rng = random.Random(seed)
    system = {"role": "system", "content": "Answer with one line of JSON."}
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for index in range(rows):
            user = " ".join(rng.choices(WORDS, k=rng.randint(5, 60)))
            answer = json.dumps({"sentiment": rng.choice(("positive", "negative", "mixed")), "id": index})
            messages = [system, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            handle.write(json.dumps({"messages": messages}) + "\n")


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cmd)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {cmd} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd} exited with {result['rc']}:\n{done.stderr[-2000:]}")
    return result


def summarise(result: dict[str, Any], rows: int) -> dict[str, Any]:
    return {"wall_s": round(result["wall_s"], 2), "rows_per_s": round(rows / result["wall_s"]),
            "peak_rss_mb": round(result["peak_rss_mb"], 1)}


def run(rows: int, seed: int, keep: bool) -> dict[str, Any]:
    from engine.core.workspace import atomic_write_json

    work = Path(tempfile.mkdtemp(prefix="tunebench-bench-"))
    try:
        file = work / "large.jsonl"
        start = time.perf_counter()
        generate(file, rows, seed)
        print(f"generated {rows:,} rows ({file.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        # Private workspace and datasets cache, so neither run reuses an earlier result.
        env = dict(os.environ, TUNEBENCH_HOME=str(work / "home"), HF_DATASETS_CACHE=str(work / "hf-cache"),
                   HF_DATASETS_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1")
        tunebench = measure([sys.executable, "-m", "engine", "data", "import", str(file), "--json"], env)
        direct = measure([sys.executable, "-c", LOAD_DATASET, str(file)], env)
        results = {
            "rows": rows, "default_rows": rows == 1_000_000, "seed": seed,
            "file_mib": round(file.stat().st_size / 2**20, 1),
            "tunebench_import": summarise(tunebench, rows),
            "datasets_load_dataset": summarise(direct, rows),
            "note": "tunebench validates and normalises every row and stores a versioned dataset; "
                    "load_dataset only parses JSON to Arrow. Peak RSS is of the child process alone.",
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_json(RESULTS, results)
        return results
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the generated file and workspace")
    args = parser.parse_args()
    results = run(args.rows, args.seed, args.keep)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
