"""Reusable widgets: the metric plot redraws on a timer, the log pane stays bounded, the
float field reads and shows scientific values."""

from __future__ import annotations

from gui.widgets.form_fields import FloatSpinBox, ValueCombo
from gui.widgets.log_view import MAX_LINES, LogView
from gui.widgets.metric_plot import MetricPlot


def test_plot_redraws_from_a_timer_not_per_message(qtbot, monkeypatch):
    plot = MetricPlot()
    qtbot.addWidget(plot)
    redraws = []
    original = plot.redraw
    monkeypatch.setattr(plot, "redraw", lambda: (redraws.append(1), original()))
    for step in range(1, 501):
        plot.add_metrics(step, {"loss": 1 / step, "learning_rate": 1e-4, "tokens_per_s": 100.0})
    assert plot.drawn_points("loss") == 0  # nothing drawn yet: a burst costs no redraws
    qtbot.waitUntil(lambda: plot.drawn_points("loss") == 500, timeout=2000)
    assert len(redraws) == 1
    assert plot.drawn_points("learning_rate") == plot.drawn_points("tokens_per_s") == 500


def test_plot_ignores_metrics_it_does_not_show(qtbot):
    plot = MetricPlot()
    qtbot.addWidget(plot)
    plot.add_metrics(1, {"epoch": 0.1, "grad_norm": 2.0})
    plot.redraw()
    assert plot.drawn_points("loss") == 0 and plot.buffer.names() == []


def test_log_view_keeps_only_the_last_lines(qtbot):
    log = LogView()
    qtbot.addWidget(log)
    for index in range(MAX_LINES + 100):
        log.append_line(f"line {index}")
    lines = log.lines()
    assert len(lines) == MAX_LINES and lines[-1] == f"line {MAX_LINES + 99}"
    assert log.isReadOnly()


def test_float_field_shows_short_text_and_accepts_exponents(qtbot):
    spin = FloatSpinBox(1e-8, 1.0)
    qtbot.addWidget(spin)
    spin.setValue(0.0002)
    assert spin.text() == "0.0002"
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin, "3e-5")
    spin.interpretText()
    assert spin.value() == 3e-5


def test_value_combo_maps_labels_to_values_and_keeps_typed_text(qtbot):
    combo = ValueCombo([("SmolLM2-135M-Instruct (bundled)", "default")])
    qtbot.addWidget(combo)
    assert combo.value() == "default"
    combo.set_value("/models/my-llama")
    assert combo.currentText() == "/models/my-llama" and combo.value() == "/models/my-llama"
    combo.set_value("default")
    assert combo.currentText() == "SmolLM2-135M-Instruct (bundled)"


def test_a_constant_learning_rate_is_not_drawn_as_zero(qtbot):
    plot = MetricPlot()
    qtbot.addWidget(plot)
    for step in range(1, 11):
        plot.add_metrics(step, {"learning_rate": 2e-4})
    plot.redraw()
    low, high = plot._plots["learning_rate"].vb.viewRange()[1]
    assert 0 < low < 2e-4 < high < 1e-3


def test_validation_loss_shares_the_loss_plot_and_gets_a_legend(qtbot):
    from gui.widgets.metric_plot import MetricPlot

    plot = MetricPlot()
    qtbot.addWidget(plot)
    for step in range(1, 7):
        plot.add_metrics(step, {"loss": 2.0 / step})
    plot.redraw()
    assert plot.drawn_points("eval_loss") == 0 and plot._plots["loss"].legend is None
    plot.add_metrics(3, {"eval_loss": 1.1})
    plot.add_metrics(6, {"eval_loss": 0.9})
    plot.redraw()
    assert plot.drawn_points("eval_loss") == 2 and plot.drawn_points("loss") == 6
    assert plot._plots["loss"].legend is not None
