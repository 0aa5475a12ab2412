"""Benchmark: the Datasets page's lazy rows table on a million rows, and `data stats` throughput.

1. Rows table: writes a seeded 1,000,000-row JSONL (chat rows, as `data export` writes them),
   then measures what the window pays for it: the time to index the line offsets
   (gui.state.dataset_rows.JsonlRows), the memory that index and its row cache hold
   (tracemalloc peak), and the time to read 1,000 random rows (what scrolling asks for).
2. `data stats`: rows per second of TRL's tokenization of the training form
   (engine.data.stats on N rows with the given model's tokenizer), in this process.

Results go atomically to benchmarks/results/dataset_inspect.json and are printed.

Usage: TUNEBENCH_HOME=/tmp/bench python benchmarks/dataset_inspect.py [--rows 1000000]
       [--stats-rows 5000] [--model default]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "dataset_inspect.json"
sys.path.insert(0, str(REPO))

WORDS = ("the battery lasts all day but the screen is dim and the keyboard feels cheap while the "
         "speakers are loud clear and the price seems fair for what you get overall").split()


def chat_row(rng: random.Random) -> dict:
    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    return {"messages": [{"role": "user", "content": text(rng.randint(8, 60))},
                         {"role": "assistant", "content": text(rng.randint(4, 40))}]}


def write_rows(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            handle.write(json.dumps(chat_row(rng)) + "\n")


def bench_table(path: Path, rows: int) -> dict:
    from gui.state.dataset_rows import JsonlRows

    tracemalloc.start()
    start = time.perf_counter()
    table = JsonlRows(path)
    index_s = time.perf_counter() - start
    rng = random.Random(1)
    start = time.perf_counter()
    for _ in range(1000):
        table.row(rng.randrange(rows))
    read_s = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    table.close()
    return {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1), "index_s": round(index_s, 3),
            "ms_per_random_row": round(read_s * 1000 / 1000, 3), "python_peak_mb": round(peak / 2**20, 1)}


def model_label(model: str) -> str:
    """The model as the results name it, the same on every machine: a name or a path inside the
    models cache is recorded relative to that cache, any other path by its folder name."""
    from engine.core import paths

    candidate = Path(model).expanduser()
    if not candidate.is_absolute():
        return model
    try:
        return candidate.resolve().relative_to(paths.models_cache_dir().resolve()).as_posix()
    except ValueError:
        return candidate.name


def bench_stats(folder: Path, rows: int, model: str) -> dict:
    from engine.data import importer as data_import
    from engine.data import stats as data_stats

    file = folder / "stats.jsonl"
    write_rows(file, rows, seed=2)
    data_import.import_file(file, name="bench-stats")
    start = time.perf_counter()
    result = data_stats.data_stats("bench-stats", model, 512)
    seconds = time.perf_counter() - start
    return {"rows": rows, "model": model_label(model), "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds, 1), "median_tokens": result["tokens"]["median"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stats-rows", type=int, default=5_000)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big = folder / "rows.jsonl"
        write_rows(big, args.rows, seed=0)
        table = bench_table(big, args.rows)
        big.unlink()
        stats = bench_stats(folder, args.stats_rows, args.model)
    results = {"table": table, "stats": stats, "python": platform.python_version(),
               "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
               "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = RESULTS.with_suffix(".json.tmp")
    tmp_file.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_file, RESULTS)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
