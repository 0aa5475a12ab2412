"""Shared fixtures: a private workspace per test and a tiny random Llama built on the fly.

The tiny model (2 layers, hidden size 64, a 400-token BPE tokenizer trained on the sample
dataset, SmolLM2's ChatML template) trains in seconds on a CPU, so the real engine code paths
(peft, TRL, bitsandbytes NF4) run in every test run without any download.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
# Helpers shared by test folders (installer_scripts) import by name from here.
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
SAMPLE = REPO / "resources" / "sample_data" / "product_reviews.jsonl"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)


@pytest.fixture
def workspace_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points TUNEBENCH_HOME at a fresh folder, for this process and the engines it starts."""
    home = tmp_path / "home"
    monkeypatch.setenv("TUNEBENCH_HOME", str(home))
    return home


def _corpus() -> list[str]:
    texts = []
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        texts.extend(m["content"] for m in json.loads(line)["messages"])
    return texts


def build_tiny_model(folder: Path) -> Path:
    """Writes a tiny random LlamaForCausalLM and its tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None)
    tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model written as an F32 GGUF file (exact weights: llama.cpp and transformers agree)."""
    from transformers import AutoModelForCausalLM

    from engine.runtime import gguf_writer

    target = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    gguf_writer.write(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tiny_model_dir, target, "f32", "tiny")
    return target


@pytest.fixture
def engine_env(workspace_home: Path) -> dict[str, str]:
    """The environment for an engine subprocess: this workspace, unbuffered UTF-8 output."""
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")


@pytest.fixture
def engine_argv() -> "Callable[..., list[str]]":
    """Builds the argv of a real engine process: `python -m engine ARGS...`."""
    return lambda *args: [sys.executable, "-m", "engine", *args]
