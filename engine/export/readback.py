"""How the round-trip check reads each export back: the way the tool it is for would load it.

- A GGUF file (merged or K-quant) is run by llama.cpp itself where llama-cpp-python is
  installed; else transformers' GGUF loader (the gguf package dequantises it) stands in.
- A GGUF LoRA file is run by llama.cpp with ``--lora`` over an F32 GGUF of the base weights the
  adapter was checked against, written for the check and removed after: over the user's own base
  file, if it is quantised, llama.cpp's quantised arithmetic alone moves greedy answers (measured
  on SmolLM2's Q4_1 file: the first token changed with an adapter that changed nothing in
  transformers), which says nothing about the adapter file. Bases above
  LLAMA_CPP_LORA_MAX_PARAMS, or without llama-cpp-python: the file's updates are added to the
  base weights as llama.cpp adds them (gguf_lora.read_updates), in transformers.
- A merged folder is loaded by transformers.

Which answers must be exact: F32 and F16 files read by transformers (it widens every weight to
float32 and computes in float32, so only the weights were rounded); in llama.cpp only F32, since
its F16 path also rounds the activations to 16 bits, which moved the 12th token of a repetitive
answer on SmolLM2 with a strongly perturbing test adapter. The rest are held to the rounded rule.

Each gives a :class:`Readback`: the chat tokenizer the export carries (whose template the check
compares with training's), a function answering prompts greedily, whether the answers must equal
the adapter's exactly, and which loader ran (shown in the report).
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.export import kquants, roundtrip
from engine.runtime import gguf_lora, models
from engine.runtime import gguf_writer as export_gguf

Prompts = list[list[dict[str, str]]]
LLAMA_CPP = "llama.cpp"
TRANSFORMERS = "transformers"
# The output types whose answers must equal the adapter's, by what reads them back (see above).
EXACT_TYPES = {LLAMA_CPP: frozenset({"f32"}), TRANSFORMERS: roundtrip.EXACT_TYPES}
LLAMA_CPP_LORA_MAX_PARAMS = 3_000_000_000  # the check's F32 base copy: 12 GB of disk at this size


@dataclass
class Readback:
    tokenizer: Any
    answer: Callable[[Prompts], list[roundtrip.Answer]]
    exact: bool
    loader: str


def llama_cpp_installed() -> bool:
    return kquants.available()


def gguf_file(target: Path, outtype: str) -> Readback:
    from transformers import AutoTokenizer

    if llama_cpp_installed():
        tokenizer = AutoTokenizer.from_pretrained(str(target.parent), gguf_file=target.name)
        answer = functools.partial(llama_cpp_answers, target, None, tokenizer)
        return Readback(tokenizer, answer, outtype in EXACT_TYPES[LLAMA_CPP], LLAMA_CPP)
    model, tokenizer = roundtrip.load_gguf(target)
    return Readback(tokenizer, functools.partial(roundtrip.answers, model, tokenizer),
                    outtype in EXACT_TYPES[TRANSFORMERS], TRANSFORMERS)


def lora_file(model: Any, target: Path, base: str, outtype: str) -> Readback:
    """llama.cpp takes the chat template from the base model's file, so the tokenizer is the
    base's."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(models.prepare(base)))
    plain = model.unload().eval()  # the base weights as loaded, the adapter's layers taken out unmerged
    if llama_cpp_installed() and plain.num_parameters() <= LLAMA_CPP_LORA_MAX_PARAMS:
        answer = functools.partial(lora_in_llama_cpp, plain, target, tokenizer, models.gguf_origin(base))
        return Readback(tokenizer, answer, outtype in EXACT_TYPES[LLAMA_CPP], LLAMA_CPP)
    gguf_lora.apply_updates(plain, gguf_lora.read_updates(target, plain.config))
    return Readback(tokenizer, functools.partial(roundtrip.answers, plain, tokenizer),
                    outtype in EXACT_TYPES[TRANSFORMERS], TRANSFORMERS)


def lora_in_llama_cpp(plain: Any, target: Path, tokenizer: Any, origin: Path | None,
                      prompts: Prompts) -> list[roundtrip.Answer]:
    """llama.cpp's answers with the LoRA file over an F32 GGUF of ``plain`` (the base), written
    beside the target for the check and removed after."""
    with tempfile.TemporaryDirectory(prefix=".tunebench-check-", dir=target.parent) as folder:
        tokenizer.save_pretrained(folder)
        base_file = Path(folder) / "base-f32.gguf"
        export_gguf.write(plain, Path(folder), base_file, "f32", "base", origin)
        return llama_cpp_answers(base_file, target, tokenizer, prompts)


def merged_folder(target: Path, outtype: str) -> Readback:
    model, tokenizer = roundtrip.load_folder(target)
    return Readback(tokenizer, functools.partial(roundtrip.answers, model, tokenizer),
                    outtype in EXACT_TYPES[TRANSFORMERS], TRANSFORMERS)


def llama_cpp_answers(model_path: Path, lora_path: Path | None, tokenizer: Any,
                      prompts: Prompts) -> list[roundtrip.Answer]:
    """Greedy answers from llama.cpp, fed the token ids ``tokenizer``'s chat template gives, so
    the comparison is of the weights and the template, not of two tokenizers' splitting."""
    import llama_cpp  # optional: only where llama-cpp-python is installed

    llm = llama_cpp.Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None,
                          n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False, seed=0)
    eos = tokenizer.eos_token_id
    out = []
    try:
        for messages in prompts:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"]
            tokens: list[int] = []
            ended = False
            for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
                ended = token == eos
                if ended or len(tokens) >= roundtrip.SAMPLE_TOKENS:
                    break
                tokens.append(token)
            out.append(roundtrip.Answer(tokens, tokenizer.decode(tokens, skip_special_tokens=True), ended))
    finally:
        llm.close()
    return out
