"""The Markdown sections of a run's model card (engine/export/model_card.py gathers what goes in
them): the data, the settings, the loss table and the evaluation results. Each takes plain data
and returns lines; a section with nothing to show returns none, so the card never shows an empty
heading or a made-up value.
"""

from __future__ import annotations

from typing import Any

from engine.core import config
from engine.export.loss_chart import LossPoint

# Settings that say where the run ran, not how it trained; the model and dataset have sections.
NOT_SETTINGS = frozenset({"model", "dataset", "device", "name", "gpus"})


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def data_section(ref: str, manifest: dict[str, Any]) -> list[str]:
    if not ref:
        return []
    lines = ["## Training data", "", f"- Dataset: `{ref}`"]
    facts = [("Version", manifest.get("version")), ("Rows", manifest.get("rows")),
             ("Shape", manifest.get("shape")), ("Derived from", manifest.get("split_of")),
             ("Split seed", manifest.get("seed") if manifest.get("split_of") else None)]
    lines += [f"- {label}: {cell(value)}" for label, value in facts if value not in (None, "")]
    splits = manifest.get("splits")
    if isinstance(splits, dict) and splits:
        lines.append("- Splits: " + ", ".join(f"{name} {count}" for name, count in splits.items()))
    if manifest.get("content_hash"):
        lines.append(f"- Content hash (SHA-256 of the imported file): `{manifest['content_hash']}`")
    return lines + [""]


def settings_section(settings: dict[str, Any]) -> list[str]:
    """The settings the run used; those its method, objective and validation ignore are left
    out (config.unused_fields, the rule the window greys them out by)."""
    unused = config.unused_fields(settings)
    rows = [(key, value) for key, value in settings.items()
            if key not in NOT_SETTINGS and key not in unused and value != ""]
    if not rows:
        return []
    lines = ["## Training settings", "", "| Setting | Value |", "|---|---|"]
    return lines + [f"| {key} | {cell(value)} |" for key, value in rows] + [""]


def loss_section(points: list[LossPoint], chart_file: str) -> list[str]:
    if not points:
        return []
    lines = ["## Loss", ""]
    if chart_file:
        lines += [f"![Training and validation loss by step]({chart_file})", ""]
    with_eval = any(point.eval is not None for point in points)
    header = "| Step | Training loss |" + (" Validation loss |" if with_eval else "")
    lines += [header, "|---|---|" + ("---|" if with_eval else "")]
    for point in points:
        lines.append(f"| {point.step} | {cell(point.train)} |" + (f" {cell(point.eval)} |" if with_eval else ""))
    return lines + [""]


def evaluation_section(evaluations: list[tuple[dict[str, Any], str]]) -> list[str]:
    """One table per evaluation of this run (its summary, and the label it gave this run): each
    metric for the base model and this run, with the 95% bootstrap interval it computed."""
    if not evaluations:
        return []
    lines = ["## Evaluation", ""]
    for summary, label in evaluations:
        lines += _evaluation_table(summary, label)
    return lines


def _evaluation_table(summary: dict[str, Any], label: str) -> list[str]:
    labels = [name for name in ("base", label) if _has_values(summary, name)]
    what = f"`{summary.get('dataset', '')}`, split {summary.get('split', '')}, {summary.get('examples', 0)} examples"
    lines = [f"Evaluation `{summary.get('id', '')}` on {what}:", "",
             "| Metric | " + " | ".join("base model" if name == "base" else "this model" for name in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for name, metric in summary.get("metrics", {}).items():
        values = metric.get("values", {}) if isinstance(metric, dict) else {}
        better = f" ({metric['better']} is better)" if metric.get("better") else ""
        lines.append(f"| {cell(metric.get('title') or name)}{better} | "
                     + " | ".join(_estimate(values.get(name_)) for name_ in labels) + " |")
    return lines + [""]


def _has_values(summary: dict[str, Any], label: str) -> bool:
    return any(isinstance(metric, dict) and label in metric.get("values", {})
               for metric in summary.get("metrics", {}).values())


def _estimate(value: Any) -> str:
    if not isinstance(value, dict) or value.get("estimate") is None:
        return "-"
    interval = (f" [{cell(value['low'])}, {cell(value['high'])}]"
                if value.get("low") is not None and value.get("high") is not None else "")
    return cell(value["estimate"]) + interval
