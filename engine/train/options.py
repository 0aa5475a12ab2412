"""Options of `train` besides its TrainConfig settings, and of the `queue` commands.

Every training setting is a TrainConfig knob (engine/core/config.py); these are the flags that
say where the settings come from, and what the queue does with a job.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from engine.core.schema import knob

MOVES = ("up", "down", "top", "bottom")


@dataclass
class TrainOptions:
    preset: str | None = knob(None, "a preset name, e.g. cpu-quick-demo or gpu-12gb")
    config: str | None = knob(None, "a TOML run file with a [train] table")
    resume: str | None = knob(
        None, "continue a stopped, cancelled or crashed run (run id or folder) in its own folder from "
        "its last complete checkpoint, with its saved config.toml; only --max-steps and --epochs may "
        "be given with it (to train longer)", metavar="RUN")
    continue_from: str | None = knob(
        None, "start a new run whose adapter begins as RUN's saved adapter; settings start from RUN's "
        "config.toml and the other flags override them", metavar="RUN")
    probe: bool = knob(
        False, "check that these settings fit in memory: two steps on the longest rows, then the peak, "
        "the margin and, if it does not fit, a micro-batch or max length that does; writes nothing to runs/")
    export_launch: str | None = knob(
        None, "write cluster launch files for these settings to DIR instead of training: config.toml, "
        "accelerate_config.yaml, launch.sh (torchrun) and tunebench.sbatch (SLURM)", metavar="DIR")
    nodes: int | None = knob(None, "with --export-launch: machines in the cluster (default 1)", minimum=1)
    # How a `--gpus N` run starts its worker processes; not for people.
    worker_of: str | None = knob(None, "the run folder a worker process joins", hidden=True, gui=False)


@dataclass
class QueueAddOptions:
    name: str = knob("", "a label for the job (default: the run name in the flags)")
    sweep: str | None = knob(None, "queue the sweep NAME (`sweep run NAME`: its trials, one after another) "
                             "instead of a training job; queued again after a kill, it resumes with the "
                             "interrupted trial retried", metavar="NAME")
    train_args: list[str] = knob([], "flags for `train` (after --)", positional=True, nargs=argparse.REMAINDER)


@dataclass
class QueueJobOptions:
    job: str = knob("", "the job id (see queue list)", positional=True)


@dataclass
class QueueMoveOptions:
    job: str = knob("", "the job id (see queue list)", positional=True)
    where: str = knob("up", "one place earlier or later, or to the start or end of the queue",
                      positional=True, choices=MOVES)
