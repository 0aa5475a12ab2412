"""Qt-free comparison and export of stored runs: overlay curves, the settings diff, the metrics
CSV and the summary JSON, written into a temporary workspace as the engine writes runs."""

from __future__ import annotations

import csv
import io
import json

import pytest
from gui_helpers import make_run

from engine.core import config, protocol, workspace
from gui.state import run_compare, run_export, run_history


def with_config(run: workspace.RunFolder, **values) -> workspace.RunFolder:
    workspace.atomic_write_text(run.config_toml, config.to_toml(config.TrainConfig(**values)))
    return run


def append_events(run: workspace.RunFolder, *messages: dict) -> None:
    with run.events.open("a", encoding="utf-8") as handle:
        handle.write("".join(protocol.encode(message) for message in messages))


def test_overlay_curves_name_each_run_and_tell_same_names_apart():
    a = make_run("lr sweep", steps=6)
    b = make_run("lr sweep", steps=4)
    c = make_run("baseline", steps=3)
    append_events(c, protocol.metrics(3, {"eval_loss": 1.7}))
    rows = {row.id: row for row in run_history.list_rows()}
    curves = run_compare.load_curves([rows[a.id], rows[b.id], rows[c.id]])
    assert [curve.title for curve in curves] == [f"lr sweep ({a.id})", f"lr sweep ({b.id})", "baseline"]
    assert [curve.points("loss") for curve in curves] == [6, 4, 3]
    assert curves[2].points("eval_loss") == 1 and curves[0].points("eval_loss") == 0
    assert list(curves[1].series["loss"][0]) == [1, 2, 3, 4]


def test_config_diff_lists_only_the_keys_that_differ():
    a = with_config(make_run("a"), learning_rate=2e-4, lora_r=8, max_steps=30, name="a")
    b = with_config(make_run("b"), learning_rate=1e-4, lora_r=8, max_steps=30, name="b", packing=True)
    diff = run_compare.config_diff([run_compare.load_config(a.path), run_compare.load_config(b.path)])
    by_key = {row.key: row.values for row in diff}
    assert by_key["learning_rate"] == ("0.0002", "0.0001")
    assert by_key["name"] == ("a", "b") and by_key["packing"] == ("false", "true")
    assert "lora_r" not in by_key and "max_steps" not in by_key
    assert [row.key for row in diff] == sorted(by_key)


def test_config_diff_marks_a_key_one_run_lacks_and_reads_a_missing_file_as_empty():
    diff = run_compare.config_diff([{"lora_r": 8, "dora": True}, {"lora_r": 8}])
    assert [(row.key, row.values) for row in diff] == [("dora", ("true", run_compare.MISSING))]
    assert run_compare.config_diff([{"seed": 1}, {"seed": 1.0}])[0].values == ("1", "1.0")  # int vs float differ
    run = make_run("no config")
    assert run_compare.load_config(run.path) == {}
    run.config_toml.write_text("lora_r = [", encoding="utf-8")  # damaged
    assert run_compare.load_config(run.path) == {}


def test_metrics_csv_has_a_row_per_step_and_a_column_per_metric():
    run = make_run("export", steps=5)
    append_events(run, protocol.metrics(5, {"eval_loss": 1.31, "eval_accuracy": 0.5, "epoch": 1.0}),
                  protocol.metrics(5, {"train_runtime": 12.5}))
    columns, rows = run_export.metric_table(run.path)
    assert columns[:4] == ["step", "loss", "eval_loss", "learning_rate"]
    assert set(columns) == {"step", "loss", "eval_loss", "learning_rate", "tokens_per_s", "eval_accuracy",
                            "epoch", "train_runtime"}
    parsed = list(csv.DictReader(io.StringIO(run_export.metrics_csv(run.path))))
    assert [row["step"] for row in parsed] == ["1", "2", "3", "4", "5"]
    assert parsed[0]["eval_loss"] == "" and parsed[4]["eval_loss"] == "1.31"
    assert float(parsed[4]["loss"]) == pytest.approx(0.8 + 2.2 * 0.9**5, abs=1e-4)
    assert parsed[4]["train_runtime"] == "12.5"


def test_a_resumed_runs_export_drops_the_steps_its_crashed_attempt_repeated():
    run = make_run("resumed", status="cancelled", steps=6)
    append_events(run, protocol.hello("train", "0.1.0"),
                  protocol.artifact("run_dir", str(run.path), run_id=run.id, resumed_from=4),
                  protocol.metrics(5, {"loss": 0.5}), protocol.metrics(6, {"loss": 0.4}))
    columns, rows = run_export.metric_table(run.path)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[4]["loss"] == 0.5 and "learning_rate" not in rows[4]  # the redone step, not the old one
    assert run_history.load_curves(run.path).arrays("loss")[1][-2:].tolist() == [0.5, 0.4]


def test_summary_holds_the_record_settings_and_best_values(tmp_path):
    run = with_config(make_run("summary", steps=4), lora_r=4)
    append_events(run, protocol.metrics(2, {"eval_loss": 1.4}), protocol.metrics(4, {"eval_loss": 1.6}))
    (run.path / run_history.SAMPLES_FILE).write_text(
        json.dumps({"step": 2, "samples": [{"prompt": "hi", "output": "hello"}]}) + "\n", encoding="utf-8")
    target = tmp_path / "out" / "summary.json"
    target.parent.mkdir()
    run_export.write_summary_json(run.path, target)
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["run"]["name"] == "summary" and data["run"]["status"] == "finished"
    assert data["config"]["lora_r"] == 4
    assert data["metrics"]["eval_loss"] == {"last": 1.6, "last_step": 4, "min": 1.4, "min_step": 2, "max": 1.6,
                                            "points": 2}
    assert data["metrics"]["loss"]["points"] == 4
    assert data["samples"] == [{"step": 2, "samples": [{"prompt": "hi", "output": "hello"}]}]


def test_exports_are_atomic_and_leave_no_temp_files(tmp_path, monkeypatch):
    run = make_run("atomic", steps=3)
    target = tmp_path / "exports" / "metrics.csv"
    target.parent.mkdir()
    target.write_text("old export\n", encoding="utf-8")
    assert run_export.write_metrics_csv(run.path, target) == 3
    assert target.read_text(encoding="utf-8").startswith("step,loss,learning_rate,tokens_per_s\n")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(workspace.os, "replace", fail)
    with pytest.raises(OSError):
        run_export.write_metrics_csv(run.path, target)
    assert target.read_text(encoding="utf-8").startswith("step,")  # the earlier file is intact
    assert [p.name for p in target.parent.iterdir()] == ["metrics.csv"]  # no temp file left behind


def test_several_runs_export_as_one_long_table_and_one_summary_with_their_differences(tmp_path):
    a = with_config(make_run("sweep", steps=3), learning_rate=2e-4, lora_r=8, name="sweep")
    b = with_config(make_run("sweep", steps=2), learning_rate=1e-4, lora_r=8, name="sweep")
    append_events(b, protocol.metrics(2, {"eval_loss": 1.5}))
    rows = {row.id: row for row in run_history.list_rows()}
    chosen = [rows[a.id], rows[b.id]]

    target = tmp_path / "both.csv"
    assert run_export.write_runs_metrics_csv(chosen, target) == 5
    parsed = list(csv.DictReader(target.open(encoding="utf-8")))
    assert list(parsed[0])[:4] == ["run", "name", "step", "loss"] and "eval_loss" in parsed[0]
    assert [(row["run"], row["step"]) for row in parsed] == [(a.id, "1"), (a.id, "2"), (a.id, "3"),
                                                             (b.id, "1"), (b.id, "2")]
    assert {row["name"] for row in parsed} == {f"sweep ({a.id})", f"sweep ({b.id})"}  # same names told apart
    assert parsed[4]["eval_loss"] == "1.5" and parsed[2]["eval_loss"] == ""
    single = run_export.metric_table(a.path)[1]
    assert [float(row["loss"]) for row in parsed[:3]] == [row["loss"] for row in single]

    summary_path = tmp_path / "both.json"
    run_export.write_runs_summary_json(chosen, summary_path)
    data = json.loads(summary_path.read_text(encoding="utf-8"))
    assert [entry["run"]["id"] for entry in data["runs"]] == [a.id, b.id]
    assert data["runs"][1]["metrics"]["eval_loss"]["min"] == 1.5
    differ = {entry["setting"]: entry["values"] for entry in data["settings_that_differ"]}
    assert differ == {"learning_rate": {f"sweep ({a.id})": "0.0002", f"sweep ({b.id})": "0.0001"}}

    one = tmp_path / "one.csv"  # a single run keeps its own format: no run or name column
    assert run_export.write_runs_metrics_csv([rows[a.id]], one) == 3
    assert one.read_text(encoding="utf-8") == run_export.metrics_csv(a.path)


def test_only_finished_runs_with_weights_to_merge_offer_a_model_export():
    tuned = make_run("lora", adapter=True)
    running = make_run("running", status="running", adapter=True)
    no_adapter = make_run("no adapter")
    prompt = make_run("prompt tuning", adapter=True)
    prompt.update_info(method="prompt_tuning")
    full = make_run("full")
    full.update_info(method="full")
    (full.model).mkdir()
    (full.model / "config.json").write_text("{}", encoding="utf-8")
    rows = {row.id: row for row in run_history.list_rows()}
    assert {rows[run.id].name: rows[run.id].can_export_model() for run in (tuned, running, no_adapter, prompt, full)} \
        == {"lora": True, "running": False, "no adapter": False, "prompt tuning": False, "full": True}
