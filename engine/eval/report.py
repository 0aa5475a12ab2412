"""`evaluate report EVAL`: an evaluation as a shareable report.

Writes ``report/`` inside the evaluation folder (atomically, replacing an older one):

- ``report.md``: the settings, one table per metric (value and 95% interval per model), slices,
  robustness, and the examples that changed most between the base and the first tuned model;
  it shows the charts as SVG images.
- ``report.html``: the same, standalone, with the charts inline.
- ``chart-<metric>.svg``: a bar per model with its bootstrap interval as a whisker.
- ``summary.csv`` (metric, model, value, low, high) and ``examples.csv`` (one row per example,
  a column per model's output and per model × metric).

Charts are SVG, drawn here with the standard library: the engine has no plotting library
(matplotlib is not a dependency and Qt may not be imported in the engine). The window's Evaluate
page saves its chart as PNG with pyqtgraph's exporter.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
from pathlib import Path
from typing import Any, Sequence

from engine.core import errors, protocol, workspace
from engine.core.job import Job
from engine.eval.store import evaluation_folder, read_examples, read_summary

REPORT = "report"
COLORS = ("#7f8c8d", "#2e86de", "#e67e22", "#27ae60", "#8e44ad", "#c0392b")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# -- charts ---------------------------------------------------------------------------------------

def bar_chart_svg(title: str, labels: Sequence[str], values: Sequence[dict[str, Any]], width: int = 480,
                  height: int = 260) -> str:
    """A bar per model with an interval whisker; the axis starts at 0 (or below, for negatives)."""
    top = max([v.get("high") or v.get("estimate") or 0 for v in values] + [1e-9]) * 1.1
    bottom = min([0.0] + [v.get("low") or v.get("estimate") or 0 for v in values])
    left, right, upper, lower = 50, 10, 30, 50
    plot_w, plot_h = width - left - right, height - upper - lower

    def y(value: float) -> float:
        return upper + plot_h * (top - value) / ((top - bottom) or 1)

    slot = plot_w / max(len(labels), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#333"/>',
             f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{upper + plot_h}" stroke="#333"/>']
    for tick in (bottom, (top + bottom) / 2, top):
        parts.append(f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    for i, (label, value) in enumerate(zip(labels, values)):
        estimate = value.get("estimate") or 0.0
        x = left + slot * i + slot * 0.2
        bar_top, bar_bottom = min(y(estimate), y(0)), max(y(estimate), y(0))
        parts.append(f'<rect x="{x:.1f}" y="{bar_top:.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{bar_bottom - bar_top:.1f}" fill="{COLORS[i % len(COLORS)]}"/>')
        centre = x + slot * 0.3
        if value.get("low") is not None and value.get("high") is not None:
            lo, hi = y(value["low"]), y(value["high"])
            parts += [f'<line x1="{centre:.1f}" y1="{lo:.1f}" x2="{centre:.1f}" y2="{hi:.1f}" stroke="black"/>',
                      f'<line x1="{centre - 6:.1f}" y1="{lo:.1f}" x2="{centre + 6:.1f}" y2="{lo:.1f}" stroke="black"/>',
                      f'<line x1="{centre - 6:.1f}" y1="{hi:.1f}" x2="{centre + 6:.1f}" y2="{hi:.1f}" stroke="black"/>']
        parts.append(f'<text x="{centre:.1f}" y="{bar_top - 4:.1f}" text-anchor="middle">{_fmt(estimate)}</text>')
        parts.append(f'<text x="{centre:.1f}" y="{upper + plot_h + 16}" text-anchor="middle">'
                     f'{html.escape(label[:22])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- tables ---------------------------------------------------------------------------------------

def summary_csv(summary: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", "model", "value", "low", "high"])
    for name, entry in summary.get("metrics", {}).items():
        for label, value in entry["values"].items():
            writer.writerow([name, label, value.get("estimate"), value.get("low"), value.get("high")])
    return buffer.getvalue()


def examples_csv(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    labels = [m["label"] for m in summary.get("models", [])]
    names = list(summary.get("metrics", {}))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "input", "reference"] + [f"output:{label}" for label in labels]
                    + [f"{n}:{label}" for label in labels for n in names])
    for row in rows:
        writer.writerow([row.get("index"), row.get("input"), row.get("reference")]
                        + [row.get("outputs", {}).get(label, "") for label in labels]
                        + [row.get("metrics", {}).get(label, {}).get(n) for label in labels for n in names])
    return buffer.getvalue()


def largest_changes(summary: dict[str, Any], rows: Sequence[dict[str, Any]], metric: str,
                    count: int = 10) -> list[tuple[float, dict[str, Any]]]:
    """Rows sorted by |tuned - base| of ``metric`` (first adapter against the base)."""
    labels = [m["label"] for m in summary.get("models", [])]
    if len(labels) < 2:
        return []
    changes = []
    for row in rows:
        before = row.get("metrics", {}).get(labels[0], {}).get(metric)
        after = row.get("metrics", {}).get(labels[1], {}).get(metric)
        if before is not None and after is not None:
            changes.append((after - before, row))
    return sorted(changes, key=lambda item: -abs(item[0]))[:count]


def _md_cell(text: Any) -> str:
    return _fmt(text).replace("|", "\\|").replace("\n", " ")[:200]


def markdown(summary: dict[str, Any], rows: Sequence[dict[str, Any]], charts: dict[str, str]) -> str:
    labels = [m["label"] for m in summary.get("models", [])]
    out = [f"# Evaluation {summary.get('id', '')}", "",
           f"Dataset **{summary.get('dataset')}**, split **{summary.get('split')}**, "
           f"{summary.get('examples')} examples; base model `{summary.get('base_model', '')}`; "
           f"greedy decoding, at most {summary.get('generation', {}).get('max_new_tokens', '-')} new tokens.", "",
           "Values are the set value with a 95% bootstrap confidence interval.", ""]
    for name, entry in summary.get("metrics", {}).items():
        out += [f"## {entry.get('title', name)} ({entry.get('better', 'higher')} is better)", "",
                entry.get("definition", ""), ""]
        if name in charts:
            out += [f"![{entry.get('title', name)}]({charts[name]})", ""]
        out += ["| model | value | 95% interval |", "|---|---|---|"]
        for label in labels:
            value = entry["values"].get(label, {})
            out.append(f"| {_md_cell(label)} | {_fmt(value.get('estimate'))} | "
                       f"{_fmt(value.get('low'))} – {_fmt(value.get('high'))} |")
        out.append("")
    out += _markdown_slices(summary, labels) + _markdown_robustness(summary, labels)
    out += _markdown_changes(summary, rows, labels)
    return "\n".join(out) + "\n"


def _markdown_slices(summary: dict[str, Any], labels: list[str]) -> list[str]:
    slices = summary.get("slices")
    if not slices:
        return []
    out = [f"## Slices by `{slices['column']}`", "",
           "| value | n | metric | " + " | ".join(map(_md_cell, labels)) + " |",
           "|---|---|---|" + "---|" * len(labels)]
    for value, group in slices["groups"].items():
        for name, per_model in group["metrics"].items():
            out.append(f"| {_md_cell(value)} | {group['n']} | {name} | "
                       + " | ".join(_fmt(per_model.get(label)) for label in labels) + " |")
    return out + [""]


def _markdown_robustness(summary: dict[str, Any], labels: list[str]) -> list[str]:
    report = summary.get("robustness")
    if not report:
        return []
    out = ["## Robustness (perturbed minus clean)", "",
           "| perturbation | metric | " + " | ".join(map(_md_cell, labels)) + " |",
           "|---|---|" + "---|" * len(labels)]
    for perturbation, per_metric in report.items():
        for name, per_model in per_metric.items():
            cells = [f"{_fmt(per_model[label]['clean'])} → {_fmt(per_model[label]['perturbed'])} "
                     f"({per_model[label]['delta']:+.4g})" if label in per_model else "-" for label in labels]
            out.append(f"| {perturbation} | {name} | " + " | ".join(cells) + " |")
    return out + [""]


def _markdown_changes(summary: dict[str, Any], rows: Sequence[dict[str, Any]], labels: list[str]) -> list[str]:
    metrics = [n for n in summary.get("metrics", {}) if n != "perplexity"] or list(summary.get("metrics", {}))
    if len(labels) < 2 or not metrics:
        return []
    changes = largest_changes(summary, rows, metrics[0])
    out = [f"## Largest changes in {metrics[0]}: {labels[1]} vs {labels[0]}", "",
           f"| change | input | reference | {_md_cell(labels[0])} | {_md_cell(labels[1])} |", "|---|---|---|---|---|"]
    for change, row in changes:
        outputs = row.get("outputs", {})
        out.append(f"| {change:+.3g} | {_md_cell(row.get('input'))} | {_md_cell(row.get('reference'))} | "
                   f"{_md_cell(outputs.get(labels[0]))} | {_md_cell(outputs.get(labels[1]))} |")
    return out + [""]


def html_report(markdown_text: str, charts_svg: dict[str, str], chart_files: dict[str, str]) -> str:
    """A standalone page: the Markdown's tables as HTML tables and the charts inline."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if table:
            head, *rest = table
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
            table.clear()

    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip().replace("\\|", "|")) for c in line.strip("|").split(" | ")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        flush_table()
        if line.startswith("!["):
            name = next((n for n, f in chart_files.items() if f in line), "")
            body.append(charts_svg.get(name, ""))
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Evaluation report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(folder: Path) -> Path:
    """Writes ``folder/report/`` and returns it."""
    summary = read_summary(folder)
    if summary is None:
        raise errors.not_found(f"evaluation: {folder} has no summary.json")
    rows = read_examples(folder)
    labels = [m["label"] for m in summary.get("models", [])]
    charts_svg = {name: bar_chart_svg(entry.get("title", name), labels,
                                      [entry["values"].get(label, {}) for label in labels])
                  for name, entry in summary.get("metrics", {}).items()}
    chart_files = {name: f"chart-{name}.svg" for name in charts_svg}
    text = markdown(summary, rows, chart_files)
    target = folder / REPORT
    with workspace.atomic_folder(target, replace=True) as tmp:
        for name, svg in charts_svg.items():
            workspace.atomic_write_text(tmp / chart_files[name], svg)
        workspace.atomic_write_text(tmp / "report.md", text)
        workspace.atomic_write_text(tmp / "report.html", html_report(text, charts_svg, chart_files))
        workspace.atomic_write_text(tmp / "summary.csv", summary_csv(summary))
        workspace.atomic_write_text(tmp / "examples.csv", examples_csv(summary, rows))
    return target


def cmd_report(args: argparse.Namespace, job: Job) -> int:
    folder = evaluation_folder(args.evaluation)
    if folder is None:
        raise errors.not_found(f"evaluation: {args.evaluation!r} is not an evaluation id or folder")
    target = write_report(folder)
    job.channel.send(protocol.artifact("report", str(target / "report.html")))
    job.channel.send(protocol.result({"path": str(target), "files": sorted(p.name for p in target.iterdir())}))
    return protocol.ExitCode.OK
