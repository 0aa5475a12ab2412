"""Benchmark: Tunebench's engine against a plain TRL SFTTrainer + peft script.

Both train the same model on the same data (resources/sample_data/product_reviews.jsonl) with the
same seed, steps, batch (4), max length (256), LoRA (r 16, alpha 32, all linear layers, no
dropout) and learning rate (5e-4, linear) on the CPU -- Tunebench through `tunebench-engine
train` as a subprocess, the baseline through benchmarks/train_plain_trl.py, which keeps every
default a tutorial keeps. Each side's throughput is measured the same way: non-padding tokens
(TRL's num_tokens) over wall time between the Trainer's step logs, median over the steps after
the first. Peak memory is each process's peak resident set (os.wait4). Writes
benchmarks/results/train_vs_plain_trl.json.

    TUNEBENCH_HOME=/tmp/tbhome python benchmarks/train_vs_plain_trl.py [--steps 10] [--model DIR]

The two final losses are not the same quantity: Tunebench learns from the answers only
(completion-only loss), the tutorial script from every token of the conversation; the JSON
records that with the other default that differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.core import protocol  # noqa: E402  (stdlib only)
from engine.core.workspace import atomic_write_json  # noqa: E402

DATA = REPO / "resources" / "sample_data" / "product_reviews.jsonl"
DEFAULT_MODEL = Path(os.environ.get("TUNEBENCH_HOME", "/tmp/tbhome")) / "cache" / "models" / "SmolLM2-135M-Instruct"
SEED = 42


def run_measured(argv: list[str], env: dict, folder: Path) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak RSS in GB) of one child process."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[1:3]} failed: {err.read_text()[-2000:]}")
    return out.read_text(), wall, usage.ru_maxrss / 2**20  # Linux reports KiB


def median_speed(points: list[tuple[float, float]]) -> float:
    """points: (time, cumulative non-padding tokens) at each step's log, step 1 first."""
    speeds = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(points, points[1:]) if b[0] > a[0]]
    return round(statistics.median(speeds), 1)


def tunebench(model: Path, steps: int, folder: Path) -> dict:
    home = folder / "home"
    argv = [sys.executable, "-m", "engine", "train", "--json", "--model", str(model), "--dataset", str(DATA),
            "--method", "lora", "--device", "cpu", "--max-steps", str(steps), "--batch-size", "4",
            "--max-length", "256", "--learning-rate", "5e-4", "--lr-scheduler", "linear", "--warmup-steps", "0",
            "--lora-r", "16", "--lora-alpha", "32", "--lora-dropout", "0", "--target-modules", "all-linear",
            "--seed", str(SEED), "--save-steps", str(steps), "--sample-count", "0"]
    stdout, wall, peak = run_measured(argv, {**os.environ, "TUNEBENCH_HOME": str(home)}, folder)
    metrics = [m for m in map(protocol.decode, stdout.splitlines()) if m["type"] == "metrics" and "loss" in m["values"]]
    # The engine's tokens_per_s is the same figure median_speed computes for the baseline:
    # new num_tokens over the time between two step logs; step 1 (warm-up) is left out.
    speeds = [m["values"]["tokens_per_s"] for m in metrics[1:]]
    return {"side": "tunebench", "steps": len(metrics), "wall_s": round(wall, 1), "peak_rss_gb": round(peak, 3),
            "tokens_per_s_median": round(statistics.median(speeds), 1),
            "final_loss": round(metrics[-1]["values"]["loss"], 4)}


def plain(model: Path, steps: int, folder: Path) -> dict:
    result = folder / "plain.json"
    argv = [sys.executable, str(REPO / "benchmarks" / "train_plain_trl.py"), str(model), str(DATA), str(steps),
            str(SEED), str(result)]
    _, wall, peak = run_measured(argv, dict(os.environ), folder)
    data = json.loads(result.read_text())
    logs = data.pop("logs")
    return {"side": "plain_trl", "steps": len(logs), "wall_s": round(wall, 1), "peak_rss_gb": round(peak, 3),
            "tokens_per_s_median": median_speed([(e["time"], e["num_tokens"]) for e in logs]),
            "non_padding_tokens": logs[-1]["num_tokens"], "final_loss": round(logs[-1]["loss"], 4),
            "defaults_kept": data}


def combine(runs: list[dict]) -> dict:
    """One side's figures over its repeats: the median speed and the highest peak memory; the
    loss is deterministic (same seed), so any repeat's is the run's."""
    first = dict(runs[0])
    first["tokens_per_s_median"] = round(statistics.median(r["tokens_per_s_median"] for r in runs), 1)
    first["tokens_per_s_each_repeat"] = [r["tokens_per_s_median"] for r in runs]
    first["peak_rss_gb"] = max(r["peak_rss_gb"] for r in runs)
    first["wall_s"] = [r["wall_s"] for r in runs]
    first["final_loss_each_repeat"] = [r["final_loss"] for r in runs]
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per side, alternating, to even out load from other jobs on the machine")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_vs_plain_trl.json")
    args = parser.parse_args()
    sides: dict[str, list[dict]] = {"tunebench": [], "plain_trl": []}
    with tempfile.TemporaryDirectory(prefix="tb-vs-trl-") as tmp:
        for repeat in range(args.repeats):
            for name, run in (("tunebench", tunebench), ("plain_trl", plain)):
                folder = Path(tmp) / f"{name}-{repeat}"
                folder.mkdir()
                sides[name].append(run(args.model, args.steps, folder))
    ours, theirs = (combine(runs) for runs in sides.values())
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}, CPU only "
                   "(shared with other jobs while measured: absolute figures are noisy)",
        "date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model.name, "steps": args.steps,
        "repeats": args.repeats, "data": DATA.name, "seed": SEED,
        "runs": [ours, theirs],
        "tunebench_over_plain": {
            "tokens_per_s": round(ours["tokens_per_s_median"] / theirs["tokens_per_s_median"], 2),
            "peak_rss": round(ours["peak_rss_gb"] / theirs["peak_rss_gb"], 2),
            "final_loss": round(ours["final_loss"] / theirs["final_loss"], 2)},
        "notes": "Same model, data, seed, steps, batch, max length, LoRA and learning rate. Losses differ in "
                 "kind: Tunebench masks the prompt (completion-only loss), the tutorial trains on every token. "
                 "TRL's own defaults kept by the tutorial script are listed under defaults_kept (on a CPU, "
                 "bf16 autocast and gradient checkpointing); Tunebench uses fp32 and no checkpointing on a CPU. "
                 "Other jobs shared the CPU while this ran: compare the repeats before reading the ratio.",
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
