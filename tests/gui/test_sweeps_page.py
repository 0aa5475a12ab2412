"""The Sweeps page against a `sweep status --json` transcript recorded from a real 6-trial sweep
on the tiny model: the trials table, the three charts, the best-trial card and its actions."""

from __future__ import annotations

import json

import pytest
from gui_helpers import TRANSCRIPTS
from PySide6.QtCore import Qt

from gui.state import sweep_view
from gui.state.sweep_view import SweepSummary

TRANSCRIPT = "sweep_status.ndjson"


def recorded() -> SweepSummary:
    lines = [json.loads(line) for line in (TRANSCRIPTS / TRANSCRIPT).read_text(encoding="utf-8").splitlines()]
    return SweepSummary(next(m["data"] for m in lines if m["type"] == "result"))


def test_the_table_has_a_row_per_trial_with_state_value_and_every_knob() -> None:
    summary = recorded()
    header, rows = sweep_view.table(summary)
    assert header[:3] == ["#", "State", "Value"] and set(summary.knobs) <= set(header)
    assert len(rows) == len(summary.trials) == 6
    pruned = [row for row in rows if row[1] == "pruned"]
    assert pruned and all(row[header.index("Pruned at")] for row in pruned)
    assert all(row[header.index("Run")] for row in rows)


def test_the_history_shows_finished_trials_and_a_best_so_far_that_never_worsens() -> None:
    summary = recorded()
    numbers, values, best = sweep_view.history(summary)
    finished = [t for t in summary.trials if t["state"] == "complete"]
    assert numbers == [t["number"] for t in finished] and len(values) == len(finished)
    assert all(later <= earlier for earlier, later in zip(best, best[1:]))
    assert best[-1] == pytest.approx(summary.best["value"])


def test_parallel_coordinates_place_each_knob_on_its_searched_scale() -> None:
    summary = recorded()
    axes, lines = sweep_view.parallel_lines(summary)
    assert axes == [*summary.knobs, "value"]
    assert all(0.0 <= p <= 1.0 for _, points, _ in lines for p in points)
    space = summary.data["definition"]["space"]["learning_rate"]
    middle = (space["low"] * space["high"]) ** 0.5  # the geometric middle of a log range
    assert sweep_view.axis_position(summary, "learning_rate", middle) == pytest.approx(0.5)
    choices = summary.data["definition"]["space"]["lora_r"]["choices"]
    assert sweep_view.axis_position(summary, "lora_r", choices[-1]) == 1.0
    best_line = next(points for number, points, _ in lines if number == summary.best["number"])
    assert best_line[-1] == 0.0  # the lowest loss sits at the bottom of the value axis


def test_importance_bars_are_the_engines_numbers_most_important_first() -> None:
    summary = recorded()
    bars = sweep_view.importance_bars(summary)
    assert dict(bars) == summary.data["importance"]
    assert [v for _, v in bars] == sorted((v for _, v in bars), reverse=True)


def make_page(qtbot, make_context, tunebench_home):
    from gui.pages.sweeps import SweepsPage

    (tunebench_home / "sweeps").mkdir()
    (tunebench_home / "sweeps" / "six.db").write_bytes(b"")  # listed by file name; the fake answers
    page = SweepsPage(make_context(TRANSCRIPT))
    qtbot.addWidget(page)
    qtbot.waitUntil(lambda: page.summary is not None, timeout=15_000)
    return page


def test_the_page_lists_the_workspaces_sweeps_and_draws_the_summary(qtbot, make_context, tunebench_home) -> None:
    page = make_page(qtbot, make_context, tunebench_home)
    summary = recorded()
    assert page.sweep_combo.currentText() == "six"
    assert page.table.rowCount() == 6 and page.table.horizontalHeaderItem(1).text() == "State"
    assert "6 of 6 trials done" in page.headline.text()
    finished = len([t for t in summary.trials if t["state"] == "complete"])
    assert page.plots.drawn == {"history": finished, "parallel": finished, "importance": len(summary.knobs)}
    assert page.best_card.run_id == summary.best["run_id"]
    assert f"trial {summary.best['number']}" in page.best_card.value_label.text()


def test_the_best_trial_cards_buttons_name_its_run(qtbot, make_context, tunebench_home) -> None:
    page = make_page(qtbot, make_context, tunebench_home)
    run_id = recorded().best["run_id"]
    card = page.best_card
    for button, signal in ((card.open_button, page.sig_open_run),
                           (card.longer_button, page.sig_continue_requested),
                           (card.evaluate_button, page.sig_evaluate_requested)):
        with qtbot.waitSignal(signal, timeout=2000) as caught:
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert caught.args == [run_id]


def test_no_sweeps_says_how_to_make_one(qtbot, make_context) -> None:
    from gui.pages.sweeps import SweepsPage

    page = SweepsPage(make_context(TRANSCRIPT))
    qtbot.addWidget(page)
    assert "sweep create" in page.headline.text() and page.summary is None and not page.is_busy()


def test_a_metric_objective_names_the_metric_on_the_best_card_and_the_history(qtbot, tunebench_home) -> None:
    from gui.context import AppContext
    from gui.pages.sweeps import SweepsPage

    page = SweepsPage(AppContext.from_environment())
    qtbot.addWidget(page)
    summary = {"name": "scored", "n_trials": 2, "direction": "maximize", "objective": "metric",
               "objective_label": "Token F1", "pruning_note": "pruning is off: no validation split",
               "definition": {"space": {"lora_r": {"choices": [4, 8]}}}, "states": {"complete": 2}, "done": 2,
               "trials": [{"number": n, "state": "complete", "value": v, "params": {"lora_r": r}, "run_id": f"r{n}",
                           "duration_s": 1.0, "intermediate": {}} for n, v, r in ((0, 0.2, 4), (1, 0.5, 8))],
               "importance": {}, "importance_note": "needs at least 2 finished trials"}
    summary["best"] = summary["trials"][1]
    page.show_summary(SweepSummary(summary))
    assert page.best_card.value_name.text() == "Token F1" and "0.5" in page.best_card.value_label.text()
    assert page.plots.history.getAxis("left").labelText == "Token F1"
    assert page.headline.toolTip() == "Pruning is off: no validation split."
