"""The lean Llama forward pass (engine.infer.llama_decode) computes what transformers' forward does:
same logits in fp32 (prefill in pieces, single steps, after a crop), with int8 weights, with a
LoRA adapter on or off, and the decoder's greedy answers do not change. Which models it
declines is checked too. Its speed is measured by benchmarks/decode_speed.py, never here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.infer.decode import Decoder
from engine.infer.int8 import int8_supported, quantize_weights_int8
from engine.infer.llama_decode import lean_model
from engine.infer.sampling import SamplingParams


def load(model_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()


def sequence(model: Any, length: int = 20, seed: int = 3) -> list[int]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (length,), generator=generator).tolist()


def reference_logits(model: Any, ids: list[int]) -> Any:
    """transformers' own forward: the last position's logits."""
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def lean_logits(lean: Any, pieces: list[list[int]], cache: Any = None) -> Any:
    """Feeds ``pieces`` one after the other through one cache; the last piece's logits."""
    import torch

    cache = cache or lean.new_cache()
    with torch.inference_mode():
        for piece in pieces:
            logits = lean.forward(piece, cache)
    return logits[0]


def test_fp32_logits_equal_transformers_for_prefill_in_pieces_and_single_steps(tiny_model_dir) -> None:
    import torch

    model = load(tiny_model_dir)
    ids = sequence(model)
    lean = lean_model(model)
    assert lean is not None
    expected = reference_logits(model, ids)
    for pieces in ([ids], [ids[:7], ids[7:15], ids[15:]], [[t] for t in ids]):
        assert torch.allclose(lean_logits(lean, pieces), expected, atol=1e-4), pieces


def test_a_cropped_cache_continues_like_a_fresh_one(tiny_model_dir) -> None:
    import torch

    model = load(tiny_model_dir)
    ids, other = sequence(model), sequence(model, seed=9)
    lean = lean_model(model)
    cache = lean.new_cache()
    lean_logits(lean, [ids[:12] + other[:6]], cache)
    cache.crop(-6)  # keep the shared first 12 positions, as the decoder does for a new turn
    assert cache.get_seq_length() == 12
    assert torch.allclose(lean_logits(lean, [ids[12:]], cache), reference_logits(model, ids), atol=1e-4)


def test_a_long_prompt_grows_the_cache_and_the_rotary_table(tiny_model_dir) -> None:
    import torch

    model = load(tiny_model_dir)
    ids = sequence(model, length=1100)  # past the first cache (256) and rotary table (1024) sizes
    lean = lean_model(model)
    got = lean_logits(lean, [ids[:200], ids[200:1099], ids[1099:]])
    assert torch.allclose(got, reference_logits(model, ids), atol=1e-4)


def test_fusing_shares_the_weights_so_transformers_still_reads_the_same_numbers(tiny_model_dir) -> None:
    import torch

    model = load(tiny_model_dir)
    ids = sequence(model)
    before = reference_logits(model, ids)
    lean = lean_model(model)
    attn = model.model.layers[0].self_attn
    assert lean._fused[(0, "qkv")][1] is not None
    assert attn.k_proj.weight.untyped_storage().data_ptr() == attn.q_proj.weight.untyped_storage().data_ptr()
    assert torch.equal(reference_logits(model, ids), before)


@pytest.mark.skipif(not int8_supported(), reason="this torch has no CPU int8-weight matmul")
def test_int8_weights_give_transformers_int8_logits(tiny_model_dir) -> None:
    model = quantize_weights_int8(load(tiny_model_dir))
    ids = sequence(model)
    lean = lean_model(model)
    assert lean._fused[(0, "gate_up")][1] is not None  # int8 projections are fused too
    expected = reference_logits(model, ids)
    got = lean_logits(lean, [ids[:10], ids[10:]])
    # Activations go through bf16 for the int8 kernel: rounding may flip at other places.
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()
    assert int(got.argmax()) == int(expected.argmax())


def adapted(model_dir: Path, tmp_path: Path, int8: bool = False) -> Any:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "gate_proj"],
                        init_lora_weights=False)
    get_peft_model(load(model_dir), config).save_pretrained(str(tmp_path / "adapter"))
    base = load(model_dir)
    return PeftModel.from_pretrained(quantize_weights_int8(base) if int8 else base,
                                     str(tmp_path / "adapter")).eval()


def test_an_enabled_lora_adapter_applies_and_a_disabled_one_does_not(tiny_model_dir, tmp_path) -> None:
    import torch

    model = adapted(tiny_model_dir, tmp_path)
    ids = sequence(model)
    lean = lean_model(model)
    assert lean is not None
    tuned = reference_logits(model, ids)
    lean.refresh()
    qkv, o_proj = lean._plan[0][:2]
    # q and v carry the adapter: one fused base matmul plus one stacked low-rank update.
    assert qkv.base is not None and qkv.lora is not None and o_proj.lora is None
    assert torch.allclose(lean_logits(lean, [ids[:5], ids[5:]]), tuned, atol=1e-4)
    with model.disable_adapter():
        plain = reference_logits(model, ids)
        lean.refresh()
        assert lean._plan[0][0].lora is None  # adapters off: the base layers alone
        assert torch.allclose(lean_logits(lean, [ids]), plain, atol=1e-4)
    assert not torch.allclose(tuned, plain, atol=1e-3)


def test_a_dora_adapter_is_computed_by_peft_itself(tiny_model_dir, tmp_path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(2)
    model = get_peft_model(load(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                            use_dora=True, init_lora_weights=False)).eval()
    ids = sequence(model)
    lean = lean_model(model)
    assert lean._plan[0][0].base is None  # DoRA's update is not a plain low-rank one
    assert torch.allclose(lean_logits(lean, [ids]), reference_logits(model, ids), atol=1e-4)


def test_the_decoder_answers_the_same_with_and_without_the_lean_pass(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = adapted(tiny_model_dir, tmp_path)
    decoder = Decoder(model, tokenizer)
    assert decoder.lean is not None
    ids = tokenizer("the kettle boils", add_special_tokens=False)["input_ids"]
    params = SamplingParams(temperature=0, max_new_tokens=12)
    answers = []
    for lean in (decoder.lean, None):
        decoder.lean = lean
        decoder.reset()
        with model.disable_adapter():
            base = decoder.run(ids, params).text
        answers.append((decoder.run(ids, params, cache_key="adapter").text, base))
    assert answers[0] == answers[1]
    assert answers[0][0] != answers[0][1]


def test_models_the_lean_pass_does_not_reproduce_are_left_to_transformers(tiny_model_dir) -> None:
    import torch
    from peft import PromptTuningConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    prompt_tuned = get_peft_model(load(tiny_model_dir), PromptTuningConfig(task_type="CAUSAL_LM",
                                                                           num_virtual_tokens=4))
    assert lean_model(prompt_tuned) is None
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    assert lean_model(qwen) is None
    assert lean_model(load(tiny_model_dir).to(torch.bfloat16)) is None
