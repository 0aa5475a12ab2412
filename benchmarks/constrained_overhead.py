"""Per-token overhead of constrained decoding (JSON schema) on the CPU: xgrammar vs llguidance.

    TUNEBENCH_HOME=DIR python benchmarks/constrained_overhead.py [MODEL_DIR] [STEPS]

MODEL_DIR defaults to the default model in the workspace (DIR/cache/models/SmolLM2-135M-Instruct,
49,152 tokens). For each library: the one-off cost of building its tokenizer index and compiling
the schema, then per generated token the work decoding adds (compute the allowed-token bitmask,
apply it to a logits row of the model's vocabulary size, advance the matcher with the chosen token).
Tokens are chosen as the argmax of random logits under the mask, restarting the matcher when the
JSON is complete, so the walk covers keys, strings, enums and numbers. Writes
benchmarks/results/constrained_overhead.json and prints it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.infer.structured import apply_bitmask  # noqa: E402 (after the path to the repository)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "mood": {"enum": ["happy", "sad", "angry"]},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
    },
    "required": ["name", "mood", "age"],
    "additionalProperties": False,
}


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def walk(steps: int, vocab: int, new_matcher, fill, accept, done) -> dict[str, float]:
    """Times `steps` constrained steps, after one untimed warm-up step whose time (a library's
    one-off JIT compilation, say) is reported apart; returns per-token microsecond figures."""
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    fill(new_matcher(), torch.randn(1, vocab))
    first_step_s = time.perf_counter() - start
    matcher = new_matcher()
    times: list[float] = []
    completed = 0
    for _ in range(steps):
        logits = torch.randn(1, vocab, generator=gen)
        start = time.perf_counter()
        fill(matcher, logits)
        token = int(torch.argmax(logits, dim=-1))
        accept(matcher, token)
        times.append(time.perf_counter() - start)
        if done(matcher):
            completed += 1
            matcher = new_matcher()
    times.sort()
    return {"first_step_s": round(first_step_s, 3), "mean_us": round(statistics.fmean(times) * 1e6, 1),
            "median_us": round(statistics.median(times) * 1e6, 1),
            "p95_us": round(times[int(len(times) * 0.95)] * 1e6, 1),
            "max_us": round(times[-1] * 1e6, 1), "over_10ms": sum(t > 0.01 for t in times),
            "completed_documents": completed}


def bench_xgrammar(tokenizer, vocab: int, steps: int) -> dict:
    import xgrammar as xgr

    start = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
    compiler = xgr.GrammarCompiler(info, max_threads=1)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = compiler.compile_json_schema(json.dumps(SCHEMA))
    compile_s = time.perf_counter() - start
    bitmask = xgr.allocate_token_bitmask(1, vocab)

    def fill(matcher, logits):
        matcher.fill_next_token_bitmask(bitmask)
        xgr.apply_token_bitmask_inplace(logits, bitmask)

    def accept(matcher, token):
        assert matcher.accept_token(token), token

    per_token = walk(steps, vocab, lambda: xgr.GrammarMatcher(compiled), fill, accept,
                     lambda m: m.is_terminated() or m.accept_token(tokenizer.eos_token_id) and True)
    return {"version": _version("xgrammar"), "tokenizer_index_s": round(index_s, 3),
            "schema_compile_s": round(compile_s, 4), **per_token}


def bench_llguidance(tokenizer, vocab: int, steps: int) -> dict:
    import llguidance
    import llguidance.hf
    import llguidance.torch

    start = time.perf_counter()
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(SCHEMA))
    first = llguidance.LLMatcher(ll_tokenizer, grammar)
    compile_s = time.perf_counter() - start
    assert not first.get_error(), first.get_error()
    bitmask = llguidance.torch.allocate_token_bitmask(1, vocab)

    def fill(matcher, logits):
        llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
        llguidance.torch.apply_token_bitmask_inplace(logits, bitmask)

    def accept(matcher, token):
        assert matcher.consume_token(token), matcher.get_error()

    def done(matcher):
        return matcher.is_stopped() or matcher.is_accepting() and matcher.consume_token(tokenizer.eos_token_id)

    def fill_plain(matcher, logits):  # what engine.infer.structured does: no TorchScript
        llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
        logits.copy_(apply_bitmask(logits, bitmask))

    new = lambda: llguidance.LLMatcher(ll_tokenizer, grammar)  # noqa: E731
    per_token = walk(steps, vocab, new, fill, accept, done)
    plain = walk(steps, vocab, new, fill_plain, accept, done)
    return {"version": _version("llguidance"), "tokenizer_index_s": round(index_s, 3),
            "schema_compile_s": round(compile_s, 4), **per_token,
            "with_tunebench_apply_bitmask": plain}


def main() -> None:
    home = Path(os.environ.get("TUNEBENCH_HOME", "."))
    model_dir = sys.argv[1] if len(sys.argv) > 1 else str(home / "cache/models/SmolLM2-135M-Instruct")
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    result = {"model": Path(model_dir).name, "vocab_size": vocab, "steps": steps,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": 1, "schema": SCHEMA, "libraries": {}}
    # The floor: a full-vocabulary argmax alone, what an unconstrained greedy step already does.
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randn(1, vocab, generator=gen) for _ in range(200)]
    start = time.perf_counter()
    for row in rows:
        int(torch.argmax(row, dim=-1))
    result["argmax_only_us"] = round((time.perf_counter() - start) / len(rows) * 1e6, 1)
    for name, bench in (("xgrammar", bench_xgrammar), ("llguidance", bench_llguidance)):
        try:
            result["libraries"][name] = bench(tokenizer, vocab, steps)
        except Exception as exc:  # noqa: BLE001 (a library missing or failing is a result too)
            result["libraries"][name] = {"error": f"{type(exc).__name__}: {exc}"}
    out = Path(__file__).parent / "results" / "constrained_overhead.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
