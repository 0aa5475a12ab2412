"""`tunebench-engine`: every engine job as a subcommand (ARCHITECTURE.md rule 2).

The GUI runs exactly these commands with ``--json`` and reads their protocol stream; a person
can run the same commands in a terminal and get the same result in readable form.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from engine import __version__
from engine.core import config, protocol
from engine.core.channel import Channel, ChannelLogHandler, reserve_stdout
from engine.core.control import Control
from engine.core.errors import EngineError
from engine.runtime import memory
from engine.data.formats import FORMATS, TXT_MODES
from engine.data.shapes import SHAPES
from engine.eval import spec as eval_spec
from engine.runtime.device import package_versions, probe

log = logging.getLogger("engine")

# Commands that load torch; their hello carries the device probe.
HEAVY_COMMANDS = {"check-env", "train", "generate", "session", "serve", "batch", "models prepare", "evaluate run",
                  "evaluate hardest", "export"}

# Commands that read their own stdin (requests, not only cancel/ping) and handle Ctrl+C.
OWN_STDIN_COMMANDS = {"session"}


@dataclass
class Job:
    channel: Channel
    control: Control
    command: str


Handler = Callable[[argparse.Namespace, Job], int]


def _lazy(module: str, function: str) -> Handler:
    """Imports the handler's module only when its command runs, so `--help` stays instant."""

    def handler(args: argparse.Namespace, job: Job) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(args, job)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebench-engine",
        description="Tunebench engine: fine-tune, test and inspect local LLMs from the command line. "
        "With --json, stdout carries the NDJSON protocol the Tunebench window reads.",
        epilog="Exit codes: " + "; ".join(f"{int(c)} {c.name.lower()}" for c in protocol.ExitCode))
    parser.add_argument("--version", action="version", version=f"tunebench-engine {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check_env(commands)
    _add_models(commands)
    _add_data(commands)
    train = _add_train(commands)
    _add_generate(commands)
    _add_session(commands)
    _add_serve(commands)
    _add_batch(commands)
    _add_queue(commands, train)
    _add_evaluate(commands)
    _add_export(commands)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="write protocol messages (NDJSON) to stdout instead of text")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")


def _add_check_env(commands: Any) -> None:
    p = commands.add_parser("check-env", help="show torch, CUDA, bitsandbytes, device and memory")
    _common(p)
    p.set_defaults(handler=_lazy("engine.runtime.device", "check_env"), job_name="check-env")


def _add_models(commands: Any) -> None:
    models = commands.add_parser("models", help="list and prepare base models")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="the bundled default model and models prepared in the cache")
    _common(p)
    p.set_defaults(handler=_lazy("engine.runtime.models", "cmd_list"), job_name="models list")
    p = sub.add_parser("prepare", help="make a model ready to load (converts GGUF to safetensors once)")
    p.add_argument("model", help="'default', a local Hugging Face folder or a .gguf file")
    _common(p)
    p.set_defaults(handler=_lazy("engine.runtime.models", "cmd_prepare"), job_name="models prepare")


def _add_data(commands: Any) -> None:

    data = commands.add_parser("data", help="import, list, export, split, inspect and clean datasets")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = sub.add_parser("import", help="validate a dataset file (JSONL, JSON, CSV, TSV, Parquet, TXT or "
                       "a datasets folder; any common shape) and store it as a versioned dataset "
                       "in the workspace")
    p.add_argument("path", help="the file, or a folder saved by datasets")
    p.add_argument("--name", default="", help="dataset name (default: the file name)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="import the valid rows and report the rest (default: refuse the file)")
    p.add_argument("--format", choices=FORMATS, default="",
                   help="file format (default: from the file name or content)")
    p.add_argument("--shape", choices=SHAPES, default="",
                   help="row shape (default: detected from the first row)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="read a shape's field from another column, e.g. --map instruction=question "
                   "(repeatable)")
    p.add_argument("--txt-mode", choices=TXT_MODES, default="paragraphs",
                   help="TXT files: one document per blank-line-separated paragraph, or the whole file")
    p.add_argument("--report", default=None, metavar="FILE",
                   help="write every problem found as JSONL (file, line, field, problem)")
    p.add_argument("--split", default="", metavar="NAME",
                   help="a folder saved from a datasets DatasetDict: import only this split "
                   "(default: every split, kept as the version's splits)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data.importer", "cmd_import"), job_name="data import")
    p = sub.add_parser("list", help="datasets in the workspace")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data.importer", "cmd_list"), job_name="data list")
    # Lists written out: data_export/data_split import datasets lazily, but keep --help instant.
    export_formats = ("messages", "alpaca", "sharegpt", "prompt_completion", "preference",
                      "classification", "text")
    p = sub.add_parser("export", help="write a stored dataset to JSONL in a shape other tools read "
                       "(OpenAI messages, Alpaca, ShareGPT, TRL prompt/completion)")
    p.add_argument("dataset", help="NAME or NAME@vN")
    p.add_argument("--format", choices=export_formats, default="",
                   help="chat datasets: messages (default), alpaca (single-turn rows only), sharegpt or "
                   "prompt_completion; other shapes export as themselves")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="the JSONL file to write")
    p.add_argument("--split", choices=("train", "validation", "test"), default="",
                   help="export one split of a split version (default: every row)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave out rows the format cannot hold (default: refuse, naming the first)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data.export", "cmd_export"), job_name="data export")
    p = sub.add_parser("split", help="split a dataset into train/validation(/test) with a seed, stored "
                       "as a new version (stratified by label for classification)")
    p.add_argument("dataset", help="NAME or NAME@vN")
    p.add_argument("--val", type=float, default=0.1, help="fraction for the validation split (default 0.1)")
    p.add_argument("--test", type=float, default=0.0, help="fraction for a test split (default 0: none)")
    p.add_argument("--seed", type=int, default=42, help="shuffle seed; the same seed gives the same split")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data.split", "cmd_split"), job_name="data split")
    _add_data_inspect(sub)


def _tokenizer_options(p: argparse.ArgumentParser, max_length_default: int) -> None:
    """Options shared by `data stats` and `data preview`: tokenize as `train` would."""
    defaults = config.TrainConfig()
    p.add_argument("dataset", help="NAME or NAME@vN")
    p.add_argument("--model", default=defaults.model,
                   help="the model whose tokenizer and chat template training uses (as for train; "
                   "default: the bundled model)")
    p.add_argument("--max-length", type=int, default=max_length_default,
                   help=f"the training cutoff in tokens (train's max_length; default {max_length_default or 'none'})")
    p.add_argument("--split", choices=("train", "validation", "test"), default="",
                   help="one split of a split version (default: every row)")
    p.add_argument("--completion-only-loss", action=argparse.BooleanOptionalAction,
                   default=defaults.completion_only_loss,
                   help="mask the prompt out of the loss, as train's knob of that name (default: on)")
    _common(p)


def _add_data_inspect(sub: Any) -> None:
    max_length = config.TrainConfig().max_length
    p = sub.add_parser("stats", help="token lengths as training sees them (histogram, rows truncated by "
                       "the cutoff, answers cut), duplicates, empty answers, roles, label balance")
    _tokenizer_options(p, max_length)
    p.set_defaults(handler=_lazy("engine.data.stats", "cmd_stats"), job_name="data stats")
    p = sub.add_parser("preview", help="one row rendered through the chat template as training sees it, "
                       "with the tokens that count in the loss marked")
    p.add_argument("--row", type=int, required=True, help="the row number, 1-based as the table shows it")
    _tokenizer_options(p, max_length)
    p.set_defaults(handler=_lazy("engine.data.preview", "cmd_preview"), job_name="data preview")
    _add_data_clean(sub)


def _add_data_clean(sub: Any) -> None:
    p = sub.add_parser("clean", help="normalise, dedupe, drop empty rows, filter by token length, oversample "
                       "minority labels, augment; stored as a new version that names its parent",
                       description="Steps run in this order and each reports how many rows it changed. "
                       "Splits are kept; oversampling and augmentation add to the train split only.")
    p.add_argument("dataset", help="NAME or NAME@vN")
    p.add_argument("--normalize", action="store_true",
                   help="Unicode NFC, odd spaces and invisible characters, LF line ends, trailing spaces, "
                   "runs of blank lines")
    p.add_argument("--drop-empty", action="store_true", help="drop rows with an empty answer, turn or text")
    p.add_argument("--dedupe", action="store_true",
                   help="drop exact duplicate rows (across splits: a test row that repeats a train row goes)")
    p.add_argument("--min-tokens", type=int, default=0, help="drop rows shorter than this many tokens "
                   "(as training tokenizes them with --model)")
    p.add_argument("--max-tokens", type=int, default=0, help="drop rows longer than this many tokens")
    p.add_argument("--model", default=config.TrainConfig().model,
                   help="tokenizer and chat template for --min-tokens/--max-tokens (default: the bundled model)")
    p.add_argument("--oversample", action="store_true",
                   help="classification: copy random rows of minority labels until every label is as "
                   "common as the most common one (train split only)")
    p.add_argument("--augment", choices=("delete", "swap"), default="",
                   help="add copies with random word deletion or swap in the prompt side (train split only)")
    p.add_argument("--augment-copies", type=int, default=1, help="augmented copies per row (default 1)")
    p.add_argument("--seed", type=int, default=42, help="seed for oversampling and augmentation")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data.clean", "cmd_clean"), job_name="data clean")


def _add_train(commands: Any) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "train", help="fine-tune (QLoRA, LoRA, full, prompt or prefix tuning; SFT, DPO or ORPO); "
        "writes a run folder in the workspace",
        description="Settings resolve as: defaults < --preset < --config file < flags.")
    p.add_argument("--preset", help="a preset name, e.g. cpu-quick-demo or gpu-12gb")
    p.add_argument("--config", help="a TOML run file with a [train] table")
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a stopped, cancelled or crashed run (run id or folder) in its own "
                   "folder from its last complete checkpoint, with its saved config.toml; only "
                   "--max-steps and --epochs may be given with it (to train longer)")
    p.add_argument("--continue-from", metavar="RUN", default=None,
                   help="start a new run whose adapter begins as RUN's saved adapter; settings "
                   "start from RUN's config.toml and the other flags override them")
    p.add_argument("--export-launch", metavar="DIR", default=None,
                   help="write cluster launch files for these settings to DIR instead of training: "
                   "config.toml, accelerate_config.yaml, launch.sh (torchrun) and tunebench.sbatch (SLURM)")
    p.add_argument("--nodes", type=int, default=None, help="with --export-launch: machines in the cluster (default 1)")
    p.add_argument("--worker-of", default=None, help=argparse.SUPPRESS)  # a process of a --gpus run
    config.add_arguments(p)
    _common(p)
    p.set_defaults(handler=_lazy("engine.train.run", "cmd_train"), job_name="train")
    return p


def _add_generate(commands: Any) -> None:
    p = commands.add_parser("generate", help="answer one prompt, streaming tokens")
    p.add_argument("--model", default=None,
                   help="base model (as for train; default: the adapter's base, else the bundled model)")
    p.add_argument("--adapter", default="", help="a PEFT adapter folder or a run folder / run id")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--system", default=None, help="system prompt (default: the dataset's, if "
                   "the adapter's run recorded one, else none)")
    p.add_argument("--raw", action="store_true", help="complete the prompt as plain text, no chat template")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _common(p)
    p.set_defaults(handler=_lazy("engine.infer.generate", "cmd_generate"), job_name="generate")


def _add_export(commands: Any) -> None:
    p = commands.add_parser(
        "export", help="a run's tuned model with the adapter merged in: a Hugging Face folder, or one GGUF "
        "file for llama.cpp, LM Studio and Ollama")
    p.add_argument("run", help="a run id, a run folder or an adapter folder")
    p.add_argument("--format", choices=("merged", "gguf"), default="merged",
                   help="merged: safetensors, tokenizer and chat template in a folder; gguf: one file "
                   "(Llama-family models)")
    p.add_argument("--outtype", default=None, help="merged: f16 (default), bf16 or f32; gguf: f16 (default), "
                   "q8_0 (half the size) or f32")
    p.add_argument("--out", default=None, help="where to write (default: exports/ in the run's folder)")
    p.add_argument("--force", action="store_true", help="replace what is already at --out")
    p.add_argument("--model", default=None, help="the base model (default: the one the run was trained on)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.export.model", "cmd_export"), job_name="export")


def _add_session(commands: Any) -> None:
    p = commands.add_parser("session", help="the playground: keep models loaded and answer generate "
                            "requests read from stdin as JSON lines (see engine/core/protocol.py)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--max-models", type=int, default=0,
                   help="base models kept loaded at once (default 0: as many as fit in memory, up to 4)")
    _speed_options(p)
    _common(p)
    p.set_defaults(handler=_lazy("engine.infer.session", "cmd_session"), job_name="session")


def _speed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fp32", dest="int8", action="store_false",
                   help="CPU: keep fp32 weights (default: weight-only int8 Linear layers, about 1.7x as fast, "
                   "fp32's greedy token ~96%% of the time; see benchmarks/decode_speed.py)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: one per core; 1 is faster on a busy shared CPU)")


def _add_serve(commands: Any) -> None:
    p = commands.add_parser("serve", help="a local OpenAI-compatible endpoint (/v1/chat/completions, "
                            "/v1/completions, /v1/models) on 127.0.0.1 with a generated bearer token")
    p.add_argument("--model", default=None,
                   help="base model (as for train; default: the adapter's base, else the bundled model)")
    p.add_argument("--adapter", default="", help="a PEFT adapter folder or a run folder / run id")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _speed_options(p)
    _common(p)
    p.set_defaults(handler=_lazy("engine.infer.serve", "cmd_serve"), job_name="serve")


def _add_batch(commands: Any) -> None:
    p = commands.add_parser("batch", help="run a prompt suite, or a column of a CSV/JSONL file, over one or "
                            "more configurations; results (JSONL, CSV, Markdown) in a workspace folder")
    p.add_argument("--suite", default="", help="a saved suite name or a suite JSON file")
    p.add_argument("--file", default="", help="a CSV/TSV/JSONL file whose --column holds the prompts")
    p.add_argument("--column", default="", help="the column (or JSONL field) of --file")
    p.add_argument("--mode", choices=("chat", "raw"), default="chat", help="--file prompts: chat or raw")
    p.add_argument("--system", default="", help="--file prompts: a system prompt")
    p.add_argument("--config", default="", help="configurations (model x adapter x params) as a JSON list "
                   "or TOML [[config]] tables; without it one configuration from the flags below")
    p.add_argument("--model", default=None, help="base model (default: the adapter's base, else the bundled model)")
    p.add_argument("--adapter", default="", help="a PEFT adapter folder or a run folder / run id")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--name", default="", help="a label for the batch folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _common(p)
    p.set_defaults(handler=_lazy("engine.infer.batch", "cmd_batch"), job_name="batch")


def _add_queue(commands: Any, train: argparse.ArgumentParser) -> None:
    queue = commands.add_parser("queue", help="training jobs that wait their turn; one runs at a time")
    sub = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    p = sub.add_parser("add", help="queue a training job: queue add [--name N] -- TRAIN FLAGS...")
    p.add_argument("--name", default="", help="a label for the job (default: the run name in the flags)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="flags for `train` (after --)")
    _common(p)
    # The train parser checks the job's flags now, not when its turn comes.
    p.set_defaults(handler=_lazy("engine.train.job_queue", "cmd_add"), job_name="queue add", train_parser=train)
    p = sub.add_parser("list", help="the jobs in run order, with their status and run id")
    _common(p)
    p.set_defaults(handler=_lazy("engine.train.job_queue", "cmd_list"), job_name="queue list")
    p = sub.add_parser("remove", help="take a waiting or ended job off the queue")
    p.add_argument("job", help="the job id (see queue list)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.train.job_queue", "cmd_remove"), job_name="queue remove")
    p = sub.add_parser("move", help="move a waiting job earlier or later")
    p.add_argument("job", help="the job id (see queue list)")
    p.add_argument("where", choices=("up", "down", "top", "bottom"))
    _common(p)
    p.set_defaults(handler=_lazy("engine.train.job_queue", "cmd_move"), job_name="queue move")
    p = sub.add_parser("clear", help="drop ended jobs from the list (their run folders stay)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.train.job_queue", "cmd_clear"), job_name="queue clear")
    p = sub.add_parser("run", help="the worker: train the queued jobs one at a time until none is left "
                       "(one worker per workspace)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.train.job_queue", "cmd_run"), job_name="queue run")


def _add_evaluate(commands: Any) -> None:

    evaluate = commands.add_parser("evaluate", help="score the base model and adapters on a dataset "
                                   "split; list and export evaluations")
    sub = evaluate.add_subparsers(dest="evaluate_command", required=True, metavar="ACTION")
    p = sub.add_parser("run", help="evaluate the base model and each adapter with the same rows and "
                       "settings; writes an evaluation folder in the workspace",
                       description="Settings resolve as: defaults < --config file < flags.")
    eval_spec.add_arguments(p)
    _common(p)
    p.set_defaults(handler=_lazy("engine.eval.run", "cmd_run"), job_name="evaluate run")
    p = sub.add_parser("list", help="evaluations in the workspace")
    _common(p)
    p.set_defaults(handler=_lazy("engine.eval.run", "cmd_list"), job_name="evaluate list")
    p = sub.add_parser("hardest", help="after a run: score every training row with the run's adapter "
                       "and write the highest-loss ones for review")
    p.add_argument("run", help="run id or run folder")
    p.add_argument("--top", type=int, default=20, help="how many rows to keep (default 20)")
    p.add_argument("--split", choices=("train", "validation", "test"), default="train",
                   help="split of the run's dataset to score (default: train)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per forward pass (default 8)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _common(p)
    p.set_defaults(handler=_lazy("engine.eval.hardest", "cmd_hardest"), job_name="evaluate hardest")
    p = sub.add_parser("report", help="export an evaluation as Markdown and HTML (SVG charts) plus CSV, "
                       "into its report/ folder")
    p.add_argument("evaluation", help="evaluation id or folder (see evaluate list)")
    _common(p)
    p.set_defaults(handler=_lazy("engine.eval.report", "cmd_report"), job_name="evaluate report")


def _setup_logging(job: Job, verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    if job.channel.json_mode:
        # The window shows engine log records from the protocol and raw stderr separately;
        # keep stderr for library warnings and tracebacks so nothing shows twice.
        stderr.setLevel(logging.WARNING)
        handler = ChannelLogHandler(job.channel)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("engine").addHandler(handler)
    root.addHandler(stderr)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "torch._dynamo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes notes at import that an optional faster CPU kernel package is absent; it is
    # optional and the note would greet every user, so only real errors from there are shown.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    _quiet_progress_bars()


def _quiet_progress_bars() -> None:
    """Library progress bars redraw a line many times a second: noise in a log file and in the
    window's log pane, which already shows progress from protocol messages."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # rule 9: offline unless a download is asked for


def _hello(job: Job) -> dict[str, Any]:

    extra: dict[str, Any] = {"packages": package_versions()}
    if job.command in HEAVY_COMMANDS:

        extra["device"] = probe()
    return protocol.hello(job.command, __version__, **extra)


def main(argv: list[str] | None = None) -> int:
    protocol_stream = reserve_stdout()
    memory.return_freed_memory()
    args = build_parser().parse_args(argv)
    channel = Channel(protocol_stream, json_mode=args.json)
    job = Job(channel, Control(channel), args.job_name)
    _setup_logging(job, args.verbose)
    try:
        channel.send(_hello(job))
        if job.command not in OWN_STDIN_COMMANDS:
            job.control.start()
        return int(args.handler(args, job))
    except EngineError as exc:
        return _fail(channel, exc.code, exc.message)
    except config.ConfigError as exc:
        return _fail(channel, protocol.ExitCode.USAGE, str(exc))
    except KeyboardInterrupt:
        return _fail(channel, protocol.ExitCode.CANCELLED, "interrupted")
    except Exception as exc:  # a bug: the user gets one line, the log gets the traceback
        if type(exc).__name__ == "OutOfMemoryError":
            return _fail(channel, protocol.ExitCode.OUT_OF_MEMORY,
                         "out of memory: lower batch_size or max_length, or use qlora")
        log.exception("unexpected error")
        return _fail(channel, protocol.ExitCode.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        channel.close()


def _fail(channel: Channel, code: int, message: str) -> int:
    log.debug("failing with %s: %s", code, message)
    channel.send(protocol.error(code, message))
    return int(code)
