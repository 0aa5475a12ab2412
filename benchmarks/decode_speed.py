"""Benchmark: decode tokens/s and time to first token, Tunebench's decoder vs `model.generate`.

Loads the default model (SmolLM2-135M-Instruct, converted in the cache of TUNEBENCH_HOME) and
answers the same chat prompts greedily with (a) plain transformers `model.generate` as loaded
by default (fp32, SDPA attention), timing the first token with a streamer, (b) the engine's
decoder (engine/infer/decode.py, with engine/infer/llama_decode.py's lean pass) with fp32 weights (the
session's ``--fp32``), (c) the same with the weight-only int8 Linear layers CPU sessions use by
default, with how often it picks fp32's greedy token (teacher forced on fp32's answers), (d) the
int8 weights through transformers' forward instead of the lean pass, and (e) int8 with an
enabled LoRA adapter. Also times a second chat turn, which reuses the KV cache of the first.
Each variant runs ``--repeats`` times; the JSON keeps every run, the best and the median (the
CPU is shared, so the best is the cleanest), and the load average while it ran. GGUF files
(raw llama.cpp, Tunebench's llama.cpp backend and the transformers path on the same file) are
benchmarks/decode_gguf.py's rows: each variant in its own process, so its peak memory is its own.

    TUNEBENCH_HOME=DIR python benchmarks/decode_speed.py [--tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402

PROMPTS = ["Write a short poem about the sea.",
           "Explain in three sentences what a kettle does.",
           "Give me three tips for learning a new language."]


def plain_generate(model: Any, tokenizer: Any, ids: list[int], tokens: int) -> dict[str, float]:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.first: float | None = None

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2:  # the first call carries the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    streamer = FirstToken()
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False,
                             streamer=streamer, pad_token_id=tokenizer.eos_token_id)
    ended = time.perf_counter()
    count = out.shape[1] - len(ids)
    if count and int(out[0, -1]) == tokenizer.eos_token_id:
        count -= 1  # generate returns the end-of-sequence token; the engine does not count it
    first = streamer.first or ended
    return {"ttft_s": first - started, "tokens": count,
            "tokens_per_s": (count - 1) / (ended - first) if count > 1 else 0.0}


def tunebench(decoder: Any, ids: list[int], tokens: int) -> dict[str, float]:
    from engine.infer.sampling import SamplingParams

    decoder.reset()
    out = decoder.run(ids, SamplingParams(temperature=0, max_new_tokens=tokens))
    return {"ttft_s": out.ttft_s or 0.0, "tokens": out.completion_tokens, "tokens_per_s": out.tokens_per_s,
            "text": out.text}


def second_turn(decoder: Any, tokenizer: Any, prompt: str, tokens: int) -> dict[str, float]:
    """Time to first token of a follow-up question, with and without the first turn's cache."""
    from engine.infer.sampling import SamplingParams
    from engine.infer.session import prompt_ids

    params = SamplingParams(temperature=0, max_new_tokens=tokens)
    history = [{"role": "user", "content": prompt}]
    decoder.reset()
    first = decoder.run(prompt_ids(tokenizer, "chat", history, ""), params)
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Shorter, please."}]
    ids = prompt_ids(tokenizer, "chat", history, "")
    warm = decoder.run(ids, params)
    colds = []
    for _ in range(3):  # the best of three: one descheduled moment on a shared CPU is not the cache's
        decoder.reset()
        colds.append(decoder.run(ids, params))
    cold = min(colds, key=lambda outcome: outcome.ttft_s or 0.0)
    return {"prompt_tokens": len(ids), "cached_tokens": warm.cached_tokens, "ttft_cached_s": warm.ttft_s or 0.0,
            "ttft_uncached_s": cold.ttft_s or 0.0, "same_text": warm.text == cold.text}


def agreement(fp32: Any, int8: Any, tokenizer: Any, inputs: list[list[int]], tokens: int) -> float:
    """Share of positions where ``int8``'s top token equals fp32's greedy token, both reading
    fp32's answer (teacher forcing), so one early difference does not count twice. fp32 is
    transformers' forward; int8 is the decoder's own pass, one token at a time as it decodes."""
    import torch

    same = total = 0
    for ids in inputs:
        answer = tokenizer(tunebench(fp32, ids, tokens)["text"], add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            reference = fp32.model(input_ids=torch.tensor([ids + answer])).logits[0, len(ids) - 1:-1].argmax(-1)
            int8.reset()
            int8._prepare_cache(ids + answer, None)
            steps = [int8._forward(ids)] + [int8._forward([token]) for token in answer[:-1]]
        picks = torch.stack([step[0] for step in steps]).argmax(-1)
        same += int((picks == reference).sum())
        total += len(answer)
    return round(same / max(total, 1), 3)


def with_lora(model: Any) -> Any:
    """``model`` with a rank-16 LoRA adapter on every projection, enabled (random, non-zero
    weights: the speed of an adapter does not depend on what it learned)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, config).eval()


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    speeds = [r["tokens_per_s"] for r in runs]
    ttfts = [r["ttft_s"] for r in runs]
    return {"tokens_per_s_best": round(max(speeds), 1), "tokens_per_s_median": round(statistics.median(speeds), 1),
            "ttft_s_best": round(min(ttfts), 3), "ttft_s_median": round(statistics.median(ttfts), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "decode_speed.json")
    args = parser.parse_args()
    import psutil
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.core.workspace import atomic_write_json
    from engine.infer.decode import Decoder
    from engine.infer.generate import attention_for
    from engine.infer.int8 import quantize_weights_int8
    from engine.infer.session import prompt_ids
    from engine.runtime import models

    load_before = round(os.getloadavg()[0], 2)  # before this script's own threads add to it
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = models.prepare("default")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    plain = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ours = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                attn_implementation=attention_for("cpu")).eval()
    decoder = Decoder(ours, tokenizer)
    inputs = [prompt_ids(tokenizer, "chat", [{"role": "user", "content": p}], "") for p in PROMPTS]
    plain_generate(plain, tokenizer, inputs[0], 4)  # warm-up: first calls allocate
    tunebench(decoder, inputs[0], 4)
    def int8_model() -> Any:
        return quantize_weights_int8(AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, attn_implementation=attention_for("cpu")).eval())

    int8 = Decoder(int8_model(), tokenizer)
    int8_hf = Decoder(int8_model(), tokenizer)
    int8_hf.lean = None  # the same int8 weights through transformers' forward
    lora = Decoder(with_lora(int8_model()), tokenizer)
    for warm in (int8, int8_hf, lora):
        tunebench(warm, inputs[0], 4)
    variants = {"generate": lambda ids: plain_generate(plain, tokenizer, ids, args.tokens),
                "tunebench": lambda ids: tunebench(decoder, ids, args.tokens),
                "tunebench_int8": lambda ids: tunebench(int8, ids, args.tokens),
                "tunebench_int8_transformers_forward": lambda ids: tunebench(int8_hf, ids, args.tokens),
                "tunebench_int8_lora": lambda ids: tunebench(lora, ids, args.tokens)}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    loads = []
    for _ in range(args.repeats):
        for ids in inputs:
            for name, variant in variants.items():
                loads.append(os.getloadavg()[0])
                rows[name].append(variant(ids))
    same = all(g["tokens"] == t["tokens"] for g, t in zip(rows["generate"], rows["tunebench"]))
    agree = agreement(decoder, int8, tokenizer, inputs, args.tokens)
    result = {
        "machine": f"{machine.describe()}; torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d %H:%M"), "model": folder.name, "activations": "float32",
        "max_new_tokens": args.tokens, "prompts": len(PROMPTS), "repeats": args.repeats,
        "load_average_during": [round(min(loads), 2), round(max(loads), 2)],
        "load_average_before": load_before,
        "note": ("shared CPU: other processes were busy when it started (load_average_before)"
                 if load_before > 0.5 else "quiet CPU when it started; the load during is mostly its own "
                 f"{torch.get_num_threads()} threads"),
        "uptime_after": os.popen("uptime").read().strip(),
        "generate": {**summary(rows["generate"]), "weights": "fp32", "top1_agreement_with_fp32": 1.0},
        "tunebench": {**summary(rows["tunebench"]), "weights": "fp32 (session --fp32)",
                      "top1_agreement_with_fp32": 1.0},
        "tunebench_int8": {**summary(rows["tunebench_int8"]),
                           "weights": "weight-only int8, per-output-channel scales, lm_head included "
                                      "(CPU session default), engine/infer/llama_decode.py's lean pass",
                           "top1_agreement_with_fp32": agree},
        "tunebench_int8_transformers_forward": {
            **summary(rows["tunebench_int8_transformers_forward"]),
            "weights": "the same int8 weights through transformers' forward (no lean pass)"},
        "tunebench_int8_lora": {**summary(rows["tunebench_int8_lora"]),
                                "weights": "int8 base + an enabled rank-16 LoRA adapter on every projection"},
        "answers": {k: [r["text"] for r in rows[k][:len(PROMPTS)]] for k in ("tunebench", "tunebench_int8")},
        "same_token_counts": same,
        "second_chat_turn": second_turn(decoder, tokenizer, PROMPTS[1], 16),
        "rss_gb": round(psutil.Process().memory_info().rss / 2**30, 2),
        "runs": {k: [{n: (round(v, 4) if isinstance(v, float) else v) for n, v in r.items() if n != "text"}
                     for r in rs] for k, rs in rows.items()},
    }
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
