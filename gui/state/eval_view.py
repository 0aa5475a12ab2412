"""What the Evaluate page shows, without Qt: an evaluation folder read into memory, per-row
changes between two models, and the engine command for a set of choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from engine.eval import spec as eval_spec
from engine.eval import store as eval_report


@dataclass
class Evaluation:
    """A finished evaluation folder (or the live state of one being run)."""

    id: str = ""
    path: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    # The last `evaluate judge` pass: its report and each row's verdicts by row index.
    judge_report: dict[str, Any] | None = None
    verdicts: dict[Any, dict[str, Any]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [m.get("label", "") for m in self.summary.get("models", [])]

    @property
    def metric_names(self) -> list[str]:
        return list(self.summary.get("metrics", {}))

    def metric(self, name: str) -> dict[str, Any]:
        return self.summary.get("metrics", {}).get(name, {})

    def values(self, name: str) -> list[dict[str, Any]]:
        """The set value and interval of ``name`` per model, in model order."""
        per_model = self.metric(name).get("values", {})
        return [per_model.get(label, {}) for label in self.labels]

    def title(self) -> str:
        s = self.summary
        if s.get("kind") == "hardest":
            return f"Hardest training rows of run {s.get('run', '')} ({s.get('dataset', '')})"
        if s.get("kind") == "judge":  # `evaluate judge --pairs`: answers from a file, no metrics
            return f"Answers from {s.get('dataset', '')} · {s.get('examples', 0)} examples (see the Judge tab)"
        return f"{s.get('dataset', '')} · {s.get('split', '')} · {s.get('examples', 0)} examples{self._backends()}"

    def _backends(self) -> str:
        """What generated the answers (older summaries, and perplexity-only runs, do not say)."""
        generation = self.summary.get("generation")
        backends = generation.get("backends") if isinstance(generation, dict) else None
        if not isinstance(backends, dict) or not backends:
            return ""
        return " · answers by " + " and ".join(sorted({str(b) for b in backends.values()}))


def load(folder: Path) -> Evaluation | None:
    """The evaluation in ``folder``, or None when it has no readable summary."""
    summary = eval_report.read_summary(folder)
    if summary is None:
        return None
    report, verdicts = eval_report.read_judge(folder)
    return Evaluation(str(summary.get("id") or folder.name), folder, summary, eval_report.read_examples(folder),
                      report, verdicts)


def verdict_text(report: dict[str, Any] | None, entry: dict[str, Any] | None) -> tuple[str, str]:
    """(the judge's outcome for one row, its reasons) for the Examples table. Pairwise outcomes are
    model B's (win = the judge preferred B in both orders); single mode shows each model's score."""
    if not entry:
        return "", ""
    if "orders" in entry:
        model_b = (report or {}).get("model_b", "B")
        outcome = str(entry.get("outcome", ""))
        text = outcome if outcome == "unparseable" else f"{outcome} ({model_b})"
        reasons = "\n".join(f"{o.get('order', '')}: {o.get('verdict') or 'unparseable'}: "
                            f"{o.get('reason') or o.get('raw', '')}" for o in entry["orders"])
        return text, reasons
    scores = entry.get("scores") or {}
    text = ", ".join(f"{k} {'?' if v.get('score') is None else v['score']}" for k, v in scores.items())
    return text, "\n".join(f"{k}: {v.get('reason') or v.get('raw', '')}" for k, v in scores.items())


def find_folder(result: dict[str, Any]) -> Path | None:
    """The folder of an engine result: by id in this workspace first, then by its path."""
    for ref in (str(result.get("id") or ""), str(result.get("path") or "")):
        if ref:
            folder = eval_report.evaluation_folder(ref)
            if folder is not None:
                return folder
    return None


def past_evaluations() -> list[dict[str, Any]]:
    return eval_report.list_evaluations()


def row_change(row: dict[str, Any], metric: str, base: str, tuned: str) -> float | None:
    """``tuned - base`` of one row's metric, or None when either is missing."""
    metrics = row.get("metrics", {})
    before = metrics.get(base, {}).get(metric)
    after = metrics.get(tuned, {}).get(metric)
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return None
    return float(after) - float(before)


@dataclass
class Choices:
    """The settings picked on the page, turned into `evaluate run` flags."""

    dataset: str = ""
    split: str = eval_spec.SPLIT_AUTO
    model: str = ""
    adapters: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    max_examples: int = 200
    max_new_tokens: int = 64
    regex: str = ""
    slice_column: str = ""
    robustness: list[str] = field(default_factory=list)
    system_prompt: str = ""
    json_schema: str = ""  # "", "any" or a JSON Schema file
    backend: str = "auto"  # what generates the answers: auto, llama.cpp or transformers

    def problem(self) -> str:
        """One line saying what must change before a run can start, or ""."""
        if not self.dataset.strip():
            return "Choose a dataset to evaluate on."
        if not self.metrics:
            return "Tick at least one metric."
        if "regex_match" in self.metrics and not self.regex.strip():
            return "Regex match needs a pattern."
        return ""

    def flags(self) -> list[str]:
        flags = ["--dataset", self.dataset.strip(), "--split", self.split,
                 "--max-examples", str(self.max_examples), "--max-new-tokens", str(self.max_new_tokens)]
        pairs: Sequence[tuple[str, str]] = (
            ("--model", self.model.strip()), ("--adapters", ",".join(self.adapters)),
            ("--metrics", ",".join(self.metrics)), ("--regex", self.regex),
            ("--slice-column", self.slice_column.strip()), ("--robustness", ",".join(self.robustness)),
            ("--system-prompt", self.system_prompt.strip()), ("--json-schema", self.json_schema.strip()),
            ("--backend", "" if self.backend == "auto" else self.backend))
        for flag, value in pairs:
            if value:
                flags += [flag, value]
        return flags
