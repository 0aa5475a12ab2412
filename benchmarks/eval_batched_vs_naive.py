"""Benchmark: the evaluation's batched, length-sorted greedy generation against a naive
one-example-at-a-time loop, on the bundled default model (SmolLM2-135M-Instruct) and the bundled
sample dataset.

Three ways over the same prompts with the same settings, through the engine's own function
(engine.eval.generation.generate_batched): one at a time (the naive loop), batches in dataset
order, and batches sorted by prompt length (what `evaluate run` does). Reports wall time,
examples/s, the speed-up over the naive loop and how many outputs equal the naive loop's (greedy
decoding; padding can flip a near-tie in float arithmetic).

    TUNEBENCH_HOME=DIR python benchmarks/eval_batched_vs_naive.py [--examples 32]
        [--max-new-tokens 32] [--batch-size 8] [--device auto] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.core.workspace import atomic_write_json  # noqa: E402


def timed(model, tokenizer, prompts, max_new_tokens: int, batch_size: int, sort: bool) -> tuple[float, list[str]]:
    from engine.eval.generation import generate_batched

    started = time.perf_counter()
    outputs = generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               cancelled=threading.Event(), sort=sort)
    return time.perf_counter() - started, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "eval_batched_vs_naive.json")
    args = parser.parse_args()

    import torch

    from engine.data import importer as data_import
    from engine.data import split as data_split
    from engine.eval import generation as gen
    from engine.eval.examples import to_examples
    from engine.runtime import device

    version = data_import.resolve("sample")
    rows = list(data_split.load_rows(version))[: args.examples]
    examples = to_examples(rows, version.manifest["shape"])
    device_name = device.pick(args.device)
    base_dir = gen.prepare_base("default")
    tokenizer = gen.load_tokenizer(base_dir)
    model = gen.load_model(base_dir, gen.ModelRef("base", None), device_name)
    prompts = [gen.render_prompt(tokenizer, e) for e in examples]
    lengths = [len(gen.prompt_ids(tokenizer, p)) for p in prompts]
    timed(model, tokenizer, prompts[:2], 4, 2, True)  # warm-up: first-call allocations and kernels

    results = {}
    naive_s, naive_out = timed(model, tokenizer, prompts, args.max_new_tokens, 1, False)
    results["naive_one_at_a_time"] = naive_s
    unsorted_s, unsorted_out = timed(model, tokenizer, prompts, args.max_new_tokens, args.batch_size, False)
    results["batched_dataset_order"] = unsorted_s
    sorted_s, sorted_out = timed(model, tokenizer, prompts, args.max_new_tokens, args.batch_size, True)
    results["batched_length_sorted"] = sorted_s

    report = {
        "model": "SmolLM2-135M-Instruct (bundled)", "dataset": version.ref, "examples": len(prompts),
        "prompt_tokens": {"min": min(lengths), "max": max(lengths), "mean": round(sum(lengths) / len(lengths), 1)},
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "decoding": "greedy",
        "device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "os_cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if device_name == "cuda" else None,
        "seconds": {k: round(v, 2) for k, v in results.items()},
        "examples_per_s": {k: round(len(prompts) / v, 2) for k, v in results.items()},
        "speedup_vs_naive": {k: round(naive_s / v, 2) for k, v in results.items()},
        "outputs_equal_to_naive": {"batched_dataset_order": sum(a == b for a, b in zip(unsorted_out, naive_out)),
                                   "batched_length_sorted": sum(a == b for a, b in zip(sorted_out, naive_out))},
        "note": "Wall-clock on a shared machine; compare the ratios, not the absolute seconds.",
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    for key, value in report["seconds"].items():
        print(f"  {key:24} {value:8.2f} s  ({report['speedup_vs_naive'][key]:.2f}x)")


if __name__ == "__main__":
    main()
