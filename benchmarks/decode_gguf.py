"""Benchmark rows of decode_speed.py for GGUF files: raw llama.cpp, Tunebench's llama.cpp backend
and Tunebench's transformers path, each in its own process (so its peak memory is its own).

The default model (SmolLM2-135M-Instruct) is written as Q8_0 and Q4_0 GGUF files with
engine/runtime/gguf_writer.py, and a random rank-16 LoRA on every projection (the speed of an adapter does
not depend on what it learned) is used with and without. Raw llama.cpp is llama-cpp-python's
``create_completion`` streaming greedily on the same file and threads (the adapter through its
``lora_path``); Tunebench's rows go through the session's model pool and decoder, with token
log-probabilities on as the Prompt page asks for them. Memory: each child's peak resident size;
``model_gb``, the peak less what the process held after importing torch and transformers (which
every row imports: the tokenizer is transformers'); ``resident_gb``, what it still holds after
its answers, less the same baseline (the model, its KV cache and the tokenizer, without the
transient peaks of loading). Time to first token twice: cold, every answer on an empty cache (a
session's first prompt), and warm, each prompt after another answer, so the chat template's shared
start is already in the KV cache (the Prompt page from its second prompt on).

    python benchmarks/decode_gguf.py [--tokens 64] [--repeats 3] [--threads 2]
    python benchmarks/decode_gguf.py --variant NAME --model FILE [--adapter DIR] ...   (one child)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROMPTS = ["Write a short poem about the sea.",
           "Explain in three sentences what a kettle does.",
           "Give me three tips for learning a new language."]
VARIANTS = ("llama_cpp_raw", "tunebench_llama_cpp", "tunebench_transformers_int8")


def chat_ids(tokenizer: Any) -> list[list[int]]:
    from engine.infer.session import prompt_ids

    return [prompt_ids(tokenizer, "chat", [{"role": "user", "content": p}], "") for p in PROMPTS]


def raw_llama_cpp(model: Path, adapter: Path | None, threads: int, tokens: int, repeats: int) -> list[dict]:
    """llama-cpp-python on its own: the reference."""
    import llama_cpp
    from transformers import AutoTokenizer

    lora = None
    if adapter is not None:
        from engine.infer.gguf_backend import gguf_lora_file

        lora = gguf_lora_file(adapter, model)
    tokenizer = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                          lora_path=str(lora) if lora else None, verbose=False)
    runs = []
    inputs = chat_ids(tokenizer)
    llm.create_completion(inputs[0], max_tokens=4, temperature=0.0)  # warm-up
    for _ in range(repeats):
        for ids in inputs:
            llm.reset()  # each answer starts cold (an empty cache, as a session's first prompt)
            started = time.perf_counter()
            first, count = None, 0
            for _chunk in llm.create_completion(ids, max_tokens=tokens, temperature=0.0, top_k=1, stream=True):
                count += 1
                first = first or time.perf_counter()
            ended = time.perf_counter()
            runs.append({"ttft_s": (first or ended) - started, "tokens": count,
                         "tokens_per_s": (count - 1) / (ended - first) if first and count > 1 else 0.0})
    for ids in inputs:  # warm: the previous answer's KV cache is kept, so only the new prompt's tail is read
        started = time.perf_counter()
        next(iter(llm.create_completion(ids, max_tokens=1, temperature=0.0, top_k=1, stream=True)))
        runs.append({"warm": True, "ttft_s": time.perf_counter() - started})
    return runs


def tunebench_rows(model: Path, adapter: Path | None, threads: int, tokens: int, repeats: int,
                   backend: str) -> list[dict]:
    from engine.infer.sampling import SamplingParams
    from engine.infer.session import ModelPool, run_on, set_threads

    set_threads(threads)
    pool = ModelPool("cpu", max_models=1, int8=True, backend=backend, threads=threads, context=2048)
    target = pool.target(str(model), str(adapter) if adapter else "", lambda c, t: None)
    params = SamplingParams(temperature=0, max_new_tokens=tokens)
    inputs = chat_ids(target.tokenizer)
    run_on(target, inputs[0], SamplingParams(temperature=0, max_new_tokens=4), 5, threading.Event(), None)
    runs = []
    for _ in range(repeats):
        for ids in inputs:
            target.base.decoder.reset()  # each answer starts cold
            out = run_on(target, ids, params, 5, threading.Event(), lambda event: None)
            runs.append({"ttft_s": out.ttft_s or 0.0, "tokens": out.completion_tokens,
                         "tokens_per_s": out.tokens_per_s, "text": out.text})
    for ids in inputs:  # warm: as the Prompt page's next prompt, the previous answer's KV cache kept
        out = run_on(target, ids, SamplingParams(temperature=0, max_new_tokens=1), 5, threading.Event(), None)
        runs.append({"warm": True, "ttft_s": out.ttft_s or 0.0})
    return runs


def rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def child(args: argparse.Namespace) -> None:
    adapter = Path(args.adapter) if args.adapter else None
    import torch  # noqa: F401  (every variant's Python libraries are in memory before the baseline)
    import transformers  # noqa: F401

    base = rss_gb()
    if args.variant == "llama_cpp_raw":
        runs = raw_llama_cpp(Path(args.model), adapter, args.threads, args.tokens, args.repeats)
    else:
        backend = "llama.cpp" if args.variant == "tunebench_llama_cpp" else "transformers"
        runs = tunebench_rows(Path(args.model), adapter, args.threads, args.tokens, args.repeats, backend)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak_kb / 2**20
    print(json.dumps({"runs": runs, "peak_rss_gb": round(peak, 3), "model_gb": round(peak - base, 3),
                      "resident_gb": round(rss_gb() - base, 3)}))


def summary(runs: list[dict]) -> dict[str, float]:
    """Speeds and cold first-token times from the answers started on an empty cache; warm
    first-token times from prompts that follow another answer (the chat template's shared start,
    system turn included, is already in the cache, as on the Prompt page after its first prompt)."""
    cold = [r for r in runs if not r.get("warm")]
    speeds = [r["tokens_per_s"] for r in cold]
    ttfts = [r["ttft_s"] for r in cold]
    warm = [r["ttft_s"] for r in runs if r.get("warm")]
    return {"tokens_per_s_best": round(max(speeds), 1), "tokens_per_s_median": round(statistics.median(speeds), 1),
            "ttft_s_best": round(min(ttfts), 3), "ttft_s_median": round(statistics.median(ttfts), 3),
            "ttft_s_warm_best": round(min(warm), 3), "ttft_s_warm_median": round(statistics.median(warm), 3)}


def files(folder: Path) -> tuple[dict[str, Path], Path]:
    """The default model as Q8_0 and Q4_0 GGUF files, and a random LoRA adapter folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.runtime import gguf_writer as export_gguf
    from engine.runtime import models

    source = models.prepare("default")
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    out = {}
    for outtype in ("q8_0", "q4_0"):
        out[outtype] = folder / f"smollm2-{outtype}.gguf"
        export_gguf.write(model, source, out[outtype], outtype, "SmolLM2-135M-Instruct", models.gguf_origin("default"))
    torch.manual_seed(0)
    config = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    adapter = folder / "adapter"
    get_peft_model(model, config).save_pretrained(str(adapter))
    return out, adapter


def run_child(variant: str, model: Path, adapter: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--variant", variant, "--model", str(model), "--tokens", str(args.tokens),
            "--repeats", "1", "--threads", str(args.threads)] + (["--adapter", str(adapter)] if adapter else [])
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant on every file, with and without the adapter, one child process each. The
    repeats are interleaved (each repeat runs every variant once, in turn), so a busy spell of the
    shared CPU slows all variants alike instead of one."""
    with tempfile.TemporaryDirectory(prefix="tunebench-decode-gguf-") as tmp:
        ggufs, adapter = files(Path(tmp))
        table: dict[str, Any] = {}
        for outtype, model in ggufs.items():
            for lora in (None, adapter):
                found: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
                for _ in range(args.repeats):
                    for variant in VARIANTS:
                        found[variant].append(run_child(variant, model, lora, args))
                row: dict[str, Any] = {}
                for variant, children in found.items():
                    runs = [run for child in children for run in child["runs"]]
                    cold = [run for run in runs if not run.get("warm")]
                    row[variant] = {**summary(runs), "peak_rss_gb": max(c["peak_rss_gb"] for c in children),
                                    "model_gb": max(c["model_gb"] for c in children),
                                    "resident_gb": max(c["resident_gb"] for c in children),
                                    "answers": [r.get("text", "") for r in cold[:len(PROMPTS)]]}
                raw, ours = row["llama_cpp_raw"], row["tunebench_llama_cpp"]
                row["tunebench_llama_cpp_vs_raw"] = round(ours["tokens_per_s_median"] / raw["tokens_per_s_median"], 3)
                row["tunebench_llama_cpp_vs_transformers_int8"] = round(
                    ours["tokens_per_s_median"] / row["tunebench_transformers_int8"]["tokens_per_s_median"], 2)
                table[f"{outtype}{' + lora' if lora else ''}"] = row
        return {"file_sizes_mb": {k: round(v.stat().st_size / 2**20, 1) for k, v in ggufs.items()}, **table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--model", default="")
    parser.add_argument("--adapter", default="")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "decode_speed_gguf.json")
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    from benchmarks import machine
    from engine.core.workspace import atomic_write_json

    started = time.strftime("%Y-%m-%d %H:%M")
    result = {"machine": machine.describe(), "date": started, "threads": args.threads, "max_new_tokens": args.tokens,
              "prompts": len(PROMPTS), "repeats": args.repeats, "greedy": True, **run_all(args)}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
