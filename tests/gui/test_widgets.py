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
    plot.add_metrics(1, {"epoch": 0.1, "train_runtime": 2.0})
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
    plot = MetricPlot()
    qtbot.addWidget(plot)
    for step in range(1, 7):
        plot.add_metrics(step, {"loss": 2.0 / step})
    plot.redraw()
    assert plot.drawn_points("eval_loss") == 0
    assert plot.legend_names() == ["train (raw)", "train (smoothed)"]
    plot.add_metrics(3, {"eval_loss": 1.1})
    plot.add_metrics(6, {"eval_loss": 0.9})
    plot.redraw()
    assert plot.drawn_points("eval_loss") == 2 and plot.drawn_points("loss") == 6
    assert plot.drawn_points("loss_smoothed") == 6
    assert plot.legend_names() == ["train (raw)", "train (smoothed)", "validation"]


def test_gpu_plots_appear_only_when_the_engine_reports_them(qtbot):
    plot = MetricPlot()
    qtbot.addWidget(plot)
    plot.add_metrics(1, {"loss": 2.0, "grad_norm": 1.5, "memory_gb": 0.8})
    plot.redraw()
    assert plot.drawn_points("grad_norm") == plot.drawn_points("memory_gb") == 1
    assert not plot.has_plot("gpu_util") and not plot.has_plot("gpu_temp_c")  # CPU run: no empty plots
    plot.add_metrics(2, {"loss": 1.9, "gpu_util": 97.0, "gpu_temp_c": 61.0})
    plot.redraw()
    assert plot.has_plot("gpu_util") and plot.drawn_points("gpu_temp_c") == 1


def test_gpu_plots_of_one_run_go_when_a_run_without_them_is_shown(qtbot):
    from gui.state.metric_buffer import MetricBuffer

    plot = MetricPlot()
    qtbot.addWidget(plot)
    gpu = MetricBuffer()
    cpu = MetricBuffer()
    for step in range(1, 6):
        gpu.append_values(step, {"loss": 2.0 / step, "eval_loss": 1.5, "learning_rate": 1e-4, "tokens_per_s": 900.0,
                                 "grad_norm": 1.0, "memory_gb": 5.0, "gpu_util": 97.0, "gpu_temp_c": 60.0},
                          ("loss", "eval_loss", "learning_rate", "tokens_per_s", "grad_norm", "memory_gb",
                           "gpu_util", "gpu_temp_c"))
        cpu.append_values(step, {"loss": 3.0 / step, "learning_rate": 1e-4, "tokens_per_s": 90.0},
                          ("loss", "learning_rate", "tokens_per_s"))
    plot.set_buffer(gpu)
    assert all(plot.has_plot(key) for key in ("grad_norm", "memory_gb", "gpu_util", "gpu_temp_c"))
    assert "validation" in plot.legend_names()
    plot.set_buffer(cpu)
    assert not any(plot.has_plot(key) for key in ("grad_norm", "memory_gb", "gpu_util", "gpu_temp_c"))
    assert plot.legend_names() == ["train (raw)", "train (smoothed)"]
    assert plot.drawn_points("loss") == 5 and plot.drawn_points("tokens_per_s") == 5
    plot.set_buffer(gpu)  # and back: the plots return, laid out again, with their data
    assert plot.drawn_points("gpu_temp_c") == 5 and plot.x_range("gpu_temp_c") == plot.x_range("loss")
    plot.clear()
    assert not plot.has_plot("gpu_util") and plot.drawn_points("loss") == 0


def test_samples_view_shows_a_recorded_runs_samples_newest_first(qtbot):
    from gui.widgets.train_samples import SamplesView

    view = SamplesView()
    qtbot.addWidget(view)
    view.set_samples([(10, [{"prompt": "p", "output": "a"}]), (20, [{"prompt": "p", "output": "b"}])])
    assert view.steps() == [20, 10] and view.outputs_at(20) == ["b"] and view.empty_label.isHidden()
    view.set_samples([])
    assert view.steps() == [] and not view.empty_label.isHidden()


def test_compare_plot_smooths_train_loss_and_gives_each_run_its_colour(qtbot):
    import numpy as np

    from gui.state.metric_buffer import smooth_ema
    from gui.state.run_compare import RunCurves
    from gui.widgets.run_compare_plot import PALETTE, RunComparePlot

    steps = np.arange(1.0, 6.0)
    runs = [RunCurves(f"r{i}", f"run {i}", {"loss": (steps, 3.0 / steps + i)}) for i in range(12)]
    plot = RunComparePlot()
    qtbot.addWidget(plot)
    plot.set_runs(runs)
    assert len(plot.legend_names()) == 12 and plot.legend_names()[0] == "run 0 · train"
    assert [plot.curve_color(f"r{i}") for i in range(10)] == list(PALETTE)  # ten distinct, then it cycles
    assert np.allclose(plot.drawn_data("r1")[1], smooth_ema(3.0 / steps + 1, 0.6))
    plot.smoothing_slider.setValue(0)
    assert np.allclose(plot.drawn_data("r1")[1], 3.0 / steps + 1)
    plot.set_runs(runs[:1])
    assert plot.legend_names() == ["run 0 · train"] and "two or more" in plot.hint.text()


def _tick_values(axis) -> list[float]:
    low, high = axis.linkedView().viewRange()[0]
    return [value for _, values in axis.tickValues(low, high, axis.geometry().width()) for value in values]


def test_the_step_axes_show_whole_steps_only(qtbot, tmp_path):
    """Three steps on a wide plot: pyqtgraph alone would label 1.5 and 2.5 (or 1.2, 1.4, ...)."""
    import os

    import numpy as np

    from gui.state.run_compare import RunCurves
    from gui.widgets.run_compare_plot import RunComparePlot

    plot = MetricPlot()
    qtbot.addWidget(plot)
    for step in (1, 2, 3):
        plot.add_metrics(step, {"loss": 3.0 / step, "learning_rate": 1e-4})
    plot.redraw()
    plot.resize(1000, 600)
    plot.show()
    qtbot.waitExposed(plot)
    compare = RunComparePlot()
    qtbot.addWidget(compare)
    steps = np.arange(1.0, 4.0)
    compare.set_runs([RunCurves("a", "run a", {"loss": (steps, 3.0 / steps)}),
                      RunCurves("b", "run b", {"loss": (steps, 2.0 / steps)})])
    compare.resize(1000, 600)
    compare.show()
    qtbot.waitExposed(compare)
    for axis in [p.getAxis("bottom") for p in plot._plots.values()] + [compare.plot.getAxis("bottom")]:
        values = _tick_values(axis)
        assert values and all(float(v).is_integer() for v in values), values
    shots = os.environ.get("TUNEBENCH_SHOTS", str(tmp_path))
    plot.grab().save(os.path.join(shots, "train-plot-three-steps.png"))
    compare.grab().save(os.path.join(shots, "runs-compare-three-steps.png"))
