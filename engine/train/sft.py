"""Supervised fine-tuning: the data as prompt/completion conversations, TRL's SFTTrainer with
Tunebench's faster loss and batches (see engine/train/loss.py and the "Speed" knobs).

What differs from a plain SFTTrainer, each behind a knob and each giving the same loss:
- padding-free batches (``padding_free``): the micro-batch in one row, no padding computed,
  and attention computed per example (engine/train/varlen.py);
- the answer-only chunked loss (``chunked_loss``): the output head runs on answer positions
  only, in chunks, instead of on every position;
- bf16 weights and matmuls where the device has them (``precision``, in ``setup``);
- a prompt beginning shared by a micro-batch's examples computed once (``shared_prefix``,
  engine/train/shared_prefix.py);
- LoRA layers that share an input run as one multiply (``fused_lora``,
  engine/train/fused_lora.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any, Callable

from engine.core import config, errors, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.data import importer as data_import
from engine.data import split as data_split
from engine.data.conversations import common_system_prompt, to_prompt_completion
from engine.train.adapters import peft_config_for
from engine.train.events import make_callback, report_oom
from engine.train.setup import load_for_training, ready, run_callbacks, trainer_arguments

log = logging.getLogger("engine.train")


def load_training_data(cfg: TrainConfig) -> tuple[Any, data_import.DatasetVersion, str | None]:
    version = data_import.resolve(cfg.dataset)
    data = data_split.load_split(version, "train")  # a split version trains on its train split
    if "messages" not in data.column_names:
        # Text and classification datasets import fine but need other trainers (continued
        # pre-training, a classification head); preference pairs go to train_preference.
        raise errors.invalid_input(
            f"dataset: {version.ref} has shape '{version.manifest.get('shape')}'; supervised fine-tuning "
            "needs conversations (messages, Alpaca, ShareGPT or prompt/completion); preference pairs train "
            "with --objective dpo or orpo")
    system = common_system_prompt(data["messages"])
    data = data.map(to_prompt_completion, remove_columns=data.column_names)
    log.info("Dataset %s: %d examples", version.ref, len(data))
    return data, version, system


def sft_config(cfg: TrainConfig, run: workspace.RunFolder, device_name: str) -> Any:
    from trl import SFTConfig

    return SFTConfig(**trainer_arguments(cfg, run, device_name), max_length=cfg.max_length,
                     completion_only_loss=cfg.completion_only_loss, **_packing_kwargs(cfg.packing),
                     train_sampling_strategy="group_by_length" if _groups_by_length(cfg) else "random",
                     activation_offloading=cfg.offload_activations)


def _groups_by_length(cfg: TrainConfig) -> bool:
    """Length grouping only matters where batches are padded."""
    return cfg.group_by_length and not cfg.padding_free and not cfg.packing


def padding_free_collator(cfg: TrainConfig, tokenizer: Any, shares_prefixes: bool = False) -> Any:
    """TRL's collator in padding-free mode, without packing: the micro-batch's examples end to
    end in one row, position ids restarting per example (no attention across them; transformers
    builds the block-diagonal mask from the position ids, for SDPA and eager attention too).
    None (TRL's default, padded) when the knob is off or packing does it already. TRL itself
    only offers padding-free together with packing, which changes the examples per step."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from engine.train.shared_prefix import SharedPrefixCollator  # torch at import

    if not cfg.padding_free or cfg.packing or cfg.method in config.PROMPT_LEARNING:
        return None
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    return SharedPrefixCollator(collator) if shares_prefixes else collator


def _packing_kwargs(packing: bool) -> dict[str, Any]:
    """Best-fit-decreasing packing, padding-free: the collator emits position_ids that restart
    at every example and no attention mask, and transformers turns those into a block-diagonal
    mask (flash attention, SDPA and eager alike, so CPU too): no attention across examples."""
    if not packing:
        return {"packing": False}
    return {"packing": True, "packing_strategy": "bfd", "padding_free": True}


def build_trainer(cfg: TrainConfig, run: workspace.RunFolder, job: Job, model_dir: Path, method: str,
                  device_name: str, data: Any, eval_data: Any = None,
                  init_adapter: Path | None = None) -> tuple[Any, Any]:
    from engine.train.loss import supports_answer_only_head  # torch at import
    from engine.train.varlen import use_per_example_attention  # torch at import

    tokenizer, model = load_for_training(cfg, model_dir, method, device_name, init_adapter)
    per_example = ((cfg.padding_free or cfg.packing) and cfg.method not in config.PROMPT_LEARNING
                   and use_per_example_attention(model))
    # Shared prefixes need the per-example attention, which lets a piece see the shared tokens.
    shares_prefixes = per_example and cfg.shared_prefix and "shared_prefix" not in config.unused_fields(
        dataclasses.asdict(cfg))
    callback = make_callback(job, run)
    answer_only = (cfg.chunked_loss and cfg.method not in config.PROMPT_LEARNING
                   and supports_answer_only_head(model))
    if cfg.chunked_loss and not answer_only:
        log.info("Chunked answer-only loss: not for this model or method; the trainer's own loss is used")
    trainer = trainer_class()(model=model, args=sft_config(cfg, run, device_name), train_dataset=data,
                              eval_dataset=eval_data, processing_class=tokenizer,
                              data_collator=padding_free_collator(cfg, tokenizer, shares_prefixes),
                              peft_config=None if init_adapter else peft_config_for(cfg, method),
                              callbacks=run_callbacks(cfg, run, job, callback, data, eval_data),
                              answer_only_loss=answer_only, fused_lora=cfg.fused_lora,
                              on_oom=functools.partial(report_oom, job))
    if len(trainer.train_dataset) == 0:
        raise errors.invalid_input(
            f"max_length: {cfg.max_length} tokens leaves no example with any answer tokens to "
            "learn from; raise max_length")
    ready(trainer)
    return trainer, callback


@functools.cache
def trainer_class() -> type:
    """SFTTrainer with the answer-only chunked loss (built on first use: TRL imports torch)."""
    import torch
    from trl import SFTTrainer

    from engine.train import oom  # torch at import
    from engine.train.fused_lora import install as fuse_lora_groups  # torch at import
    from engine.train.loss import install_answer_only_head  # torch at import
    from engine.train.shared_prefix import logical_tokens, row_bounds  # torch at import

    class TunebenchSFTTrainer(SFTTrainer):
        def __init__(self, *args: Any, answer_only_loss: bool = False, fused_lora: bool = False,
                     on_oom: Callable[[int, int], None] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.answer_only_loss = answer_only_loss
            if answer_only_loss:
                model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
                install_answer_only_head(model)
            if fused_lora:
                fuse_lora_groups(self.model)
            if self.args.bf16 or self.args.fp16:
                _share_lora_inputs(self.model)
            self.micro_batch: int | None = None  # set by the first out-of-memory: examples per piece
            self.on_oom = on_oom
            self.oom_hook = oom.TestHook()

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            """Trains the micro-batch in pieces of at most ``micro_batch`` examples once memory ran
            out; every piece shares the window's denominator, so the step is the same."""
            pieces = oom.pieces_until(inputs, self.micro_batch)
            return sum(self._train_piece(model, piece, num_items_in_batch) for piece in pieces)

        def _train_piece(self, model: Any, piece: dict[str, Any], num_items: Any) -> Any:
            grads = oom.backup_grads(self.model)
            try:
                self.oom_hook.check(self.state.global_step + 1, piece)
                return super().training_step(model, piece, num_items)
            except torch.OutOfMemoryError:
                oom.free_memory()
                oom.restore_grads(self.model, grads)
                count = oom.examples_in(piece)
                if count <= 1:
                    raise oom.too_big_error(self.args.max_length) from None
                self.micro_batch = count // 2
                if self.on_oom is not None:
                    self.on_oom(self.state.global_step + 1, self.micro_batch)
                return sum(self._train_piece(model, half, num_items) for half in oom.split(piece))

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if not self.answer_only_loss or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            outputs = model(**inputs, answer_only_loss=True, num_items_in_batch=num_items_in_batch)
            loss = outputs.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients
            self._log_token_metrics(inputs, outputs)
            return loss

        def _log_token_metrics(self, inputs: dict[str, Any], outputs: Any) -> None:
            """The figures TRL's own loss logs: entropy, top-1 accuracy and tokens seen."""
            mode = "train" if self.model.training else "eval"
            gather = self.accelerator.gather_for_metrics
            valid = gather(outputs.label_mask.sum()).sum()
            entropy, correct = gather(outputs.entropy_sum).sum(), gather(outputs.correct).sum()
            self._metrics[mode]["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
            if mode == "train":
                if "attention_mask" in inputs:
                    seen = inputs["attention_mask"].sum()
                else:  # padding-free: one row of real tokens, a shared prefix counted per example
                    positions = inputs["position_ids"]
                    seen = torch.tensor(logical_tokens(positions, row_bounds(positions)), device=positions.device)
                self._total_train_tokens += gather(seen).sum().item()
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    return TunebenchSFTTrainer


def _share_lora_inputs(model: Any) -> None:
    """Under autocast, LoRA's A matrix gets the layer's input as it is: peft would first cast it to
    the adapter's fp32, a copy that autocast then rounds back to bf16 (the same values) and keeps
    for backward; without the cast, base and adapter share one saved input."""
    for module in model.modules():
        if hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False
