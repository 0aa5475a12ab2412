"""Benchmark: one speed knob's effect, Tunebench's defaults with and without some train flags.

Runs `tunebench-engine train` exactly as benchmarks/train_vs_plain_trl.py runs its Tunebench side
(same model, data, seed and settings), alternating the two settings over repeats, and reports
each one's tokens/s (same count: non-padding tokens of the examples) and peak resident memory.

    python benchmarks/train_knob_ab.py --name shared_prefix --off=--no-shared-prefix \
        [--on=FLAGS] [--steps 30] [--repeats 2]

Writes benchmarks/results/<name>_ab.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402
from benchmarks.train_vs_plain_trl import DATA, tunebench  # noqa: E402
from engine.core import paths  # noqa: E402
from engine.core.workspace import atomic_write_json  # noqa: E402


def summary(runs: list[dict]) -> dict:
    speeds, peaks = [r["tokens_per_s"] for r in runs], [r["peak_rss_gb"] for r in runs]
    return {"tokens_per_s_median": round(statistics.median(speeds), 1), "tokens_per_s_each_repeat": speeds,
            "peak_rss_gb_max": max(peaks), "peak_rss_gb_each_repeat": peaks,
            "tokens": runs[0]["tokens"], "steps": runs[0]["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the knob measured; names the results file")
    parser.add_argument("--on", default="", help="train flags of the 'on' side (default: none, the defaults)")
    parser.add_argument("--off", required=True, help="train flags of the 'off' side, e.g. --no-shared-prefix")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", type=Path, default=paths.models_cache_dir() / "SmolLM2-135M-Instruct")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = {"on": args.on.split(), "off": args.off.split()}
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    run_args = argparse.Namespace(model=args.model, steps=args.steps, epochs=1.0)
    with tempfile.TemporaryDirectory(prefix="tb-knob-ab-") as tmp:
        for repeat in range(args.repeats):
            for side, flags in settings.items():
                folder = Path(tmp) / f"{side}-{repeat}"
                folder.mkdir()
                run = tunebench(run_args, folder, flags)
                run.pop("adapter")
                runs[side].append(run)
                print(side, json.dumps(run), flush=True)
    on, off = summary(runs["on"]), summary(runs["off"])
    result = {
        "machine": f"{machine.describe()}, CPU only", "date": time.strftime("%Y-%m-%d %H:%M"),
        "what": f"Tunebench's defaults ({args.on or 'no flags'}) against {args.off}, alternating, "
                f"{args.repeats} repeats each", "model": args.model.name, "data": DATA.name, "steps": args.steps,
        "on": {"flags": settings["on"], **on}, "off": {"flags": settings["off"], **off},
        "on_over_off": {"tokens_per_s": round(on["tokens_per_s_median"] / off["tokens_per_s_median"], 3),
                        "peak_rss": round(on["peak_rss_gb_max"] / off["peak_rss_gb_max"], 3)},
    }
    out = args.out or REPO / "benchmarks" / "results" / f"{args.name}_ab.json"
    atomic_write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
