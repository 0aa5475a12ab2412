"""`tunebench-engine`: every engine job as a subcommand (docs/architecture.md).

The GUI runs exactly these commands with ``--json`` and reads their protocol stream; a person
can run the same commands in a terminal and get the same result in readable form. The
subcommands, their flags and their handlers come from the table in engine/commands.py.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from typing import Any

from engine import __version__
from engine.commands import COMMANDS, GROUPS, Command
from engine.core import protocol, schema
from engine.core.channel import Channel, ChannelLogHandler, reserve_stdout
from engine.core.control import Control
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.runtime import memory
from engine.runtime.device import package_versions, probe

log = logging.getLogger("engine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebench-engine",
        description="Tunebench engine: fine-tune, test and inspect local LLMs from the command line. "
        "With --json, stdout carries the NDJSON protocol the Tunebench window reads.",
        epilog="Exit codes: " + "; ".join(f"{int(c)} {c.name.lower()}" for c in protocol.ExitCode))
    parser.add_argument("--version", action="version", version=f"tunebench-engine {__version__}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, Any] = {}
    parsers: dict[str, argparse.ArgumentParser] = {}
    for command in COMMANDS:
        *group, word = command.name.split()
        subparsers = _group(top, groups, group[0]) if group else top
        parsers[command.name] = _command_parser(subparsers, word, command)
    # `queue add` checks a job's flags with the real train parser now, not when its turn comes.
    parsers["queue add"].set_defaults(train_parser=parsers["train"])
    return parser


def _group(top: Any, groups: dict[str, Any], name: str) -> Any:
    """The subparsers of a command group such as `data`, made on first use."""
    if name not in groups:
        group = top.add_parser(name, help=GROUPS[name])
        groups[name] = group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")
    return groups[name]


def _command_parser(subparsers: Any, word: str, command: Command) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(word, help=command.help, description=command.description)
    for options in command.schemas:
        schema.add_arguments(parser, options, settings=options is command.settings)
    parser.set_defaults(entry=command)
    return parser


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
    for noisy in ("httpx", "httpx2", "urllib3", "filelock", "datasets", "torch._dynamo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes notes at import that an optional faster CPU kernel package is absent; it is
    # optional and the note would greet every user, so only real errors from there are shown.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _quiet_progress_bars(online: bool = False) -> None:
    """Library progress bars redraw a line many times a second: noise in a log file and in the
    window's log pane, which already shows progress from protocol messages."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if not online:  # rule 9: offline unless the command is a download or search the user asked for
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _hello(job: Job, heavy: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {"packages": package_versions()}
    if heavy:
        extra["device"] = probe()
    return protocol.hello(job.command, __version__, **extra)


def main(argv: list[str] | None = None) -> int:
    protocol_stream = reserve_stdout()
    logging.raiseExceptions = False  # a full disk must not print a traceback for each log line
    memory.configure_process()
    args = build_parser().parse_args(argv)
    command: Command = args.entry
    channel = Channel(protocol_stream, json_mode=args.json)
    job = Job(channel, Control(channel), command.name)
    _setup_logging(job, args.verbose)
    _quiet_progress_bars(command.online)
    try:
        channel.send(_hello(job, command.heavy))
        if not command.own_stdin:
            job.control.start()
        return int(command.load()(args, job))
    except EngineError as exc:
        return _fail(channel, exc.code, exc.message)
    except schema.ConfigError as exc:  # TrainConfig, EvalSpec and every other schema's
        return _fail(channel, protocol.ExitCode.USAGE, str(exc))
    except KeyboardInterrupt:
        return _fail(channel, protocol.ExitCode.CANCELLED, "interrupted")
    except Exception as exc:  # a bug: the user gets one line, the log gets the traceback
        if disk_full(exc):
            log.debug("disk full", exc_info=True)
            return _fail(channel, protocol.ExitCode.FAILED, DISK_FULL)
        if type(exc).__name__ == "OutOfMemoryError":
            return _fail(channel, protocol.ExitCode.OUT_OF_MEMORY,
                         "out of memory: lower batch_size or max_length, or use qlora")
        log.exception("unexpected error")
        return _fail(channel, protocol.ExitCode.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        channel.close()


DISK_FULL = ("disk full: the last write did not fit and was removed; free some space and run it again "
             "(train --resume continues a run from its last complete checkpoint)")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk. torch and safetensors wrap the OSError
    in their own errors, so their messages are read too."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(seen) or "StorageFull" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fail(channel: Channel, code: int, message: str) -> int:
    log.debug("failing with %s: %s", code, message)
    channel.send(protocol.error(code, message))
    return int(code)
