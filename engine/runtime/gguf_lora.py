"""Writing a run's LoRA adapter alone as a GGUF adapter file, the one llama.cpp loads with
``--lora FILE`` on top of the base model's own GGUF (``llama-cli -m base.gguf --lora FILE``), and
reading it back for the round-trip check.

The layout is llama.cpp's convert_lora_to_gguf.py's: ``general.type`` "adapter",
``adapter.type`` "lora", ``adapter.lora.alpha``, and per adapted weight two tensors named after the
base tensor (``blk.0.attn_q.weight.lora_a`` [rank x in] and ``.lora_b`` [out x rank]). llama.cpp
adds ``alpha / rank * B @ A`` to the base weight; the q and k rows of the base GGUF are reordered
for its rotary layout, so ``lora_b`` of q and k gets the same reorder (A does not see rows).

Only what that formula can express is written: plain or rank-stabilised LoRA on the decoder's
Linear layers. DoRA, trained embeddings or heads (``modules_to_save``) and other adapter types are
refused in one line, with the merged GGUF export as the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.core import errors
from engine.runtime import gguf_writer

OUTTYPES = ("f16", "q8_0", "f32")
ADAPTER_NAME = "default"
MERGED_INSTEAD = "export --format gguf (merged) instead"


@dataclass
class LoraPair:
    hf_name: str  # the base weight it adapts, e.g. model.layers.0.self_attn.q_proj.weight
    a: Any  # [rank x in], float32 numpy
    b: Any  # [out x rank], float32 numpy, Hugging Face's row order
    alpha: float  # llama.cpp's alpha: scale = alpha / rank


def pairs(model: Any) -> list[LoraPair]:
    """The adapter's A and B matrices per adapted base weight, with the alpha that gives peft's
    own scale under llama.cpp's ``alpha / rank`` rule (rsLoRA's alpha / sqrt(rank) included)."""
    from peft.tuners.lora import LoraLayer

    _check_adapter_kind(model)
    out = []
    for module_name, module in model.base_model.model.named_modules():
        if not isinstance(module, LoraLayer) or ADAPTER_NAME not in module.lora_A:
            continue
        if module.use_dora.get(ADAPTER_NAME):
            raise errors.invalid_input(f"run: the adapter uses DoRA, which llama.cpp's LoRA files cannot hold; "
                                       f"{MERGED_INSTEAD}")
        if ".layers." not in f".{module_name}":
            raise errors.invalid_input(f"run: the adapter trains {module_name}, outside the decoder layers; "
                                       f"llama.cpp's LoRA files hold decoder weights only; {MERGED_INSTEAD}")
        a = module.lora_A[ADAPTER_NAME].weight.detach().float().cpu().numpy()
        b = module.lora_B[ADAPTER_NAME].weight.detach().float().cpu().numpy()
        alpha = float(module.scaling[ADAPTER_NAME]) * a.shape[0]
        out.append(LoraPair(f"{module_name}.weight", a, b, alpha))
    if not out:
        raise errors.invalid_input("run: the adapter has no LoRA weights to write")
    return out


def _check_adapter_kind(model: Any) -> None:
    config = getattr(model, "peft_config", {}).get(ADAPTER_NAME)
    kind = str(getattr(getattr(config, "peft_type", None), "value", "full fine-tune"))
    if config is None or kind != "LORA":
        raise errors.invalid_input(f"run: a GGUF adapter file holds a LoRA adapter; this run is {kind.lower()}: "
                                   f"{MERGED_INSTEAD}")
    if getattr(config, "modules_to_save", None):
        raise errors.invalid_input(f"run: the adapter also trains {', '.join(config.modules_to_save)} in full, "
                                   f"which llama.cpp's LoRA files cannot hold; {MERGED_INSTEAD}")


def write(model: Any, target: Path, outtype: str, name: str,
          progress: Callable[[int, int], None] | None = None) -> None:
    """Writes the adapter of ``model`` (a PeftModel over a Llama-family base) to ``target``."""
    import gguf

    config = model.base_model.model.config
    gguf_writer.check_exportable(config)
    found = pairs(model)
    alphas = {round(pair.alpha, 6) for pair in found}
    if len(alphas) > 1:  # one alpha per file in llama.cpp; peft allows one per layer
        raise errors.invalid_input(f"run: the adapter's layers use {len(alphas)} different alpha/rank scales; "
                                   f"a GGUF LoRA file has one; {MERGED_INSTEAD}")
    writer = gguf.GGUFWriter(str(target), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, found[0].alpha)
    writer.add_name(name)
    writer.add_file_type(gguf_writer.file_type(outtype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for index, pair in enumerate(found, start=1):
        base_name = _gguf_name(name_map, pair.hf_name)
        for suffix, matrix in (("lora_a", pair.a), ("lora_b", _rotary_rows(pair, config))):
            data, qtype = gguf_writer.encode(matrix, outtype)
            writer.add_tensor(f"{base_name}.{suffix}", data, raw_dtype=qtype)
        if progress:
            progress(index, len(found))
    gguf_writer.finish(writer)


def _gguf_name(name_map: Any, hf_name: str) -> str:
    gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight",))
    if gguf_name is None:
        raise errors.invalid_input(f"run: GGUF has no name for the adapted weight {hf_name}; {MERGED_INSTEAD}")
    return str(gguf_name)


def _rotary_rows(pair: LoraPair, config: Any) -> Any:
    """B's rows in llama.cpp's q/k order (B carries the output rows; A is per input column)."""
    import numpy as np

    if pair.hf_name.endswith("q_proj.weight"):
        return np.ascontiguousarray(gguf_writer.permute(pair.b, config.num_attention_heads))
    if pair.hf_name.endswith("k_proj.weight"):
        return np.ascontiguousarray(gguf_writer.permute(pair.b, config.num_key_value_heads))
    return pair.b


def read_updates(target: Path, config: Any) -> dict[str, Any]:
    """What llama.cpp adds to each base weight, read back from the file: ``alpha / rank * B @ A``
    as float32 tensors in Hugging Face's row order, keyed by the GGUF base tensor name. The q/k
    rows are put back with transformers' own GGUF reader's reorder, not this module's, so a
    wrong reorder on the way out cannot cancel itself on the way in."""
    import gguf
    import torch
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    reader = gguf.GGUFReader(str(target))
    field = reader.fields.get(gguf.Keys.Adapter.LORA_ALPHA)
    if field is None:
        raise errors.invalid_input(f"file: {target} has no {gguf.Keys.Adapter.LORA_ALPHA}; it is not a LoRA GGUF")
    alpha = float(field.contents())
    tensors = {tensor.name: gguf.quants.dequantize(tensor.data, tensor.tensor_type) for tensor in reader.tensors}
    processor = LlamaTensorProcessor(config={"num_attention_heads": config.num_attention_heads,
                                             "num_key_value_heads": config.num_key_value_heads})
    updates = {}
    for name, a in tensors.items():
        if not name.endswith(".lora_a"):
            continue
        base_name = name.removesuffix(".lora_a")
        a_matrix = torch.from_numpy(a.astype("float32"))
        update = (torch.from_numpy(tensors[f"{base_name}.lora_b"].astype("float32")) @ a_matrix).numpy()
        update = processor.process(update, base_name).weights * (alpha / a_matrix.shape[0])
        updates[base_name] = torch.from_numpy(update.copy())
    return updates


def apply_updates(model: Any, updates: dict[str, Any]) -> None:
    """Adds the file's updates into a plain (adapter-free) model's weights, as llama.cpp does."""
    import gguf
    import torch

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, model.config.num_hidden_layers)
    weights = dict(model.named_parameters())
    by_gguf_name = {name_map.get_name(hf_name, try_suffixes=(".weight",)): hf_name for hf_name in weights}
    with torch.no_grad():
        for gguf_name, update in updates.items():
            hf_name = by_gguf_name.get(gguf_name)
            if hf_name is None:
                raise errors.invalid_input(f"file: the LoRA tensor {gguf_name} matches no weight of the base model")
            weights[hf_name].add_(update.to(weights[hf_name].dtype))
