"""The import problem report (``data import --report FILE``) with each problem's line of the
source file, for the problem list. Qt-free."""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path

LINE_CHARS = 300  # of a problem line shown; a huge single line would flood the list


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    unit: str
    field: str
    problem: str
    text: str = ""

    @property
    def where(self) -> str:
        return str(self.line) if self.unit == "line" else f"row {self.line}"


def read_report(report: Path, source: Path | None = None) -> list[Problem]:
    """Every problem in ``report`` (JSONL written by the engine), with the text of its line in
    ``source`` when the format has lines (JSONL, CSV, TSV, TXT); for row-numbered formats the
    engine puts the record itself in the report."""
    problems = []
    try:
        lines = report.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            item = json.loads(line)
            problems.append(Problem(str(item["file"]), int(item["line"]), str(item.get("unit", "line")),
                                    str(item["field"]), str(item["problem"]), str(item.get("text", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    wanted = {p.line for p in problems if p.unit == "line"}
    texts = source_lines(source, wanted) if source is not None and wanted else {}
    return [Problem(p.file, p.line, p.unit, p.field, p.problem, texts.get(p.line, "")) if p.unit == "line" else p
            for p in problems]


def source_lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """The text of the ``wanted`` 1-based lines of a text file, read in one pass and stopping
    after the last one; bytes that do not decode show as replacement characters."""
    found: dict[int, str] = {}
    last = max(wanted)
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
            handle.seek(0)
            encoding = "utf-16" if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
            text = codecs.getreader(encoding)(handle, errors="replace")  # type: ignore[call-arg]  # typeshed omits errors=
            for number, line in enumerate(text, start=1):
                if number in wanted:
                    line = line.rstrip("\r\n")
                    found[number] = line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…"
                if number >= last:
                    break
    except OSError:
        pass
    return found
