"""Writing a merged Llama-family model as one GGUF file, the format llama.cpp, LM Studio and
Ollama load.

The layout follows llama.cpp's own converter (convert_hf_to_gguf.py) for the "llama"
architecture: its tensor names (from the gguf package's name map), its q/k row order, its
hyper-parameter keys. The tokenizer is described with the gguf package's vocab readers; when
the base model itself came from a GGUF file (the bundled default), that file's tokenizer
fields are copied as they are, so the pre-tokenizer name llama.cpp needs stays exact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from engine.core import errors

log = logging.getLogger("engine.runtime.gguf_writer")

OUTTYPES = ("f16", "q8_0", "q5_0", "q4_0", "f32")
# Block types the gguf package quantises itself (K-quants need llama.cpp's own quantizer).
BLOCK_TYPES = {"q8_0": "Q8_0", "q5_0": "Q5_0", "q4_0": "Q4_0"}


def check_exportable(config: Any) -> None:
    """One line when llama.cpp's "llama" layout cannot describe this model."""
    if getattr(config, "model_type", None) != "llama":
        raise errors.invalid_input(
            f"format: GGUF export supports Llama-family models (SmolLM, TinyLlama, Llama 3); this one is "
            f"{getattr(config, 'model_type', 'unknown')!r}: export --format merged and convert it with "
            "llama.cpp's convert_hf_to_gguf.py")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise errors.invalid_input(
            f"format: GGUF export does not write {rope['rope_type']!r} rope scaling; export --format merged and "
            "convert it with llama.cpp's convert_hf_to_gguf.py")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise errors.invalid_input("format: GGUF export does not write attention or MLP biases; export "
                                   "--format merged instead")


def write(model: Any, tokenizer_dir: Path, target: Path, outtype: str, name: str,
          source_gguf: Path | None = None, progress: Callable[[int, int], None] | None = None) -> None:
    """Writes ``model`` (a plain LlamaForCausalLM, adapters merged) to ``target``."""
    import gguf

    config = model.config
    check_exportable(config)
    writer = gguf.GGUFWriter(str(target), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_hyperparameters(writer, config, name, outtype)
    if source_gguf is not None:
        _copy_tokenizer_fields(writer, source_gguf)
    else:
        _add_tokenizer(writer, tokenizer_dir, config.vocab_size)
    tensors = _tensors(model, outtype)
    for index, (tensor_name, data, qtype) in enumerate(tensors, start=1):
        writer.add_tensor(tensor_name, data, raw_dtype=qtype)
        if progress:
            progress(index, len(tensors))
    finish(writer)


def finish(writer: Any) -> None:
    """Header, metadata, then the tensors: the order a GGUF file is laid out in."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_hyperparameters(writer: Any, config: Any, name: str, outtype: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_file_type(file_type(outtype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def file_type(outtype: str) -> Any:
    """The ``general.file_type`` llama.cpp records for a file written in ``outtype``."""
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
            "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[outtype]


def _copy_tokenizer_fields(writer: Any, source: Path) -> None:
    """Every ``tokenizer.*`` field of the base model's own GGUF file, values and types as they are."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), kind, sub_type=sub_type)


def _add_tokenizer(writer: Any, folder: Path, vocab_size: int) -> None:
    """The tokenizer of a Hugging Face folder: GPT-2 style byte-level BPE (SmolLM, Llama 3,
    Qwen) or a byte-fallback Llama tokenizer (Llama 2, TinyLlama), as llama.cpp reads them."""
    import gguf

    vocab = None
    for reader in (gguf.BpeVocab, gguf.LlamaHfVocab):
        try:
            vocab = reader(folder)
            break
        except (FileNotFoundError, TypeError, ValueError, KeyError):
            continue
    if vocab is None:
        raise errors.invalid_input(f"tokenizer: {folder} is neither a byte-level BPE nor a Llama tokenizer; "
                                   "GGUF export cannot describe it (export --format merged instead)")
    tokens, scores, types = [], [], []
    for text, score, token_type in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(token_type)
    # The embedding matrix may be padded past the tokenizer's last id; llama.cpp wants one entry
    # per row, so the padding rows become unused placeholder tokens (as its converter does).
    for pad in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{pad}]".encode("utf-8"))
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model(vocab.tokenizer_model)
    # llama.cpp's converter names the pre-tokenizer by hashing known tokenizers' output; this
    # writer does not carry that table, so llama.cpp falls back to its default splitting.
    log.warning("The GGUF's pre-tokenizer is written as 'default': llama.cpp may split text slightly "
                "differently from %s's own tokenizer. For an exact file, export --format merged and "
                "convert it with llama.cpp's convert_hf_to_gguf.py.", folder.name)
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if vocab.tokenizer_model == "llama":
        writer.add_token_scores(scores)
    special = gguf.SpecialVocab(folder, load_merges=vocab.tokenizer_model == "gpt2", n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)


def _tensors(model: Any, outtype: str) -> list[tuple[str, Any, Any]]:
    """(GGUF name, numpy data, GGML type) for every weight, q and k rows reordered for
    llama.cpp's rotary layout, matrices in ``outtype`` and norm vectors in F32."""
    import gguf
    import numpy as np

    config = model.config
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses the embedding matrix when there is no output tensor
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise errors.invalid_input(f"model: GGUF export has no name for the weight {hf_name}")
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute(data, config.num_key_value_heads)
        out.append((gguf_name, *encode(np.ascontiguousarray(data), _tensor_type(hf_name, outtype))))
    return out


def permute(weights: Any, heads: int) -> Any:
    """Hugging Face keeps each head's rotary halves apart; llama.cpp interleaves them."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensor_type(hf_name: str, outtype: str) -> str:
    """The embedding matrix (also the output head when tied) and the output head stay at 8 bits
    under 4- and 5-bit files, as llama.cpp's quantizer keeps them above the rest: every token's
    logits go through them, and 4 bits there costs the most quality per byte saved."""
    if outtype in ("q5_0", "q4_0") and hf_name in ("model.embed_tokens.weight", "lm_head.weight"):
        return "q8_0"
    return outtype


def encode(data: Any, outtype: str) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    if data.ndim < 2 or outtype == "f32":
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if outtype in BLOCK_TYPES:
        qtype = getattr(gguf.GGMLQuantizationType, BLOCK_TYPES[outtype])
        # A row that is not whole blocks cannot be quantised; llama.cpp falls back the same way.
        if data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            return gguf.quants.quantize(data, qtype), qtype
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16
