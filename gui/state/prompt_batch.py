"""A batch run on the Prompt page: suite items (or file rows) × columns, their answers, and the
CSV/JSONL/Markdown exports of the results table. Qt-free."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.core import workspace
from engine.infer import suites as prompt_suites

TABLE_COLUMNS = ("Prompt", "Case", "Column", "Input", "Answer", "Finish", "tok/s")
EXPORT_FIELDS = ("prompt", "case", "column", "model", "adapter", "backend", "input", "answer", "finish_reason",
                 "ttft_s", "tokens_per_s", "error")


@dataclass
class BatchRow:
    prompt: str
    case: int
    column: str
    model: str
    adapter: str
    input: str
    request: dict[str, Any] = field(repr=False, default_factory=dict)
    answer: str = ""
    finish_reason: str = ""
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    error: str = ""
    backend: str = ""  # what answered: llama.cpp, transformers, or server (an OpenAI-compatible one)

    @property
    def done(self) -> bool:
        return bool(self.finish_reason or self.error)

    def cells(self) -> list[str]:
        # The reason goes in the wide Answer column, where it can be read, when there is no answer.
        answer = f"error: {self.error}" if self.error and not self.answer else self.answer
        finish = "error" if self.error else self.finish_reason
        rate = f"{self.tokens_per_s:.1f}" if self.tokens_per_s is not None else ""
        return [self.prompt, str(self.case + 1), self.column, self.input, answer, finish, rate]

    def export(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: data[key] for key in EXPORT_FIELDS}


def rows_for_items(items: list[prompt_suites.Item], columns: list[tuple[str, Any]],
                   top_logprobs: int = 0) -> list[BatchRow]:
    """One row per item per column; ``columns`` are (letter, ColumnConfig)."""
    rows = []
    for item in items:
        for letter, config in columns:
            request = {**config.target_fields(), "mode": item.mode, "params": config.params.to_wire(),
                       "top_logprobs": top_logprobs}
            if item.mode == "chat":
                request["messages"] = item.messages
            else:
                request["prompt"] = item.text
            rows.append(BatchRow(item.prompt, item.case, letter, request["model"], request["adapter"],
                                 item.text, request))
    return rows


def export_csv(rows: list[BatchRow], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.export() for row in rows)
    workspace.atomic_write_text(path, buffer.getvalue())


def export_jsonl(rows: list[BatchRow], path: Path) -> None:
    workspace.atomic_write_text(path, "".join(json.dumps(r.export(), ensure_ascii=False) + "\n" for r in rows))


def export_markdown(rows: list[BatchRow], path: Path) -> None:
    header = ["Prompt", "Case", "Column", "Model", "Adapter", "Input", "Answer", "Finish", "tok/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.prompt, str(row.case + 1), row.column, row.model, row.adapter or "–", row.input,
                 row.answer, f"error: {row.error}" if row.error else row.finish_reason,
                 f"{row.tokens_per_s:.1f}" if row.tokens_per_s is not None else ""]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    workspace.atomic_write_text(path, "\n".join(lines) + "\n")


EXPORTERS = {".csv": export_csv, ".jsonl": export_jsonl, ".md": export_markdown}


def export(rows: list[BatchRow], path: Path) -> None:
    """Writes the results in the format the file name's suffix names (.csv, .jsonl, .md)."""
    suffix = path.suffix.lower()
    if suffix not in EXPORTERS:
        raise ValueError(f"{path.name}: use a .csv, .jsonl or .md file name")
    EXPORTERS[suffix](rows, path)


def _md_cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")
    # Other control characters (a random model writes them) would break the table's lines.
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in text)
