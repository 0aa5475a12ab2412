"""Benchmark: Tunebench's training engine against a plain TRL SFTTrainer + peft script.

Both sides train the same model on the same rows (resources/sample_data/product_reviews.jsonl as
prompt/completion conversations, so both learn the answers only) with the same seed, epochs,
micro-batch (4), max length (256), LoRA (r 16, alpha 32, all linear layers, no dropout) and
learning rate (5e-4, linear). The baseline (benchmarks/train_plain_trl.py) runs in fp32 without
gradient checkpointing; Tunebench runs `tunebench-engine train` with its default speed settings
(padding-free batches, the answer-only chunked loss, bf16 where the CPU measures faster).

Measured the same way on both sides, each in its own process, alternating over repeats:
- tokens/s: non-padding tokens (TRL's num_tokens, which both sides log) over the wall time
  between the first and the last step's log (the first step is warm-up);
- peak memory: the process's peak resident set (os.wait4's ru_maxrss);
- the final loss on the same tokens: each side's saved adapter scored by one shared fp32
  forward (benchmarks/answer_loss.py) on the answers of the first --eval-rows rows.

    TUNEBENCH_HOME=DIR python benchmarks/train_vs_plain_trl.py [--epochs 1] [--steps 0] [--repeats 2]

Writes benchmarks/results/train_vs_plain_trl.json (or --out).
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
from engine.core import paths, protocol  # noqa: E402  (stdlib only)
from engine.core.workspace import atomic_write_json  # noqa: E402

DATA = REPO / "resources" / "sample_data" / "product_reviews.jsonl"
SEED = 42
SHARED_FLAGS = ["--method", "lora", "--device", "cpu", "--batch-size", "4", "--max-length", "256",
                "--learning-rate", "5e-4", "--lr-scheduler", "linear", "--warmup-steps", "0", "--lora-r", "16",
                "--lora-alpha", "32", "--lora-dropout", "0", "--target-modules", "all-linear",
                "--seed", str(SEED), "--sample-count", "0"]


def run_measured(argv: list[str], env: dict, folder: Path) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak RSS in GB) of one child process."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[1:3]} failed: {err.read_text()[-3000:]}")
    return out.read_text(), wall, usage.ru_maxrss / 2**20  # Linux reports KiB


def throughput(points: list[tuple[float, float]]) -> float:
    """points: (time, cumulative non-padding tokens) at each step's log, step 1 first."""
    (t0, n0), (t1, n1) = points[0], points[-1]
    return round((n1 - n0) / (t1 - t0), 1)


def tunebench(args: argparse.Namespace, folder: Path, extra: list[str]) -> dict:
    home = folder / "home"
    length = ["--max-steps", str(args.steps)] if args.steps else ["--epochs", str(args.epochs)]
    argv = [sys.executable, "-m", "engine", "train", "--json", "--model", str(args.model), "--dataset", str(DATA),
            *SHARED_FLAGS, *length, "--save-steps", "100000", *extra]
    stdout, wall, peak = run_measured(argv, {**os.environ, "TUNEBENCH_HOME": str(home)}, folder)
    messages = [protocol.decode(line) for line in stdout.splitlines()]
    steps = [m for m in messages if m["type"] == "metrics" and "loss" in m["values"]]
    result = next(m for m in messages if m["type"] == "result")
    points = [(m["t"], m["tokens"]) for m in steps]
    return {"side": "tunebench", "flags": extra, "steps": len(steps), "wall_s": round(wall, 1),
            "peak_rss_gb": round(peak, 3), "tokens_per_s": throughput(points),
            "tokens": points[-1][1], "adapter": result["data"]["adapter"]}


def plain(args: argparse.Namespace, folder: Path) -> dict:
    argv = [sys.executable, str(REPO / "benchmarks" / "train_plain_trl.py"), str(args.model), str(DATA),
            str(args.epochs), str(args.steps), str(SEED), str(folder)]
    _, wall, peak = run_measured(argv, dict(os.environ), folder)
    logs = json.loads((folder / "plain.json").read_text())["logs"]
    points = [(e["time"], e["num_tokens"]) for e in logs]
    return {"side": "plain_trl", "steps": len(logs), "wall_s": round(wall, 1), "peak_rss_gb": round(peak, 3),
            "tokens_per_s": throughput(points), "tokens": points[-1][1], "adapter": str(folder / "adapter")}


def final_loss(args: argparse.Namespace, adapter: str) -> float:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "answer_loss.py"), str(args.model), adapter,
                           str(DATA), str(args.eval_rows)], capture_output=True, text=True, check=True)
    return round(json.loads(done.stdout.splitlines()[-1])["answer_loss"], 4)


def combine(runs: list[dict]) -> dict:
    """One side over its repeats: median speed, highest peak memory, each repeat listed."""
    first = {k: v for k, v in runs[0].items() if k != "adapter"}
    first["tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in runs), 1)
    first["tokens_per_s_each_repeat"] = [r["tokens_per_s"] for r in runs]
    first["peak_rss_gb"] = max(r["peak_rss_gb"] for r in runs)
    first["peak_rss_gb_each_repeat"] = [r["peak_rss_gb"] for r in runs]
    first["wall_s"] = [r["wall_s"] for r in runs]
    first["final_loss_each_repeat"] = [r["final_loss"] for r in runs]
    first["final_loss"] = runs[0]["final_loss"]
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=0, help="train this many steps instead of --epochs")
    parser.add_argument("--model", type=Path, default=paths.models_cache_dir() / "SmolLM2-135M-Instruct")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per side, alternating, to even out load from other jobs on the machine")
    parser.add_argument("--eval-rows", type=int, default=40, help="rows whose answers score the final loss")
    parser.add_argument("--tunebench-flags", default="", help="extra train flags for the Tunebench side, "
                        "e.g. '--precision fp32' to measure one optimisation at a time")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_vs_plain_trl.json")
    args = parser.parse_args()
    extra = args.tunebench_flags.split()
    sides: dict[str, list[dict]] = {"tunebench": [], "plain_trl": []}
    with tempfile.TemporaryDirectory(prefix="tb-vs-trl-") as tmp:
        for repeat in range(args.repeats):
            for name in sides:
                folder = Path(tmp) / f"{name}-{repeat}"
                folder.mkdir()
                run = tunebench(args, folder, extra) if name == "tunebench" else plain(args, folder)
                run["final_loss"] = final_loss(args, run["adapter"])
                sides[name].append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "adapter"}), flush=True)
    ours, theirs = combine(sides["tunebench"]), combine(sides["plain_trl"])
    result = {
        "machine": f"{machine.describe()}, CPU only",
        "date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model.name, "epochs": args.epochs,
        "steps": args.steps, "repeats": args.repeats, "data": DATA.name, "seed": SEED, "eval_rows": args.eval_rows,
        "runs": [ours, theirs],
        "tunebench_over_plain": {
            "tokens_per_s": round(ours["tokens_per_s"] / theirs["tokens_per_s"], 2),
            "peak_rss": round(ours["peak_rss_gb"] / theirs["peak_rss_gb"], 2),
            "final_loss_relative_difference": round(abs(ours["final_loss"] - theirs["final_loss"])
                                                    / theirs["final_loss"], 4)},
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
