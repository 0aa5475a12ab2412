"""Exporting runs: metrics as CSV (one row per step, one column per metric; several runs in one
long table with the run's id and name first) and summaries as JSON (several runs with the
settings that differ between them), each written atomically to a path the user chose. Qt-free.

Everything comes from the run's folder (events.ndjson, run.json, config.toml), so an export
taken after a restart holds the same figures the live run showed.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeGuard

from engine.core import protocol, workspace
from gui.state import run_compare, run_history
from gui.state.run_history import RunRow

STEP = "step"
RUN, NAME = "run", "name"


def metric_table(run_path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """(columns, rows): every numeric metric the run logged, one row per step in step order.

    A step logged twice (a resumed run redoing the steps after its checkpoint) keeps its
    latest values; steps a resumed attempt repeats are dropped from the earlier attempt first.
    """
    by_step: dict[float, dict[str, float]] = {}
    for message in workspace.RunFolder(run_path).read_events():
        resumed = run_history.resumed_from(message)
        if resumed is not None:
            by_step = {step: values for step, values in by_step.items() if step <= resumed}
        elif message["type"] == protocol.METRICS and isinstance(message.get("values"), dict):
            step = message.get("step")
            if _is_number(step):
                row = by_step.setdefault(float(step), {})
                row.update({k: float(v) for k, v in message["values"].items() if _is_number(v)})
    names = _metric_order(name for values in by_step.values() for name in values)
    rows = [{STEP: _plain(step), **values} for step, values in sorted(by_step.items())]
    return [STEP, *names], rows


def runs_metric_table(runs: Sequence[RunRow]) -> tuple[list[str], list[dict[str, Any]]]:
    """Several runs' metric tables stacked into one long table (tidy for pandas or a
    spreadsheet pivot): each row starts with the run's id and name; a metric a run did not log
    is absent from its rows."""
    tables = [(run, *metric_table(run.path)) for run in runs]
    names = _metric_order(name for _, columns, _ in tables for name in columns[1:])
    rows = [{RUN: run.id, NAME: title, **row}
            for (run, _, table), title in zip(tables, run_compare.unique_titles(runs)) for row in table]
    return [RUN, NAME, STEP, *names], rows


def _metric_order(names: Iterable[str]) -> list[str]:
    """The Train page's curves first, in its order, then every other metric by name."""
    return sorted(set(names), key=lambda name: (name not in run_history.CURVE_NAMES, _curve_rank(name), name))


def _curve_rank(name: str) -> int:
    return run_history.CURVE_NAMES.index(name) if name in run_history.CURVE_NAMES else 0


def metrics_csv(run_path: Path) -> str:
    """The metric table as CSV text; a metric a step did not log is an empty cell."""
    return _csv_text(*metric_table(run_path))


def _csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def summary(run_path: Path) -> dict[str, Any]:
    """run.json's record, the run's settings from config.toml, and per metric its last value,
    minimum and maximum (best validation loss is ``metrics.eval_loss.min``)."""
    run = workspace.RunFolder(run_path)
    columns, rows = metric_table(run_path)
    metrics = {}
    for name in columns[1:]:
        points = [(row[STEP], row[name]) for row in rows if name in row and math.isfinite(row[name])]
        if points:
            values = [value for _, value in points]
            best = min(points, key=lambda point: point[1])
            metrics[name] = {"last": values[-1], "last_step": points[-1][0], "min": best[1],
                             "min_step": best[0], "max": max(values), "points": len(points)}
    return {"run": {**run.info(), "id": run.id, "status": run_history.row_of(run).status},
            "config": run_compare.load_config(run_path),
            "metrics": metrics,
            "samples": [{"step": step, "samples": samples} for step, samples in run_history.load_samples(run_path)]}


def runs_summary(runs: Sequence[RunRow]) -> dict[str, Any]:
    """Each run's summary, and the settings that differ between them (values as the Settings
    diff tab shows them, keyed by run title)."""
    titles = run_compare.unique_titles(runs)
    diff = run_compare.config_diff([run_compare.load_config(run.path) for run in runs])
    return {"runs": [summary(run.path) for run in runs],
            "settings_that_differ": [{"setting": row.key, "values": dict(zip(titles, row.values))} for row in diff]}


def write_runs_metrics_csv(runs: Sequence[RunRow], target: Path) -> int:
    """One run: its own table; several: the long table. Written atomically; returns the rows."""
    if len(runs) == 1:
        return write_metrics_csv(runs[0].path, target)
    return _write_csv(target, *runs_metric_table(runs))


def write_runs_summary_json(runs: Sequence[RunRow], target: Path) -> None:
    """One run: its summary; several: the summaries and the settings that differ."""
    workspace.atomic_write_json(Path(target), summary(runs[0].path) if len(runs) == 1 else runs_summary(runs))


def write_metrics_csv(run_path: Path, target: Path) -> int:
    """Writes the CSV atomically; returns the number of step rows."""
    return _write_csv(target, *metric_table(run_path))


def _write_csv(target: Path, columns: list[str], rows: list[dict[str, Any]]) -> int:
    workspace.atomic_write_text(Path(target), _csv_text(columns, rows))
    return len(rows)


def write_summary_json(run_path: Path, target: Path) -> None:
    workspace.atomic_write_json(Path(target), summary(run_path))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(step: float) -> int | float:
    return int(step) if float(step).is_integer() else step
