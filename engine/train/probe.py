"""`train --probe`: will this run fit in memory? Measured, not guessed.

The probe builds the trainer exactly as the run would (same data, split, tokenization, model,
adapter, collator, loss, callbacks; engine/train/objectives.py and sft.py) in a scratch folder
under the cache (``paths.probes_dir()``, removed afterwards; nothing is written to runs/), and
trains it for two optimiser steps twice, through the same Trainer and optimiser code as a run:

1. on a micro-batch of about half the tokens (the batch_size // 2 longest rows; with a
   micro-batch of one, the row nearest half the longest row's length),
2. on the micro-batch of the batch_size longest rows (lengths as the trainer tokenized and
   truncated them to max_length), the heaviest step the run will take.

Each phase ends as the run's checkpoints end -- a checkpoint save and, where the run has them,
the sample generations and the validation pass (on the longest held-out rows) -- and the probe
last saves the adapter (or model) as the run does at its end, so what a real run does beyond
training steps is measured too.

Peak memory is the kernel's high-water mark of the process's resident memory on the CPU (reset
per phase on Linux; engine/runtime/peak.py) and, on CUDA, the caching allocator's peak reserved
memory plus the CUDA context (what nvidia-smi shows for the process). The answer -- peak,
available, margin, fits -- is one ``result`` message and a one-line summary in the log. When the
run does not fit, the two phases give the line ``peak = fixed + per_token * tokens``
(engine/core/fit.py), which proposes the largest micro-batch that fits with grad. accumulation
raised to keep the effective batch, or, when no micro-batch fits, the longest max_length that does.

The ``TUNEBENCH_PROBE_AVAILABLE_GB`` environment variable replaces the memory available (tests,
and checking a smaller machine's fit).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core import config, errors, fit, paths, protocol, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.runtime import device
from engine.runtime import peak as peaks
from engine.train import samples as train_samples
from engine.train.lifecycle import is_full_fine_tune, save_atomically
from engine.train.objectives import load_inputs
from engine.train.setup import check_runtime, compute_precision, resolve_method

log = logging.getLogger("engine.train.probe")

AVAILABLE_ENV = "TUNEBENCH_PROBE_AVAILABLE_GB"
PROBE_STEPS = 2  # the second step runs with the optimiser state the first one created


def cmd_probe(cfg: TrainConfig, job: Job, init_adapter: Path | None = None) -> int:
    result = probe(cfg, job, init_adapter=init_adapter)
    log.info("%s", result["summary"])
    job.channel.send(protocol.result(result))
    return protocol.ExitCode.OK


def probe(cfg: TrainConfig, job: Job, init_adapter: Path | None = None) -> dict[str, Any]:
    started = time.monotonic()
    device_name = device.pick(cfg.device)
    check_runtime(cfg, device_name)
    method = resolve_method(cfg.method, device_name)
    meter = Meter(device_name)
    inputs = load_inputs(cfg, job)
    scratch = workspace.create_run("probe", root=paths.probes_dir())
    try:
        trainer, _ = inputs.build(probe_config(cfg, method), scratch, job, inputs.model_dir, method, device_name,
                                  inputs.train_data, eval_data=inputs.eval_data, init_adapter=init_adapter)
        measured = measure(trainer, cfg, job, meter, scratch, inputs.train_data, inputs.eval_data)
    finally:
        shutil.rmtree(scratch.path, ignore_errors=True)
    result = answer(cfg, meter, measured)
    result.update(method=method, precision=compute_precision(cfg, device_name), device=device_name,
                  objective=cfg.objective, seconds=round(time.monotonic() - started, 1))
    result["summary"] = fit.summary(result)
    return result


def probe_config(cfg: TrainConfig, method: str) -> TrainConfig:
    """The run's settings for two optimiser steps that end in a checkpoint save (and, with
    validation, an evaluation) as the run's checkpoints do; warmup would not matter here. The
    sample generations are measured once, in a phase of their own (``_generate_sample``): every
    sample is the same work, and each takes seconds."""
    val = cfg.val_fraction > 0
    return dataclasses.replace(cfg, method=method, max_steps=PROBE_STEPS, save_steps=PROBE_STEPS,
                               eval_steps=PROBE_STEPS if val else cfg.eval_steps, warmup_steps=0,
                               save_total_limit=1, sample_count=0)


# -- measuring -------------------------------------------------------------------------------

class Meter:
    """Peak memory of this process, per phase, on its device."""

    def __init__(self, device_name: str) -> None:
        self.cuda = device_name == "cuda"
        self.override = _override_bytes()
        if self.cuda:
            start = peaks.cuda_start()
            self.context = start["context"]
            self.available = start["total"] - start["others"]
            self.source = "CUDA: the allocator's peak reserved memory plus the CUDA context"
        else:
            self.context = 0
            self.available = peaks.ram_available_bytes()
            self.resettable = peaks.reset_peak_rss()  # from here on, the peak is the probe's own
            self.source = f"CPU: the process's peak resident memory ({peaks.describe()['peak_source']})"
        self.peak = 0.0  # the highest peak of any phase so far

    def available_bytes(self) -> float:
        return self.override if self.override is not None else self.available

    def now(self) -> float:
        return float(peaks.cuda_reserved() if self.cuda else peaks.rss_bytes()) + self.context

    def phase(self, body: Callable[[], Any]) -> float:
        """Runs ``body`` and returns its own peak (bytes, CUDA context included)."""
        if self.cuda:
            peaks.cuda_reset_peak()
        elif self.resettable:
            self.resettable = peaks.reset_peak_rss()
        body()
        peak = float(peaks.cuda_peak_reserved() if self.cuda else peaks.peak_rss_bytes()) + self.context
        self.peak = max(self.peak, peak)
        return peak

    def loaded_peak(self) -> float:
        """The peak up to now: loading the data and the model, building the trainer."""
        peak = float(peaks.cuda_peak_reserved() if self.cuda else peaks.peak_rss_bytes()) + self.context
        self.peak = max(self.peak, peak)
        return peak


def measure(trainer: Any, cfg: TrainConfig, job: Job, meter: Meter, scratch: workspace.RunFolder,
            train_data: Any, eval_data: Any) -> dict[str, Any]:
    load_peak = meter.loaded_peak()
    rows = trainer.train_dataset
    lengths = row_lengths(rows)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batch = min(cfg.batch_size, len(order))
    padded = _padded(cfg)
    full_ids, small_ids = order[:batch], _smaller_batch(order, lengths, batch)
    longest = [lengths[i] for i in full_ids]
    if trainer.eval_dataset is not None:
        trainer.eval_dataset = _longest_rows(trainer.eval_dataset, cfg.batch_size)
    points: dict[str, dict[str, Any]] = {}
    for name, ids in (("small", small_ids), ("full", full_ids)):
        if name == "small" and ids == full_ids:
            continue  # every row as long as the longest: one phase says it all
        tokens = fit.batch_tokens([lengths[i] for i in ids], len(ids), cfg.max_length, padded)
        job.channel.send(protocol.progress(0, 0, stage="probe", what=f"{PROBE_STEPS} steps on {len(ids)} rows",
                                           message=f"Probing: {PROBE_STEPS} steps at micro-batch {len(ids)} "
                                           f"({tokens} tokens)…"))
        try:
            peak = meter.phase(lambda ids=ids: _train_on(trainer, rows.select(ids)))
        except Exception as exc:
            if type(exc).__name__ != "OutOfMemoryError":
                raise
            _free_cuda()
            points[name] = {"rows": len(ids), "tokens": tokens, "out_of_memory": True}
            break
        _check_cancel(job)
        points[name] = {"rows": len(ids), "tokens": tokens, "peak": peak}
    prompts = train_samples.sample_conversations(cfg, train_data, eval_data)
    sample_peak = 0.0
    if prompts and "peak" in points.get("full", {}):
        job.channel.send(protocol.progress(0, 0, stage="probe", what="sample generation",
                                           message="Probing: one sample generation…"))
        sample_peak = meter.phase(lambda: _generate_sample(trainer, prompts, cfg.sample_max_tokens))
    save_peak = meter.phase(lambda: _save_result(trainer, scratch))
    return {"load_peak": load_peak, "save_peak": save_peak, "sample_peak": sample_peak, "points": points,
            "longest": longest,
            "batch": batch, "padded": padded, "rows": len(lengths), "now": meter.now()}


def row_length(row: dict[str, Any]) -> int:
    """Tokens a tokenized training row puts through the model: its input_ids for SFT (packed rows
    too); for a preference pair (DPO/ORPO), twice the prompt plus the longer answer, as the pair
    is run as two padded rows."""
    if "input_ids" in row:
        return len(row["input_ids"])
    parts = {part: max((len(v) for k, v in row.items() if part in k and isinstance(v, list)), default=0)
             for part in ("prompt", "chosen", "rejected")}
    return 2 * (parts["prompt"] + max(parts["chosen"], parts["rejected"]))


def _id_columns(dataset: Any) -> list[str]:
    return [name for name in dataset.column_names if name == "input_ids" or (
        name.endswith("ids") and any(part in name for part in ("prompt", "chosen", "rejected")))]


def row_lengths(dataset: Any) -> list[int]:
    """Every row's tokens, read a thousand rows at a time from the id columns only."""
    columns = _id_columns(dataset)
    if not columns:
        raise errors.invalid_input("the fit probe found no tokenized rows in the trainer's dataset")
    lengths: list[int] = []
    for chunk in dataset.select_columns(columns).iter(batch_size=1000):
        lengths.extend(row_length(dict(zip(columns, values))) for values in zip(*(chunk[c] for c in columns)))
    return lengths


def _smaller_batch(order: list[int], lengths: list[int], batch: int) -> list[int]:
    if batch >= 2:
        return order[:batch // 2]
    half = lengths[order[0]] / 2
    return [min(order, key=lambda i: (abs(lengths[i] - half), i))]


def _longest_rows(dataset: Any, count: int) -> Any:
    lengths = row_lengths(dataset)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return dataset.select(order[:count])


def _padded(cfg: TrainConfig) -> bool:
    """Whether a micro-batch is padded to its longest row (else its rows lie end to end)."""
    return not (cfg.packing or (cfg.padding_free and cfg.objective == "sft"
                                and cfg.method not in config.PROMPT_LEARNING))


def _train_on(trainer: Any, rows: Any) -> None:
    trainer.train_dataset = rows
    trainer.train()


def _generate_sample(trainer: Any, prompts: list[list[dict]], max_new_tokens: int) -> None:
    """The longest sample prompt answered as the run's samples are (greedy, up to
    sample_max_tokens): its memory is that of the run's largest sample."""
    tokenizer = trainer.processing_class
    longest = max(prompts, key=lambda messages: len(tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True)["input_ids"]))
    with train_samples.training_autocast(trainer.args):
        train_samples.generate_samples(trainer.model, tokenizer, [longest], max_new_tokens)


def _save_result(trainer: Any, scratch: workspace.RunFolder) -> None:
    save_atomically(trainer, scratch.model if is_full_fine_tune(trainer) else scratch.adapter)


def _check_cancel(job: Job) -> None:
    if job.control.cancelled.is_set():
        raise errors.EngineError(protocol.ExitCode.CANCELLED, "the fit probe was cancelled")


def _free_cuda() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def _override_bytes() -> float | None:
    text = os.environ.get(AVAILABLE_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise errors.usage(f"{AVAILABLE_ENV}: must be a number of GB, not {text!r}") from None
    if value <= 0:
        raise errors.usage(f"{AVAILABLE_ENV}: must be above 0, not {text!r}")
    return value * fit.GB


# -- the answer ------------------------------------------------------------------------------

def answer(cfg: TrainConfig, meter: Meter, measured: dict[str, Any]) -> dict[str, Any]:
    points = measured["points"]
    full = points.get("full", {})
    steps_peak = max((p["peak"] for p in points.values() if "peak" in p), default=0.0)
    # The sample generation and the final save run on top of what the steps left resident; what
    # they add beyond the steps' peak (nothing, mostly: the checkpoint saves inside the phases
    # are the same work) is part of the fixed cost. Loading the model is the floor no micro-batch lowers.
    after = max(measured["save_peak"], measured["sample_peak"])
    extra = max(0.0, after - steps_peak) if steps_peak else 0.0
    model = _memory_model(points, measured["load_peak"], measured["now"], extra)
    available = meter.available_bytes()
    budget = available * fit.SAFETY
    out_of_memory = any(p.get("out_of_memory") for p in points.values())
    if "peak" in full:
        peak = max(meter.peak, full["peak"])
    elif model is not None:  # the full batch ran out of memory: the line says how far over it is
        peak = max(meter.peak, model.peak(full.get("tokens", 0)), available)
    else:
        peak = max(meter.peak, available)
    fits = not out_of_memory and peak <= budget
    proposal = None
    if not fits and model is not None:
        proposal = fit.propose(model, measured["longest"], measured["batch"], cfg.grad_accum, cfg.max_length,
                               budget, measured["padded"])
    return {
        "probe": True,
        "fits": fits,
        "peak_gb": peaks.gb(peak),
        "available_gb": peaks.gb(available),
        "margin_gb": peaks.gb(available - peak),
        "safety": fit.SAFETY,
        "budget_gb": peaks.gb(budget),
        "available_source": f"{AVAILABLE_ENV}"
        if meter.override is not None
        else (
            "the GPU's memory less other processes' use"
            if meter.cuda
            else "RAM available at the start plus this process"
        ),
        "measure": meter.source,
        "out_of_memory": out_of_memory,
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "max_length": cfg.max_length,
        "rows": measured["rows"],
        "batch_tokens": full.get("tokens"),
        "longest_row_tokens": max(measured["longest"], default=0),
        "phases": {
            "load_gb": peaks.gb(measured["load_peak"]),
            "save_gb": peaks.gb(measured["save_peak"]),
            "samples_gb": peaks.gb(measured["sample_peak"]),
            **{name: {k: (peaks.gb(v) if k == "peak" else v) for k, v in p.items()} for name, p in points.items()},
        },
        "model": None
        if model is None
        else {
            "fixed_gb": peaks.gb(model.fixed),
            "per_token_mb": round(model.per_token / 2**20, 4),
            "floor_gb": peaks.gb(model.floor),
        },
        "proposal": proposal,
    }


def _memory_model(points: dict[str, dict[str, Any]], floor: float, now: float,
                  extra: float = 0.0) -> fit.MemoryModel | None:
    measured = [(p["tokens"], p["peak"] + extra) for p in points.values() if "peak" in p]
    if len(measured) == 2:
        return fit.MemoryModel.through(measured[0], measured[1], floor)
    if len(measured) == 1 and measured[0][0] > 0:
        # One phase only (the other ran out of memory, or all rows are as long): the line through
        # it and the memory held before any step, whose slope then also carries the gradients
        # and optimiser state -- larger than the true one, so proposals err on the safe side.
        tokens, peak = measured[0]
        return fit.MemoryModel.through((0, min(now, peak)), (tokens, peak), floor)
    return None
