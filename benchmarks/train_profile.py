"""Where a training step's time goes: torch.profiler over a few steps of the default model, once
with every speed knob off (the plain path) and once with Tunebench's defaults.

    TUNEBENCH_HOME=DIR python benchmarks/train_profile.py [--steps 3]

Writes benchmarks/results/train_profile.json: per setting, the operators with the most self CPU
time (the first step is warm-up and not profiled).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402
from engine.core import paths, workspace  # noqa: E402
from engine.core.channel import Channel  # noqa: E402
from engine.core.config import TrainConfig  # noqa: E402
from engine.core.control import Control  # noqa: E402
from engine.core.job import Job  # noqa: E402
from engine.core.workspace import atomic_write_json  # noqa: E402

DATA = REPO / "resources" / "sample_data" / "product_reviews.jsonl"
SETTINGS = {
    "plain (speed knobs off, fp32)": dict(padding_free=False, chunked_loss=False, precision="fp32",
                                          group_by_length=False, compact_activations=False,
                                          compact_weights=False, fused_lora=False,
                                          shared_prefix=False),
    "tunebench defaults": {},
}


def quiet_job() -> Job:
    """What a handler gets from the CLI, with the protocol stream kept in memory."""
    channel = Channel(io.StringIO(), json_mode=True)
    return Job(channel, Control(channel), "train")


def profile(cfg: TrainConfig, folder: Path) -> list[dict]:
    import torch
    from transformers import TrainerCallback

    from engine.train import sft

    class Profiled(TrainerCallback):
        def __init__(self) -> None:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step == 1:
                self.profiler.start()  # the first step is warm-up

    data, _, _ = sft.load_training_data(cfg)
    run = workspace.create_run("profile", root=folder)
    trainer, _ = sft.build_trainer(cfg, run, quiet_job(), Path(cfg.model), "lora", "cpu", data)
    callback = Profiled()
    trainer.add_callback(callback)
    started = time.perf_counter()
    trainer.train()
    callback.profiler.stop()
    total = time.perf_counter() - started
    events = sorted(callback.profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    measured = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3),
             "share": round(e.self_cpu_time_total / measured, 3), "calls": e.count}
            for e in events[:15]] + [{"wall_s_all_steps": round(total, 1)}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", type=Path, default=paths.models_cache_dir() / "SmolLM2-135M-Instruct")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_profile.json")
    args = parser.parse_args()
    base = TrainConfig(model=str(args.model), dataset=str(DATA), method="lora", device="cpu", batch_size=4,
                       max_length=256, learning_rate=5e-4, lr_scheduler="linear", lora_r=16, lora_alpha=32,
                       lora_dropout=0.0, sample_count=0, save_steps=100000, max_steps=args.steps)
    result = {"machine": f"{machine.describe()}, CPU only", "date": time.strftime("%Y-%m-%d %H:%M"),
              "model": args.model.name, "steps_profiled": args.steps - 1, "settings": {}}
    with tempfile.TemporaryDirectory(prefix="tb-profile-") as tmp:
        for name, changes in SETTINGS.items():
            cfg = dataclasses.replace(base, **changes)
            result["settings"][name] = profile(cfg, Path(tmp))
            print(name, result["settings"][name][:6], flush=True)
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
