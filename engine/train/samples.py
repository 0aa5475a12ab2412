"""Sample generations during training: a few fixed prompts answered greedily at each
evaluation (or each checkpoint save when there is no validation), written to
``runs/<id>/samples.jsonl`` and sent as ``artifact("samples", path, step=N, samples=[{"prompt",
"output"}])`` so the window can list what the model says at each step."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from engine.core import config, protocol, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.data.conversations import common_system_prompt

log = logging.getLogger("engine.train.run")

SAMPLES_FILE = workspace.SAMPLES_FILE


def sample_conversations(cfg: TrainConfig, train_data: Any, eval_data: Any) -> list[list[dict]]:
    """The prompts (as chat messages ending with a user turn): the config's own, with the
    data's common system prompt, else the first validation prompts, else the first training
    ones. Both SFT and preference rows keep their prompt as a message list in ``prompt``."""
    if cfg.sample_count <= 0:
        return []
    source = eval_data if eval_data is not None else train_data
    own = config.sample_prompt_list(cfg.sample_prompts)
    if own:
        system = common_system_prompt(source["prompt"]) if len(source) else None
        head = [{"role": "system", "content": system}] if system else []
        return [[*head, {"role": "user", "content": text}] for text in own[:cfg.sample_count]]
    return [list(messages) for messages in source["prompt"][:cfg.sample_count]]


def make_samples_callback(cfg: TrainConfig, run: workspace.RunFolder, job: Job,
                          conversations: list[list[dict]]) -> list[Any]:
    """[] when sampling is off; else a TrainerCallback that samples at each evaluation, or at
    each save when the run has no validation data."""
    if not conversations:
        return []
    from transformers import TrainerCallback

    trigger = "evaluate" if cfg.val_fraction > 0 else "save"
    path = run.path / SAMPLES_FILE

    class SamplesCallback(TrainerCallback):
        # In a multi-process run only rank 0 samples (and writes samples.jsonl).
        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if trigger == "evaluate" and state.is_world_process_zero:
                self._sample(state.global_step, args, kw)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if trigger == "save" and state.is_world_process_zero:
                self._sample(state.global_step, args, kw)

        def _sample(self, step: int, args: Any, kw: dict) -> None:
            if job.control.cancelled.is_set():
                return  # the user is waiting for the stop; samples can wait for the next run
            with training_autocast(args):
                samples = generate_samples(kw["model"], kw["processing_class"], conversations,
                                           cfg.sample_max_tokens)
            append_line(path, {"step": step, "samples": samples})
            job.channel.send(protocol.artifact("samples", str(path), step=step, samples=samples))

    return [SamplesCallback()]


def training_autocast(args: Any) -> Any:
    """The autocast the Trainer runs the model under: a bf16 run's frozen layers hold bf16
    weights and take bf16 inputs, so generating outside it would mix dtypes."""
    import torch

    half = torch.bfloat16 if args.bf16 else torch.float16
    return torch.autocast(args.device.type, dtype=half, enabled=bool(args.bf16 or args.fp16))


def generate_samples(model: Any, tokenizer: Any, conversations: list[list[dict]],
                     max_new_tokens: int) -> list[dict[str, str]]:
    """Greedy answers, the model put back in training mode afterwards."""
    import torch

    was_training = model.training
    model.eval()
    samples = []
    try:
        for messages in conversations:
            inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True).to(model.device)
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
            answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            samples.append({"prompt": messages[-1]["content"], "output": answer.strip()})
    finally:
        model.train(was_training)
    return samples


def append_line(path: Path, record: dict[str, Any]) -> None:
    """One whole JSON line per write, flushed, as events.ndjson is: a reader never sees half a
    record, and a resumed run appends to the same file."""
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
        file.flush()
