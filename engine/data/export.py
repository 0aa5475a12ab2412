"""`data export`: write a stored dataset back to JSONL in a shape other tools read unchanged.

Chat datasets (stored as ``messages``) export as:

- ``messages``: OpenAI ``{"messages": [{role, content}, ...]}`` (TRL, Axolotl ``chat_template``);
- ``alpaca``: ``{"instruction", "input", "output"}`` plus ``system`` when there is one
  (LLaMA-Factory, Axolotl ``alpaca``). Alpaca holds one exchange, so multi-turn rows are refused,
  or left out with ``skip_invalid``;
- ``sharegpt``: ``{"conversations": [{from, value}]}`` with human/gpt/system;
- ``prompt_completion``: TRL's conversational prompt/completion, ``{"prompt": [messages before the
  last answer], "completion": [the last assistant message]}``.

Preference, classification and text datasets export in their own canonical form (TRL's
``{"prompt", "chosen", "rejected"}``, ``{"text", "label"}``, ``{"text"}``). Metadata kept at import
(the ``meta`` column) is written back as top-level fields beside them, so importing the export
gives the same rows and metadata. Rows stream from the Arrow data into a temp file that replaces
the target only when every row was written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.core import errors, names, protocol
from engine.core.control import progress_reporter
from engine.core.job import Job
from engine.data.importer import PROGRESS_EVERY, ProgressCallback, resolve
from engine.data.options import EXPORT_FORMATS
from engine.data.shapes import CHAT_SHAPES, META_COLUMN
from engine.data.split import load_rows

log = logging.getLogger("engine.data")

CHAT_FORMATS = CHAT_SHAPES  # messages, alpaca, sharegpt, prompt_completion
SHAREGPT_SPEAKERS = {"system": "system", "user": "human", "assistant": "gpt"}
BATCH_ROWS = 1_000  # rows read from Arrow at once: bounded memory, few calls


class SkipRow(ValueError):
    """A row the chosen format cannot hold; the message says why."""


# -- converting one row ---------------------------------------------------------------------------

def to_messages(row: dict) -> dict:
    return {"messages": row["messages"]}


def to_alpaca(row: dict) -> dict:
    messages = row["messages"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    turns = messages[1:] if system else messages
    if len(turns) != 2:
        raise SkipRow(f"has {len(turns) // 2} exchanges; alpaca holds one (a user turn and its answer)")
    converted = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    return converted | {"system": system} if system else converted


def to_sharegpt(row: dict) -> dict:
    return {"conversations": [{"from": SHAREGPT_SPEAKERS[m["role"]], "value": m["content"]}
                              for m in row["messages"]]}


def to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def as_stored(columns: tuple[str, ...]) -> Callable[[dict], dict]:
    return lambda row: {name: row[name] for name in columns}


CONVERTERS: dict[str, Callable[[dict], dict]] = {
    "messages": to_messages, "alpaca": to_alpaca, "sharegpt": to_sharegpt,
    "prompt_completion": to_prompt_completion,
    "preference": as_stored(("prompt", "chosen", "rejected")),
    "classification": as_stored(("text", "label")), "text": as_stored(("text",))}


def with_meta(row: dict, converted: dict) -> dict:
    """``converted`` with the row's metadata as top-level fields; the format's own fields win
    over a metadata column of the same name."""
    meta = json.loads(row.get(META_COLUMN) or "{}")
    return converted | {name: value for name, value in meta.items() if name not in converted}


def choose_format(shape: str, wanted: str) -> str:
    """The export format: ``wanted``, or the shape's own form when none is asked for.

    Raises:
        EngineError: USAGE when the shape cannot be written in the wanted format.
    """
    native = "messages" if shape in CHAT_SHAPES else shape
    if not wanted:
        return native
    if wanted not in EXPORT_FORMATS:
        raise errors.usage(f"--format {wanted}: unknown (use {', '.join(EXPORT_FORMATS)})")
    allowed = CHAT_FORMATS if shape in CHAT_SHAPES else (shape,)
    if wanted not in allowed:
        raise errors.usage(f"--format {wanted}: a {shape} dataset exports as {', '.join(allowed)}")
    return wanted


# -- writing --------------------------------------------------------------------------------------

@dataclass
class ExportReport:
    format: str = ""
    rows: int = 0
    skipped: int = 0
    first_skipped: str = ""


def _rows(dataset: Any) -> Iterator[dict]:
    """Rows one by one, read from Arrow in batches (much faster than indexing row by row)."""
    for batch in dataset.iter(batch_size=BATCH_ROWS):
        columns = list(batch)
        for values in zip(*(batch[name] for name in columns)):
            yield dict(zip(columns, values))


def export_dataset(spec: str, out: Path, fmt: str = "", skip_invalid: bool = False, split: str = "",
                   on_progress: ProgressCallback | None = None) -> ExportReport:
    """Writes dataset ``spec`` (``name`` or ``name@vN``) to ``out`` as JSONL in format ``fmt``.

    Args:
        spec: the dataset version.
        out: the JSONL file to write; replaced only when the export succeeds.
        fmt: one of EXPORT_FORMATS, or "" for the shape's own form.
        skip_invalid: leave out rows the format cannot hold (default: refuse the export).
        split: one split of a split version (default: every row, train first).
        on_progress: called with (rows done, total) every PROGRESS_EVERY rows; it may raise.

    Raises:
        EngineError: USAGE for a format the shape cannot take; INVALID_INPUT naming the first
            row the format cannot hold (without ``skip_invalid``); NOT_FOUND for an unknown
            dataset or split.
    """
    version = resolve(spec)
    report = ExportReport(format=choose_format(version.manifest.get("shape", ""), fmt))
    dataset = load_rows(version, split)
    convert = CONVERTERS[report.format]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            _write_rows(handle, _rows(dataset), convert, report, skip_invalid, len(dataset), on_progress)
            handle.flush()
            os.fsync(handle.fileno())
        if report.rows == 0:
            raise errors.invalid_input(f"{version.ref}: no row can be written as {report.format}; "
                                       f"first: {report.first_skipped}")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if report.skipped:
        log.warning("Left out %d rows that %s cannot hold; first: %s", report.skipped, report.format,
                    report.first_skipped)
    log.info("Exported %d rows of %s as %s to %s", report.rows, version.ref, report.format, out)
    return report


def _write_rows(handle: Any, rows: Iterator[dict], convert: Callable[[dict], dict], report: ExportReport,
                skip_invalid: bool, total: int, on_progress: ProgressCallback | None) -> None:
    for number, row in enumerate(rows, start=1):
        if on_progress and number % PROGRESS_EVERY == 0:
            on_progress(number, total)
        try:
            converted = with_meta(row, convert(row))
        except SkipRow as exc:
            problem = f"row {number}: {exc}"
            if not skip_invalid:
                raise errors.invalid_input(f"{problem} (--skip-invalid leaves such rows out; "
                                           "messages and sharegpt hold every row)") from None
            report.skipped += 1
            report.first_skipped = report.first_skipped or problem
            continue
        # ensure_ascii=False keeps text readable; json escapes newlines, so one row is one line.
        handle.write(json.dumps(converted, ensure_ascii=False) + "\n")
        report.rows += 1
    if on_progress:
        on_progress(total, total)


# -- CLI handler ----------------------------------------------------------------------------------

def cmd_export(args: argparse.Namespace, job: Job) -> int:
    out = names.check_out_path(args.out, "--out")
    if out.is_dir():
        raise errors.usage(f"--out {args.out!r}: is a folder; give the JSONL file's name")
    report = export_dataset(args.dataset, out, args.format, args.skip_invalid, args.split,
                            progress_reporter(job, "export"))
    job.channel.send(protocol.result({"path": str(out.resolve()), "format": report.format,
                                      "rows": report.rows, "skipped": report.skipped}))
    return protocol.ExitCode.OK
