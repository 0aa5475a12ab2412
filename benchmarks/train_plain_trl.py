"""The baseline for benchmarks/train_vs_plain_trl.py: SFT with TRL + peft written the way the
TRL/peft tutorials write it (defaults kept), plus one callback that only records the Trainer's
logs for measurement.

    python benchmarks/train_plain_trl.py MODEL_DIR DATA.jsonl STEPS SEED OUT.json
"""

from __future__ import annotations

import json
import sys
import time

from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer


class Recorder(TrainerCallback):
    """Measurement only: wall time, non-padding tokens so far (TRL's num_tokens) and loss."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append({"step": state.global_step, "time": time.monotonic(),
                              "num_tokens": logs.get("num_tokens"), "loss": logs["loss"]})


def main() -> None:
    model_dir, data_file, steps, seed, out = sys.argv[1:6]
    dataset = load_dataset("json", data_files=data_file, split="train")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    training_args = SFTConfig(output_dir=out + ".checkpoints", max_steps=int(steps), per_device_train_batch_size=4,
                              learning_rate=5e-4, lr_scheduler_type="linear", max_length=256, logging_steps=1,
                              seed=int(seed), save_strategy="no", report_to="none", use_cpu=True)
    recorder = Recorder()
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[recorder])
    trainer.train()
    with open(out, "w", encoding="utf-8") as file:
        json.dump({"logs": recorder.logs, "bf16": training_args.bf16,
                   "gradient_checkpointing": training_args.gradient_checkpointing,
                   "completion_only_loss": training_args.completion_only_loss,
                   "assistant_only_loss": training_args.assistant_only_loss}, file)


if __name__ == "__main__":
    main()
