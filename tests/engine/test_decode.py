"""Weight-only int8 decoding (engine.infer.int8.quantize_weights_int8) on the tiny model: close to
fp32, the same greedy choices nearly everywhere, tied heads untied, and still fine-tunable by
a LoRA adapter. Speed is measured by benchmarks/decode_speed.py, never here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.infer.decode import Decoder
from engine.infer.int8 import int8_supported, quantize_weights_int8
from engine.infer.sampling import SamplingParams

pytestmark = pytest.mark.skipif(not int8_supported(), reason="this torch has no CPU int8-weight matmul")


def load(model_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()


def test_int8_logits_stay_close_to_fp32_and_pick_the_same_top_token(tiny_model_dir) -> None:
    import torch

    fp32, int8 = load(tiny_model_dir), quantize_weights_int8(load(tiny_model_dir))
    ids = torch.randint(0, fp32.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref, out = fp32(input_ids=ids).logits, int8(input_ids=ids).logits
    assert not any(isinstance(m, torch.nn.Linear) and m.weight.dtype != torch.int8 for m in int8.modules())
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9


def test_a_tied_head_gets_its_own_int8_copy_and_the_embedding_stays_fp32() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=True)).eval()
    ids = torch.tensor([[1, 7, 42, 99]])
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        quantize_weights_int8(model)
        out = model(input_ids=ids).logits
    assert model.lm_head.weight.dtype == torch.int8 and model.model.embed_tokens.weight.dtype == torch.float32
    assert not model.config.tie_word_embeddings
    assert torch.allclose(out, ref, atol=0.05 * float(ref.abs().max()))


def test_the_decoder_runs_on_int8_weights_and_an_adapter_changes_its_answer(tiny_model_dir, tmp_path) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoTokenizer

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    get_peft_model(load(tiny_model_dir), config).save_pretrained(str(tmp_path / "adapter"))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = PeftModel.from_pretrained(quantize_weights_int8(load(tiny_model_dir)), str(tmp_path / "adapter")).eval()
    decoder = Decoder(model, tokenizer)
    params = SamplingParams(temperature=0, max_new_tokens=8)
    ids = tokenizer("the kettle", add_special_tokens=False)["input_ids"]
    tuned = decoder.run(ids, params, cache_key="adapter")
    with model.disable_adapter():
        base = decoder.run(ids, params, cache_key=None)
    assert tuned.completion_tokens > 0 and base.completion_tokens > 0
    assert tuned.text != base.text
