"""Live training events: a TrainerCallback that turns the Trainer's progress into protocol
messages (progress, metrics, checkpoints), honours cancel at step boundaries and stops a run
whose loss diverges."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from engine.core import protocol, workspace
from engine.core.job import Job
from engine.train.monitor import hardware_metrics

log = logging.getLogger("engine.train.run")

def make_callback(job: Job, run: workspace.RunFolder) -> Any:
    """A TrainerCallback that streams progress/metrics and honours cancel at step boundaries.
    Built in a function so importing this module does not import transformers."""
    from transformers import TrainerCallback

    class ProtocolCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.last_log = (self.started, 0.0)
            self.final_loss: float | None = None
            self.first_loss: float | None = None
            self.diverged = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.monotonic()
            self.last_log = (self.started, 0.0)
            job.channel.send(protocol.progress(state.global_step, state.max_steps, eta_s=None, stage="train"))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            elapsed = time.monotonic() - self.started
            remaining = state.max_steps - state.global_step
            eta = elapsed / max(state.global_step, 1) * remaining
            job.channel.send(protocol.progress(state.global_step, state.max_steps, eta_s=round(eta, 1),
                                               stage="train"))
            if job.control.cancelled.is_set() or self.diverged:
                control.should_training_stop = True
                control.should_save = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary has train_loss etc., not a step
            loss = float(logs["loss"])
            values = self._values(logs, args.device.type == "cuda")
            self.final_loss = loss
            if self.first_loss is None and math.isfinite(loss):
                self.first_loss = loss
            if is_divergent(loss, self.first_loss):
                self.diverged = True
                log.error("Loss became %s at step %d (first step: %s); stopping.", loss,
                          state.global_step, self.first_loss)
            # tokens: the non-padding tokens trained on so far, for throughput over a whole run.
            extra = {"tokens": int(logs["num_tokens"])} if "num_tokens" in (logs or {}) else {}
            job.channel.send(protocol.metrics(state.global_step, values, **extra))

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None,
                        **kw: Any) -> None:
            # Validation loss, and for DPO/ORPO the preference rewards on held-out pairs.
            values = {k: float(v) for k, v in (metrics or {}).items()
                      if (k == "eval_loss" or k.startswith("eval_rewards/")) and isinstance(v, (int, float))
                      and math.isfinite(v)}
            if "eval_loss" in values:
                job.channel.send(protocol.metrics(state.global_step, values, split="validation"))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            path = run.checkpoints / f"checkpoint-{state.global_step}"
            job.channel.send(protocol.artifact("checkpoint", str(path), step=state.global_step))

        def _values(self, logs: dict, on_cuda: bool) -> dict[str, float]:
            values = {k: float(v) for k, v in logs.items()
                      if isinstance(v, (int, float)) and k != "num_tokens"}
            now, tokens = time.monotonic(), float(logs.get("num_tokens", 0.0))
            if tokens and now > self.last_log[0]:
                values["tokens_per_s"] = (tokens - self.last_log[1]) / (now - self.last_log[0])
            self.last_log = (now, tokens)
            values.update(hardware_metrics(on_cuda))
            # JSON has no NaN/inf (the protocol refuses them); a missing value is the gap the
            # plot shows, and the divergence error says why.
            return {k: v for k, v in values.items() if math.isfinite(v)}

    return ProtocolCallback()


# A loss this many times the first step's has left the loss surface, not hit a noisy batch:
# a fresh model's loss is about the log of its vocabulary and training only lowers it.
DIVERGENCE_FACTOR = 10.0


def is_divergent(loss: float, first_loss: float | None) -> bool:
    if not math.isfinite(loss):
        return True
    return first_loss is not None and first_loss > 0 and loss > DIVERGENCE_FACTOR * first_loss


def report_oom(job: Job, step: int, micro_batch: int) -> None:
    """Says in the log and on the plot (a metrics message with ``event: oom``) where memory ran
    out and what the run goes on with."""
    log.warning("Out of memory at step %d: micro-batch halved to %d, gradient accumulation doubled; "
                "the effective batch is unchanged", step, micro_batch)
    job.channel.send(protocol.metrics(step, {"micro_batch": float(micro_batch)}, event="oom"))
