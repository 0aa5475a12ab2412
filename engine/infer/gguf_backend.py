"""The llama.cpp backend: GGUF models decoded by llama-cpp-python, their weights kept quantised.

Why: transformers dequantises a GGUF file to float32 (a 7B Q4 file becomes about 28 GB of RAM)
and decodes at about a quarter of llama.cpp's speed on a CPU (benchmarks/decode_speed.py). With
llama.cpp the memory is about the file's size plus the KV cache, and the speed is llama.cpp's.

``auto`` picks it for a .gguf model (or an adapter over one), except the bundled default model,
on the CPU, and on a GPU when the build can offload to one; the session, ``serve`` and ``batch``
ask :func:`choose`. The chat template and the stop strings go through the same Hugging Face
tokenizer as the transformers backend (read from the GGUF file), so both backends see the same
prompt ids.

Differences from the transformers decoder, by llama.cpp's design:
- reported log-probabilities are those of the model's raw logits (before the repetition penalty
  and a JSON schema's mask), read from llama.cpp's last logits row;
- the repetition penalty counts the generated tokens, not the prompt's;
- a JSON schema becomes llama.cpp's grammar (llama-cpp-python's converter, compact spacing, with
  llama.cpp's own string character class). The grammar reads token bytes as UTF-8: a run of
  invalid bytes (a random test model writes them) passes as one character, so a string's
  ``maxLength`` can be exceeded once the text is decoded with U+FFFD for each bad byte.

Adapters: a Tunebench (peft) LoRA adapter is written once as a GGUF LoRA file in the cache
(engine.runtime.gguf_lora's writer, llama.cpp's adapter format), then attached to the loaded
model; each request turns it on at its scale, or off, without reloading the model.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import re
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.core import errors, paths, untrusted
from engine.infer import structured
from engine.infer.decode import Outcome, TextAssembler, TokenEvent, eos_ids
from engine.infer.params import ANY_JSON, SamplingParams
from engine.runtime import gguf_lora

log = logging.getLogger("engine.infer.gguf_backend")

AUTO = "auto"
LLAMA_CPP = "llama.cpp"
TRANSFORMERS = "transformers"
BACKENDS = (AUTO, LLAMA_CPP, TRANSFORMERS)
LOOSE_CHAR = r'char ::= [^"\\] |'
STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'
DEFAULT_CONTEXT = 4096  # tokens of KV cache; the model's own training context when smaller


OUTSIDE_LAYERS = ("lm_head", "embed_tokens", "wte", "word_embeddings")  # adapted modules no LoRA GGUF holds


def installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def gpu_offload() -> bool:
    import llama_cpp  # optional: only where llama-cpp-python is installed

    return bool(llama_cpp.llama_supports_gpu_offload())


def adapter_problem(adapter_dir: Path) -> str:
    """Why llama.cpp's LoRA files cannot hold this peft adapter, or "" when they can; read from its
    adapter_config.json alone (an unreadable one is left for the adapter's loader to report)."""
    try:
        config = untrusted.json_loads(untrusted.read_text(adapter_dir / "adapter_config.json"))
    except (OSError, untrusted.InputError):
        return ""
    if not isinstance(config, dict):
        return ""
    kind = str(config.get("peft_type") or "LORA")
    if kind.upper() != "LORA":
        return f"it is a {kind} adapter, not LoRA"
    if config.get("use_dora"):
        return "it uses DoRA"
    if config.get("modules_to_save"):
        return f"it also trains {', '.join(map(str, config['modules_to_save']))} in full"
    targets = config.get("target_modules")
    outside = [t for t in targets if str(t) in OUTSIDE_LAYERS] if isinstance(targets, list) else []
    if outside:
        return f"it trains {', '.join(outside)}, outside the decoder layers"
    return ""


def is_lora_file(adapter_spec: str) -> bool:
    """Whether an adapter is named by a .gguf file (a LoRA for llama.cpp) rather than a folder or run."""
    return adapter_spec.lower().endswith(".gguf") and Path(adapter_spec).expanduser().is_file()


def lora_file_problem(path: Path) -> str:
    """Why ``path`` is not a GGUF LoRA adapter file, or "" when it is (its header alone is read)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError, KeyError, struct.error) as exc:
        return f"not a readable GGUF file ({exc})"
    kind = reader.fields.get(gguf.Keys.Adapter.TYPE)
    if kind is None or kind.contents() != "lora":
        return "a GGUF model, not a LoRA adapter file: choose it as the model"
    return ""


def choose(backend: str, gguf_file: Path | None, device: str, bundled: bool = False,
           adapter: Path | None = None) -> str:
    """The backend that runs a model whose GGUF file is ``gguf_file`` (None: never was GGUF).

    ``auto`` leaves the bundled default model (``bundled``) on transformers: it is the model the
    quick demo trains, and transformers runs its adapters with the training's own arithmetic;
    llama.cpp is one choice away per column. ``auto`` also leaves an ``adapter`` that llama.cpp
    cannot hold (:func:`adapter_problem`) to transformers. An explicit llama.cpp that cannot run
    is a one-line error, never a silent switch."""
    if backend == TRANSFORMERS:
        return TRANSFORMERS
    if backend == LLAMA_CPP:
        if gguf_file is None:
            raise errors.usage("backend: llama.cpp runs .gguf models; this model is a Hugging Face folder")
        if not installed():
            raise errors.missing_dependency("backend: llama-cpp-python is not installed; run "
                                            "`python3 installer/bootstrap.py setup` to build it, or use transformers")
        return LLAMA_CPP
    if backend != AUTO:
        raise errors.usage(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    usable = gguf_file is not None and not bundled and installed() and (device == "cpu" or gpu_offload())
    problem = adapter_problem(adapter) if usable and adapter is not None else ""
    if problem:
        log.info("transformers runs %s: llama.cpp cannot, as %s", adapter, problem)
        return TRANSFORMERS
    return LLAMA_CPP if usable else TRANSFORMERS


# ---------------------------------------------------------------- the loaded model


@dataclass
class GgufBase:
    """A GGUF model loaded by llama.cpp, with the LoRA adapters attached to it by folder.
    Has what the session's Target needs of a base: tokenizer(s), weights, nbytes."""

    key: str
    llm: Any
    tokenizer: Any
    decoder: "LlamaCppDecoder"
    nbytes: int
    weights: str
    adapters: dict[str, Any] = field(default_factory=dict)  # adapter folder -> llama_adapter_lora_p
    tokenizers: dict[str, Any] = field(default_factory=dict)  # llama.cpp keeps the base's vocabulary
    backend: str = LLAMA_CPP

    def attach(self, adapter: Path) -> str:
        """Loads ``adapter`` once: a peft LoRA folder (written as a GGUF LoRA file) or a GGUF LoRA
        file itself. Returns its key."""
        import llama_cpp

        key = str(adapter.resolve())
        if key in self.adapters:
            return key
        problem = adapter_problem(adapter) if adapter.is_dir() else ""
        if problem:
            raise errors.invalid_input(f"adapter: llama.cpp cannot run {adapter.name}: {problem}; pick the "
                                       "transformers backend (Auto does), or load its merged GGUF export")
        lora_file = adapter if adapter.is_file() else gguf_lora_file(adapter, Path(self.key))
        pointer = llama_cpp.llama_adapter_lora_init(self.llm.model, str(lora_file).encode())
        if not pointer:
            raise errors.invalid_input(f"adapter: llama.cpp could not load {adapter} over {Path(self.key).name} "
                                       f"(is it an adapter of this base model?)")
        self.adapters[key] = pointer
        log.info("Attached adapter %s to llama.cpp", adapter)
        return key

    def close(self) -> None:
        self.llm.close()  # llama.cpp frees a model's adapters with the model


def load(gguf_file: Path, device: str, threads: int, context: int) -> GgufBase:
    import llama_cpp
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    threads = threads or os.cpu_count() or 1
    settings = {"model_path": str(gguf_file), "n_threads": threads, "n_threads_batch": threads,
                "n_gpu_layers": -1 if device == "cuda" else 0, "verbose": False}
    llm = llama_cpp.Llama(n_ctx=context, **settings)
    trained = llm._model.n_ctx_train()
    if llm.n_ctx() > trained > 0:  # no use for cache past the model's trained context: load again (mmap, fast)
        llm.close()
        llm = llama_cpp.Llama(n_ctx=trained, **settings)
    llm.last_n_tokens_size = llm.n_ctx()  # the repetition penalty sees the whole answer, as transformers'
    size = gguf_file.stat().st_size
    return GgufBase(str(gguf_file), llm, tokenizer, LlamaCppDecoder(llm, tokenizer), size, file_type(llm))


def file_type(llm: Any) -> str:
    """The GGUF's weight type as llama.cpp names it, e.g. Q8_0 or Q4_K_M."""
    import gguf

    raw = llm.metadata.get("general.file_type")
    try:
        name = gguf.LlamaFileType(int(raw)).name if raw is not None else "gguf"
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"type {raw}"


# ---------------------------------------------------------------- adapters as GGUF LoRA files


def gguf_lora_file(adapter_dir: Path, base_gguf: Path) -> Path:
    """The adapter as a GGUF LoRA file for the base model ``base_gguf``, in the cache: written the
    first time (and again after the adapter's weights change)."""
    weights = next((adapter_dir / n for n in ("adapter_model.safetensors", "adapter_model.bin")
                    if (adapter_dir / n).is_file()), None)
    if weights is None:
        raise errors.not_found(f"adapter: {adapter_dir} has no adapter_model.safetensors")
    stat = weights.stat()
    digest = hashlib.sha256(f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = paths.cache_dir() / "gguf-lora" / f"{adapter_dir.name}-{digest}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_gguf_lora(adapter_dir, _config_of(base_gguf), target)
    return target


def _config_of(gguf_file: Path) -> Any:
    """The Hugging Face config of a GGUF model, read from the file's metadata alone."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)


def _write_gguf_lora(adapter_dir: Path, config: Any, target: Path) -> None:
    """Writes the folder's LoRA weights through engine.runtime.gguf_lora, over a base built on the
    meta device: only the adapter's own matrices are ever in memory, whatever the base's size."""
    import torch
    from peft import PeftModel
    from peft.utils import load_peft_weights
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    model = PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=gguf_lora.ADAPTER_NAME,
                                      low_cpu_mem_usage=True)
    # peft leaves the adapter's tensors on the meta device with a meta base: assign the real ones.
    named = {re.sub(r"\.(lora_A|lora_B|lora_magnitude_vector)\.", rf".\1.{gguf_lora.ADAPTER_NAME}.", k): v
             for k, v in load_peft_weights(str(adapter_dir), device="cpu").items()}
    model.load_state_dict(named, strict=False, assign=True)
    partial = target.with_name(f".{target.name}.partial")
    gguf_lora.write(model, partial, "f32", adapter_dir.name)
    partial.replace(target)
    log.info("Wrote %s as a GGUF LoRA file for llama.cpp: %s", adapter_dir, target)


# ---------------------------------------------------------------- decoding


class LlamaCppDecoder:
    """Generates for one llama.cpp model; the same ``run`` as engine.infer.decode.Decoder.

    llama.cpp keeps the KV cache of the last sequence and reuses its longest common prefix with
    the next prompt (a chat's earlier turns); ``cache_key`` (the adapter) and the adapter's scale
    name what the cache was computed under, and a change drops it."""

    def __init__(self, llm: Any, tokenizer: Any) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.lock = threading.Lock()
        self._cache_key: Any = None
        # The tokens transformers' decoder stops on (the tokenizer read from the same file), not
        # llama.cpp's wider end-of-generation guess by token name, which can take in a padding
        # token: both backends end the same answers.
        self.stop_ids = set(eos_ids(None, tokenizer))
        self._row_type: Any = None
        self._scratch: Any = None

    def reset(self) -> None:
        """Forgets the cached sequence: the next prompt is computed in full."""
        self.llm.reset()

    def use_adapter(self, pointer: Any, scale: float) -> None:
        """Turns one attached adapter on at ``scale``, or every adapter off (None)."""
        import llama_cpp

        if pointer is None:
            llama_cpp.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
            return
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(pointer)
        scales = (ctypes.c_float * 1)(scale)
        if llama_cpp.llama_set_adapters_lora(self.llm.ctx, adapters, 1, scales):
            raise errors.invalid_input("adapter: llama.cpp refused to apply the adapter to this model")

    def run(self, prompt_ids: list[int], params: SamplingParams, *, top_logprobs: int = 0,
            cancelled: threading.Event | None = None, cache_key: Any = None,
            on_token: Callable[[TokenEvent], None] | None = None, adapter: Any = None,
            adapter_scale: float = 1.0) -> Outcome:
        """As Decoder.run; ``adapter`` (an attached adapter, named by ``cache_key``) is turned on at
        ``adapter_scale`` for this answer, or every adapter off when None."""
        structured.check(params.json_schema)  # a bad schema fails here, before the model is touched
        prompt_ids = prompt_ids or [self.llm.token_bos()]
        room = self.llm.n_ctx() - len(prompt_ids)
        if room < 1:
            raise errors.usage(f"prompt: {len(prompt_ids)} tokens do not fit the {self.llm.n_ctx()}-token context")
        with self.lock:
            if (cache_key, adapter_scale) != self._cache_key:  # other weights: the cached keys are stale
                self.use_adapter(adapter, adapter_scale)
                self.llm.reset()
                self._cache_key = (cache_key, adapter_scale)
            return self._loop(prompt_ids, params, min(params.max_new_tokens, room), top_logprobs,
                              cancelled or threading.Event(), on_token)

    def _loop(self, prompt_ids: list[int], params: SamplingParams, limit: int, top_logprobs: int,
              cancelled: threading.Event, on_token: Callable[[TokenEvent], None] | None) -> Outcome:
        started = time.perf_counter()
        reused = _common_prefix(list(self.llm._input_ids), prompt_ids)
        self.llm.set_seed(params.seed % 2**32 if params.seed is not None else secrets.randbits(32))
        assembler = TextAssembler(self.tokenizer, () if params.json_schema else params.stop)
        finish, count, first_at = "length", 0, None
        tokens = self.llm.generate(prompt_ids, reset=True, grammar=grammar(params.json_schema), **sampler(params))
        try:
            for token in tokens:
                if cancelled.is_set():
                    finish = "cancelled"
                    break
                if token in self.stop_ids:
                    finish = "stop"
                    break
                piece = assembler.add(token)
                count += 1
                first_at = first_at or time.perf_counter()
                if on_token:
                    on_token(self._event(count - 1, token, piece, top_logprobs))
                if assembler.stopped:
                    finish = "stop_string"
                    break
                if count >= limit:
                    break
        finally:
            tokens.close()
        tail = assembler.finish()
        if tail and on_token:
            on_token(TokenEvent(count, -1, tail, 0.0))
        ended = time.perf_counter()
        rate = (count - 1) / (ended - first_at) if first_at and count > 1 and ended > first_at else 0.0
        return Outcome(assembler.sent, finish, len(prompt_ids), count,
                       first_at - started if first_at else None, rate, min(reused, len(prompt_ids) - 1))

    def _event(self, index: int, token: int, piece: str, top_logprobs: int) -> TokenEvent:
        """The token with its log-probability (and the top alternatives), from the logits row
        llama.cpp just sampled from."""
        import llama_cpp
        import numpy as np

        if self._scratch is None:  # one row type and one buffer: this runs for every token
            self._row_type = ctypes.c_float * self.llm.n_vocab()
            self._scratch = np.empty(self.llm.n_vocab(), dtype=np.float32)
        address = ctypes.addressof(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1).contents)
        row = np.frombuffer(self._row_type.from_address(address), dtype=np.float32)
        peak = float(row.max())
        np.subtract(row, peak, out=self._scratch)
        norm = peak + float(np.log(np.exp(self._scratch, out=self._scratch).sum()))
        top: list[tuple[str, float]] = []
        if top_logprobs:
            best = np.argpartition(row, -top_logprobs)[-top_logprobs:]
            best = best[np.argsort(-row[best])]
            # As the transformers decoder: the token's log-probability, the alternatives' probabilities.
            top = [(self.tokenizer.decode([int(i)]), round(float(np.exp(row[i] - norm)), 6)) for i in best]
        return TokenEvent(index, token, piece, round(float(row[token]) - norm, 6), top)


def sampler(params: SamplingParams) -> dict[str, Any]:
    """llama.cpp's sampler settings for these parameters (its own 'off' values where ours are off)."""
    return {"temp": params.temperature, "top_k": params.top_k, "top_p": params.top_p, "min_p": params.min_p,
            "typical_p": 1.0, "repeat_penalty": params.repetition_penalty}


def grammar(json_schema: str) -> Any:
    """llama.cpp's grammar for the schema ("any" = any JSON object), or None without one."""
    if not json_schema:
        return None
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = '{"type": "object"}' if json_schema == ANY_JSON else json_schema
    try:
        rules = json_schema_to_gbnf(schema)
        # llama-cpp-python's string character class lets control characters through, which JSON
        # forbids unescaped (measured: a \x03 inside a string); llama.cpp's own converter's class:
        rules = rules.replace(LOOSE_CHAR, STRICT_CHAR)
        return llama_cpp.LlamaGrammar.from_string(rules, verbose=False)
    except Exception as exc:  # the converter raises plain exceptions for what it cannot express
        raise errors.usage(f"params.json_schema: llama.cpp cannot turn this schema into a grammar: "
                           f"{errors.one_line(exc)}") from None


def _common_prefix(cached: list[int], prompt: list[int]) -> int:
    count = 0
    for a, b in zip(cached, prompt):
        if a != b:
            break
        count += 1
    return count
