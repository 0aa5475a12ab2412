"""Each learning-rate schedule changes the lr as its help text says: the lr logged at every step
of a real run on the tiny model matches the documented formula (warmup, then cosine, linear,
constant or cosine with restarts) and transformers' own scheduler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.core import config

from .test_train import build
from .test_train_knobs import tiny_config

PEAK, WARMUP, STEPS = 1e-3, 2, 10


def documented_lr(scheduler: str, step: int) -> float:
    """The lr used for optimiser step ``step`` (0-based), written from the help text, not
    from transformers: linear warmup to the peak, then the named fall over the remaining steps."""
    if step < WARMUP:
        return PEAK * step / WARMUP
    progress = (step - WARMUP) / (STEPS - WARMUP)
    if scheduler == "constant":
        return PEAK
    if scheduler == "linear":
        return PEAK * (1 - progress)
    if scheduler == "cosine":
        return PEAK * 0.5 * (1 + math.cos(math.pi * progress))
    cycle_progress = (config.RESTART_CYCLES * progress) % 1.0  # back to the peak each cycle
    return PEAK * 0.5 * (1 + math.cos(math.pi * cycle_progress))


def transformers_lrs(args) -> list[float]:
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    schedule = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=WARMUP,
                             num_training_steps=STEPS, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    values = []
    for _ in range(STEPS):
        values.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return values


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant", "cosine_with_restarts"])
def test_logged_lr_follows_the_documented_schedule(scheduler, tiny_model_dir, workspace_home, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, lr_scheduler=scheduler, learning_rate=PEAK, warmup_steps=WARMUP,
                      max_steps=STEPS, batch_size=1, max_length=64)
    trainer, _, job, _ = build(cfg, "lora", tmp_path)
    trainer.train()
    logged = {m["step"]: m["values"]["learning_rate"] for m in job.messages()
              if m["type"] == "metrics" and "learning_rate" in m["values"]}
    assert sorted(logged) == list(range(1, STEPS + 1))
    # The metrics of step k carry the lr that step k's optimiser update used.
    used = [logged[k + 1] for k in range(STEPS)]
    assert used == pytest.approx([documented_lr(scheduler, k) for k in range(STEPS)], abs=1e-9)
    assert used == pytest.approx(transformers_lrs(trainer.args), abs=1e-12)
    if scheduler == "cosine_with_restarts":
        rises = [k for k in range(WARMUP + 1, STEPS) if used[k] > used[k - 1]]
        assert rises, "a restart jumps the lr back up"
