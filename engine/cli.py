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

from engine import __version__, config, protocol
from engine.channel import Channel, ChannelLogHandler, reserve_stdout
from engine.control import Control
from engine.errors import EngineError

log = logging.getLogger("engine")

# Commands that load torch; their hello carries the device probe.
HEAVY_COMMANDS = {"check-env", "train", "generate", "models prepare"}


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
    _add_train(commands)
    _add_generate(commands)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="write protocol messages (NDJSON) to stdout instead of text")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")


def _add_check_env(commands: Any) -> None:
    p = commands.add_parser("check-env", help="show torch, CUDA, bitsandbytes, device and memory")
    _common(p)
    p.set_defaults(handler=_lazy("engine.device", "check_env"), job_name="check-env")


def _add_models(commands: Any) -> None:
    models = commands.add_parser("models", help="list and prepare base models")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="the bundled default model and models prepared in the cache")
    _common(p)
    p.set_defaults(handler=_lazy("engine.models", "cmd_list"), job_name="models list")
    p = sub.add_parser("prepare", help="make a model ready to load (converts GGUF to safetensors once)")
    p.add_argument("model", help="'default', a local Hugging Face folder or a .gguf file")
    _common(p)
    p.set_defaults(handler=_lazy("engine.models", "cmd_prepare"), job_name="models prepare")


def _add_data(commands: Any) -> None:
    from engine.data_formats import FORMATS, TXT_MODES
    from engine.data_shapes import SHAPES

    data = commands.add_parser("data", help="import, list, export and split datasets")
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
    _common(p)
    p.set_defaults(handler=_lazy("engine.data_import", "cmd_import"), job_name="data import")
    p = sub.add_parser("list", help="datasets in the workspace")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data_import", "cmd_list"), job_name="data list")
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
    p.set_defaults(handler=_lazy("engine.data_export", "cmd_export"), job_name="data export")
    p = sub.add_parser("split", help="split a dataset into train/validation(/test) with a seed, stored "
                       "as a new version (stratified by label for classification)")
    p.add_argument("dataset", help="NAME or NAME@vN")
    p.add_argument("--val", type=float, default=0.1, help="fraction for the validation split (default 0.1)")
    p.add_argument("--test", type=float, default=0.0, help="fraction for a test split (default 0: none)")
    p.add_argument("--seed", type=int, default=42, help="shuffle seed; the same seed gives the same split")
    _common(p)
    p.set_defaults(handler=_lazy("engine.data_split", "cmd_split"), job_name="data split")


def _add_train(commands: Any) -> None:
    p = commands.add_parser(
        "train", help="fine-tune with LoRA or QLoRA; writes a run folder in the workspace",
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
    config.add_arguments(p)
    _common(p)
    p.set_defaults(handler=_lazy("engine.train", "cmd_train"), job_name="train")


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
    p.set_defaults(handler=_lazy("engine.generate", "cmd_generate"), job_name="generate")


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
    from engine.device import package_versions

    extra: dict[str, Any] = {"packages": package_versions()}
    if job.command in HEAVY_COMMANDS:
        from engine.device import probe

        extra["device"] = probe()
    return protocol.hello(job.command, __version__, **extra)


def main(argv: list[str] | None = None) -> int:
    protocol_stream = reserve_stdout()
    args = build_parser().parse_args(argv)
    channel = Channel(protocol_stream, json_mode=args.json)
    job = Job(channel, Control(channel), args.job_name)
    _setup_logging(job, args.verbose)
    try:
        channel.send(_hello(job))
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
