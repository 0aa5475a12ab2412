"""The adapter a run trains: LoRA (with rsLoRA/DoRA), prompt tuning or prefix tuning (peft),
or none for a full fine-tune."""

from __future__ import annotations

from typing import Any

from engine.core import config
from engine.core.config import TrainConfig


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        task_type="CAUSAL_LM", target_modules=config.lora_targets(cfg.target_modules),
        use_rslora=cfg.use_rslora, use_dora=cfg.use_dora)


def prompt_tuning_config(cfg: TrainConfig) -> Any:
    """Soft prompt: ``num_virtual_tokens`` learnt embeddings before every input. Random
    initialisation: initialising from a text would tie the adapter to one tokenizer's words."""
    from peft import PromptTuningConfig, PromptTuningInit

    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.RANDOM)


def prefix_tuning_config(cfg: TrainConfig) -> Any:
    """Learnt keys and values at every layer, fed to attention through the KV cache."""
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens)


def peft_config_for(cfg: TrainConfig, method: str) -> Any:
    """The adapter to train, or None for a full fine-tune (every weight trains)."""
    if method == "full":
        return None
    if method == "prompt_tuning":
        return prompt_tuning_config(cfg)
    if method == "prefix_tuning":
        return prefix_tuning_config(cfg)
    return lora_config(cfg)
