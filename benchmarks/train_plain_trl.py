"""The baseline for benchmarks/train_vs_plain_trl.py: SFT with TRL + peft written the way the
TRL/peft documentation writes it, on the same prompt/completion rows Tunebench trains on, with
the benchmark's settings spelled out (fp32, no gradient checkpointing), plus one callback that
only records the Trainer's logs for measurement. It saves the adapter for the shared final-loss
measurement.

    python benchmarks/train_plain_trl.py MODEL_DIR DATA.jsonl EPOCHS STEPS SEED OUT_DIR

STEPS 0 trains for EPOCHS.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

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


def to_prompt_completion(row: dict) -> dict:
    """Everything before the last (assistant) turn is the prompt: TRL then learns the answer only."""
    return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}


def main() -> None:
    model_dir, data_file, epochs, steps, seed, out = sys.argv[1:7]
    out_dir = Path(out)
    dataset = load_dataset("json", data_files=data_file, split="train")
    dataset = dataset.map(to_prompt_completion, remove_columns=dataset.column_names)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    training_args = SFTConfig(output_dir=str(out_dir / "checkpoints"), num_train_epochs=float(epochs),
                              max_steps=int(steps) or -1, per_device_train_batch_size=4, learning_rate=5e-4,
                              lr_scheduler_type="linear", max_length=256, logging_steps=1, seed=int(seed),
                              data_seed=int(seed), save_strategy="no", report_to="none", use_cpu=True,
                              bf16=False, gradient_checkpointing=False, disable_tqdm=True)
    recorder = Recorder()
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[recorder])
    trainer.train()
    trainer.save_model(str(out_dir / "adapter"))
    (out_dir / "plain.json").write_text(json.dumps({"logs": recorder.logs}), encoding="utf-8")


if __name__ == "__main__":
    main()
