"""What a sweep found: its trials as rows, the best one, each knob's importance, and exports.

:func:`summary` is the JSON the window's Sweeps view reads (`sweep status --json`), so the
window needs neither optuna nor torch. Importance is Optuna's own fANOVA evaluator (a random
forest fitted to the finished trials; it needs scikit-learn), seeded so it is repeatable.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from engine.core import errors, workspace
from engine.sweep import spec, study

IMPORTANCE_SEED = 0


def trial_row(trial: Any) -> dict[str, Any]:
    """One trial as plain JSON values."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": dict(trial.params), "run_id": trial.user_attrs.get("run_id"),
            "duration_s": round(duration, 2) if duration is not None else None,
            "pruned_step": trial.user_attrs.get("pruned_step"),
            "evaluation": trial.user_attrs.get("evaluation"),
            "retry_of": trial.system_attrs.get("failed_trial"),
            "started": trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
            "intermediate": {str(step): value for step, value in sorted(trial.intermediate_values.items())}}


def best_trial(optuna_study: Any) -> Any | None:
    """The best finished trial, or None before any has finished."""
    finished = [t for t in optuna_study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not finished:
        return None
    return optuna_study.best_trial


def importance(optuna_study: Any) -> tuple[dict[str, float], str]:
    """(each knob's importance, summing to 1; a note when there is none yet)."""
    optuna = study.optuna()
    finished = [t for t in optuna_study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(finished) < 2:
        return {}, "needs at least 2 finished trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        values = optuna.importance.get_param_importances(optuna_study, evaluator=evaluator)
    except ImportError:
        return {}, "needs scikit-learn (pip install scikit-learn)"
    except (ValueError, RuntimeError) as exc:  # e.g. no knob varied across the finished trials
        return {}, str(exc).splitlines()[0]
    return {name: float(value) for name, value in values.items()}, ""


def summary(optuna_study: Any, sweep: spec.Sweep, url: str) -> dict[str, Any]:
    rows = [trial_row(t) for t in optuna_study.get_trials(deepcopy=False)]
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    best = best_trial(optuna_study)
    weights, note = importance(optuna_study)
    return {"name": sweep.name, "storage": study.shown_url(url), "definition": spec.to_dict(sweep),
            "n_trials": sweep.settings.n_trials, "direction": sweep.settings.direction,
            "objective": sweep.settings.objective, "metric": sweep.settings.metric,
            "objective_label": spec.objective_label(sweep.settings), "pruning_note": spec.pruning_note(sweep),
            "states": states,
            "done": states.get("complete", 0) + states.get("pruned", 0), "trials": rows,
            "best": trial_row(best) if best is not None else None,
            "importance": weights, "importance_note": note}


def best_config(optuna_study: Any, sweep: spec.Sweep) -> tuple[Any, Any]:
    """(best trial, its TrainConfig); NOT_FOUND before any trial has finished."""
    best = best_trial(optuna_study)
    if best is None:
        raise errors.not_found(f"sweep: {sweep.name} has no finished trial yet")
    return best, sweep.trial_config(best.params, name=f"{sweep.name}-best")


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """One line per trial: number, state, value, duration, pruned step, retry of, run id, knobs."""
    knobs = sorted({name for row in rows for name in row["params"]})
    columns = ["number", "state", "value", "duration_s", "pruned_step", "retry_of", "run_id"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns + knobs)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns] + [_cell(row["params"].get(k)) for k in knobs])
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def export(optuna_study: Any, url: str, out: Path) -> dict[str, str]:
    """Writes ``trials.csv`` and ``NAME.db`` (a SQLite copy of the study that `optuna.load_study`
    and optuna-dashboard open) into ``out``, each atomically."""
    optuna = study.optuna()
    out.mkdir(parents=True, exist_ok=True)
    rows = [trial_row(t) for t in optuna_study.get_trials(deepcopy=False)]
    csv_path = out / "trials.csv"
    workspace.atomic_write_text(csv_path, trials_csv(rows))
    db_path = out / f"{optuna_study.study_name}.db"
    fd, tmp = tempfile.mkstemp(prefix=f".{db_path.name}.", suffix=".tmp", dir=out)
    os.close(fd)
    Path(tmp).unlink()  # copy_study creates the database itself
    try:
        target = study.open_storage(f"sqlite:///{Path(tmp).as_posix()}")
        optuna.copy_study(from_study_name=optuna_study.study_name, from_storage=url,
                          to_storage=target)
        target.remove_session()
        target.engine.dispose()
        os.replace(tmp, db_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"csv": str(csv_path), "study": str(db_path), "storage_url": f"sqlite:///{db_path.as_posix()}"}
