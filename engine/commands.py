"""Every engine command, in one table: its name, handler, options schemas and how it runs.

The CLI (engine/cli.py) builds its argparse parsers from this table and nothing else, so a
command's flags, its help and the schema its handler reads cannot drift apart; tests walk the
table to check every option has help text. Handlers are named as ``module:function`` strings and
imported only when their command runs, which keeps ``tunebench-engine --help`` instant (no torch).

A command's flags come from, in this order:

- ``options``: schemas whose flags go straight to the handler (:mod:`engine.core.schema`);
- ``settings``: a schema resolved in layers (defaults < preset or file < flags), whose flags
  default to None: TrainConfig, EvalSpec and JudgeSpec. A sweep's settings (SweepConfig) come
  from its sweep file, which ``sweep create`` reads, not from flags;
- :class:`engine.core.job.CommonOptions` (``--json``, ``-v``), which every command takes.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Callable

from engine.core.config import TrainConfig
from engine.core.job import CommonOptions, Job
from engine.data import options as data
from engine.eval import options as evaluate
from engine.eval.judge_spec import JudgeSpec
from engine.eval.spec import EvalSpec
from engine.export.options import ExportOptions
from engine.export.push_options import PushOptions
from engine.infer import options as infer
from engine.runtime.options import (
    ModelsCardOptions,
    ModelsDownloadOptions,
    ModelsPrepareOptions,
    ModelsSearchOptions,
)
from engine.sweep import options as sweep
from engine.train import options as train

Handler = Callable[[argparse.Namespace, Job], int]


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        name: the words after ``tunebench-engine``, e.g. ``"data import"``; the first of two
            words names a group in :data:`GROUPS`.
        handler: ``"module:function"``, called as ``function(args, job)`` for an exit code.
        help: the one line the command list shows.
        options: option schemas, their flags in this order.
        settings: the settings schema layered over a preset or file, if any.
        description: more text for the command's own ``--help``.
        heavy: loads torch; its ``hello`` carries the device probe.
        own_stdin: reads requests from stdin and handles Ctrl+C itself, so the CLI does not
            start the cancel reader.
        online: talks to the Hugging Face Hub because the user asked it to; every other command
            runs with huggingface_hub in offline mode (docs/architecture.md, rule 9).
    """

    name: str
    handler: str
    help: str
    options: tuple[type, ...] = ()
    settings: type | None = None
    description: str | None = None
    heavy: bool = False
    own_stdin: bool = False
    online: bool = False

    @property
    def schemas(self) -> tuple[type, ...]:
        """Every schema whose fields are this command's flags, in flag order."""
        return (*self.options, *((self.settings,) if self.settings else ()), CommonOptions)

    def load(self) -> Handler:
        """The handler function (imports its module)."""
        module, function = self.handler.split(":")
        return getattr(importlib.import_module(module), function)


GROUPS = {
    "models": "list, prepare, search and download base models",
    "data": "import, list, export, split, inspect and clean datasets",
    "queue": "training jobs that wait their turn; one runs at a time",
    "sweep": "hyperparameter search with Optuna: each trial is an ordinary run; one machine or several",
    "evaluate": "score the base model and adapters on a dataset split; list and export evaluations",
}

COMMANDS: tuple[Command, ...] = (
    Command("check-env", "engine.runtime.device:check_env", "show torch, CUDA, bitsandbytes, device and memory",
            heavy=True),
    Command("models list", "engine.runtime.models:cmd_list",
            "the bundled default model and models prepared in the cache"),
    Command("models prepare", "engine.runtime.models:cmd_prepare",
            "make a model ready to load (converts GGUF to safetensors once)", (ModelsPrepareOptions,), heavy=True),
    Command("models search", "engine.runtime.hub:cmd_search",
            "search the Hugging Face Hub: downloads, size and whether each method fits this machine",
            (ModelsSearchOptions,), online=True),
    Command("models card", "engine.runtime.hub:cmd_card", "a Hub model's card (its README) as text",
            (ModelsCardOptions,), online=True),
    Command("models download", "engine.runtime.hub_download:cmd_download",
            "fetch a Hub model's safetensors or GGUF weights and its config/tokenizer files (never pickles) "
            "into the models cache", (ModelsDownloadOptions,), online=True,
            description="Checks free disk space first; a dropped connection resumes, and running it again after "
                        "a cancel keeps the files already fetched. Gated models need `models login`."),
    Command("models login", "engine.runtime.hub:cmd_login",
            "store a Hugging Face token (read from stdin) in the OS keyring, for gated and private models",
            own_stdin=True),
    Command("data import", "engine.data.importer:cmd_import",
            "validate a dataset file (JSONL, JSON, CSV, TSV, Parquet, TXT or a datasets folder; any common "
            "shape) and store it as a versioned dataset in the workspace", (data.ImportOptions,)),
    Command("data list", "engine.data.importer:cmd_list", "datasets in the workspace"),
    Command("data export", "engine.data.export:cmd_export",
            "write a stored dataset to JSONL in a shape other tools read (OpenAI messages, Alpaca, ShareGPT, "
            "TRL prompt/completion)", (data.DataExportOptions,)),
    Command("data split", "engine.data.split:cmd_split",
            "split a dataset into train/validation(/test) with a seed, stored as a new version (stratified "
            "by label for classification)", (data.SplitOptions,)),
    Command("data stats", "engine.data.stats:cmd_stats",
            "token lengths as training sees them (histogram, rows truncated by the cutoff, answers cut), "
            "duplicates, empty answers, roles, label balance", (data.TokenizerOptions,)),
    Command("data preview", "engine.data.preview:cmd_preview",
            "one row rendered through the chat template as training sees it, with the tokens that count in "
            "the loss marked", (data.PreviewRowOptions, data.TokenizerOptions)),
    Command("data clean", "engine.data.clean:cmd_clean",
            "normalise, dedupe, drop empty rows, filter by token length, oversample minority labels, "
            "augment; stored as a new version that names its parent", (data.DatasetOptions, data.CleanOptions),
            description="Steps run in this order and each reports how many rows it changed. Splits are kept; "
            "oversampling and augmentation add to the train split only."),
    Command("train", "engine.train.run:cmd_train",
            "fine-tune (QLoRA, LoRA, full, prompt or prefix tuning; SFT, DPO or ORPO); writes a run folder "
            "in the workspace", (train.TrainOptions,), TrainConfig,
            description="Settings resolve as: defaults < --preset < --config file < flags.", heavy=True),
    Command("generate", "engine.infer.generate:cmd_generate", "answer one prompt, streaming tokens",
            (infer.GenerateOptions,), heavy=True),
    Command("session", "engine.infer.session:cmd_session",
            "the playground: keep models loaded and answer generate requests read from stdin as JSON lines "
            "(see engine/core/protocol.py)", (infer.SessionOptions, infer.SpeedOptions), heavy=True,
            own_stdin=True),
    Command("serve", "engine.infer.serve:cmd_serve",
            "a local OpenAI-compatible endpoint (/v1/chat/completions, /v1/completions, /v1/models) on "
            "127.0.0.1 with a generated bearer token", (infer.ServeOptions, infer.SpeedOptions), heavy=True),
    Command("batch", "engine.infer.batch:cmd_batch",
            "run a prompt suite, or a column of a CSV/JSONL file, over one or more configurations; results "
            "(JSONL, CSV, Markdown) in a workspace folder", (infer.BatchOptions,), heavy=True),
    Command("queue add", "engine.train.job_queue:cmd_add",
            "queue a training job: queue add [--name N] -- TRAIN FLAGS...", (train.QueueAddOptions,)),
    Command("queue list", "engine.train.job_queue:cmd_list", "the jobs in run order, with their status and run id"),
    Command("queue remove", "engine.train.job_queue:cmd_remove", "take a waiting or ended job off the queue",
            (train.QueueJobOptions,)),
    Command("queue move", "engine.train.job_queue:cmd_move", "move a waiting job earlier or later",
            (train.QueueMoveOptions,)),
    Command("queue clear", "engine.train.job_queue:cmd_clear",
            "drop ended jobs from the list (their run folders stay)"),
    Command("queue run", "engine.train.job_queue:cmd_run",
            "the worker: train the queued jobs one at a time until none is left (one worker per workspace)"),
    Command("sweep init", "engine.sweep.handlers:cmd_init",
            "write a sweep file to start from: every setting with its help text, a base and a small space",
            (sweep.SweepInitOptions,)),
    Command("sweep create", "engine.sweep.handlers:cmd_create",
            "create a sweep from a sweep file: its settings, the base run config and the search space",
            (sweep.SweepCreateOptions,),
            description="A sweep file has a [sweep] table (n_trials, sampler, pruner, ...), a [sweep.base] "
            "table (train settings every trial starts from) and one [sweep.space.KNOB] table per train knob "
            "searched: low/high (log, step) or choices. `sweep init FILE` writes one with every setting's help."),
    Command("sweep run", "engine.sweep.handlers:cmd_run",
            "run a sweep's trials until it has n_trials finished or pruned ones; a killed sweep resumes "
            "with the interrupted trial retried", (sweep.SweepNameOptions,), heavy=True),
    Command("sweep worker", "engine.sweep.handlers:cmd_worker",
            "join a sweep held in a database server and train its trials on this machine",
            (sweep.SweepWorkerOptions,), heavy=True),
    Command("sweep status", "engine.sweep.handlers:cmd_status",
            "a sweep's trials (state, value, knobs, duration), best trial and each knob's importance",
            (sweep.SweepNameOptions,)),
    Command("sweep best", "engine.sweep.handlers:cmd_best",
            "the best trial: its value, knobs, run and full run config", (sweep.SweepBestOptions,)),
    Command("sweep export", "engine.sweep.handlers:cmd_export",
            "write the trials as CSV and the study as a SQLite file that optuna and optuna-dashboard open",
            (sweep.SweepExportOptions,)),
    Command("sweep list", "engine.sweep.handlers:cmd_list", "the sweeps in the workspace"),
    Command("evaluate run", "engine.eval.run:cmd_run",
            "evaluate the base model and each adapter with the same rows and settings; writes an evaluation "
            "folder in the workspace", (evaluate.EvalRunOptions,), EvalSpec,
            description="Settings resolve as: defaults < --config file < flags.", heavy=True),
    Command("evaluate harness", "engine.eval.harness:cmd_harness",
            "run lm-evaluation-harness tasks (shipped ones or a task YAML) on the base model and each adapter, "
            "offline; writes an evaluation folder in the workspace", (evaluate.HarnessOptions,), heavy=True),
    Command("evaluate list", "engine.eval.run:cmd_list", "evaluations in the workspace"),
    Command("evaluate judge", "engine.eval.judge:cmd_judge",
            "an LLM judges an evaluation's answers: pairwise in both orders (win/tie/loss) or a 1-10 score; a "
            "local model or an OpenAI-compatible server", (evaluate.JudgeOptions,), JudgeSpec,
            description="Settings resolve as: defaults < --config file ([judge] table) < flags. A pairwise "
            "verdict that flips when the answers swap places counts as a tie."),
    Command("evaluate hardest", "engine.eval.hardest:cmd_hardest",
            "after a run: score every training row with the run's adapter and write the highest-loss ones "
            "for review", (evaluate.HardestOptions,), heavy=True),
    Command("evaluate report", "engine.eval.report:cmd_report",
            "export an evaluation as Markdown and HTML (SVG charts) plus CSV, into its report/ folder",
            (evaluate.ReportOptions,)),
    Command("export", "engine.export.model:cmd_export",
            "a run's tuned model with the adapter merged in: a Hugging Face folder, or one GGUF file for "
            "llama.cpp, LM Studio and Ollama; or the adapter alone as a GGUF LoRA file (--format gguf-lora)",
            (ExportOptions,), heavy=True),
    Command("push", "engine.export.hub_push:cmd_push",
            "upload a run's adapter (or with --merged the model with it merged in) to a Hugging Face Hub "
            "repository, with a model card written from the run", (PushOptions,), online=True,
            description="The card (README.md, loss.svg) names the base model, the dataset version and its "
            "content hash, the settings, the loss curve and the run's evaluations. Only safetensors, configs, "
            "tokenizer files and the chat template go up, never pickles. Needs a token with write access: "
            "`models login`."),
)


def find(name: str) -> Command:
    """The command called ``name`` (e.g. ``"data import"``)."""
    for command in COMMANDS:
        if command.name == name:
            return command
    raise KeyError(name)
