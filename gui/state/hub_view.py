"""What the "Browse the Hub…" dialog shows, without Qt: the engine commands it runs
(`models search`, `models card`, `models download`, engine/runtime/hub.py) and the text of
their results and progress messages.

The fit labels come from the engine's search result (engine/core/fit_estimate.fit_labels, an
estimate from the parameter count for this machine's memory); here they only become words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.fit_estimate import FIT_METHODS

METHOD_TITLES = {"inference": "Inference", "lora": "LoRA", "qlora": "QLoRA", "full": "Full"}
LABEL_MARKS = {"fits": "✓", "tight": "~", "too big": "✗"}
LEGEND = "✓ fits, ~ tight (within the safety margin), ✗ too big"
TASKS = ("", "text-generation", "text2text-generation", "text-classification", "question-answering",
         "summarization", "translation", "feature-extraction")


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    task: str = ""
    architecture: str = ""
    license: str = ""
    limit: int = 30

    def arguments(self) -> list[str]:
        """The flags of `models search` for this query."""
        argv = ["models", "search"]
        if self.text.strip():
            argv.append(self.text.strip())
        for flag, value in (("--task", self.task), ("--architecture", self.architecture),
                            ("--license", self.license)):
            if value.strip():
                argv += [flag, value.strip()]
        return [*argv, "--limit", str(self.limit)]


@dataclass(frozen=True)
class ResultRow:
    repo_id: str
    downloads: str
    params: str
    license: str
    fits: tuple[str, ...]  # one cell per method in FIT_METHODS
    gated: bool

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ResultRow:
        fit = data.get("fit") or {}
        cells = tuple(fit_cell(fit.get(method)) for method in FIT_METHODS)
        return cls(str(data.get("id", "")), count_text(int(data.get("downloads") or 0)),
                   params_text(int(data.get("params") or 0)), str(data.get("license") or ""), cells,
                   bool(data.get("gated")))


def rows_from_result(data: dict[str, Any]) -> list[ResultRow]:
    models = data.get("models")
    return [ResultRow.from_data(row) for row in models if isinstance(row, dict)] if isinstance(models, list) else []


def fit_cell(entry: Any) -> str:
    """"✓ 1.2 GB" (the mark, then the estimate); "?" when the Hub did not say how large the
    model is."""
    if not isinstance(entry, dict):
        return "?"
    mark = LABEL_MARKS.get(str(entry.get("label")), "?")
    return f"{mark} {float(entry.get('gb') or 0):.1f} GB"


def count_text(value: int) -> str:
    """12345 -> "12.3k", 2_500_000 -> "2.5M"."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def params_text(value: int) -> str:
    """135_000_000 -> "135M", 7_240_000_000 -> "7.2B"; "?" when unknown."""
    if value <= 0:
        return "?"
    if value >= 1e9:
        return f"{value / 1e9:.1f}B"
    return f"{value / 1e6:.0f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"


def bytes_text(value: float) -> str:
    for size, suffix in ((2**30, "GB"), (2**20, "MB"), (2**10, "kB")):
        if value >= size:
            return f"{value / size:.1f} {suffix}"
    return f"{value:.0f} B"


def progress_text(message: dict[str, Any]) -> str:
    """A download's progress message as one line: bytes, speed, time left and the file."""
    done, total = float(message.get("current") or 0), float(message.get("total") or 0)
    text = f"{bytes_text(done)} of {bytes_text(total)}"
    speed = message.get("bytes_per_s")
    if isinstance(speed, (int, float)) and speed > 0:
        text += f" at {bytes_text(speed)}/s"
    eta = message.get("eta_s")
    if isinstance(eta, (int, float)):
        text += f", about {duration_text(eta)} left"
    name = message.get("file")
    return f"{text} — {name}" if isinstance(name, str) and name else text


def duration_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def percent(message: dict[str, Any]) -> int:
    total = float(message.get("total") or 0)
    return int(100 * float(message.get("current") or 0) / total) if total > 0 else 0


def machine_text(data: dict[str, Any]) -> str:
    """Whose memory the fit labels are for, from a search result: "this machine's GPU (24 GB)"."""
    memory = data.get("memory_gb")
    if not isinstance(memory, (int, float)):
        return "this machine"
    where = "GPU" if data.get("device") == "cuda" else "RAM"
    return f"this machine's {where} ({memory:.0f} GB)"
