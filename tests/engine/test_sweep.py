"""Sweeps on the tiny model, through the real CLI: TPE with a median pruner, trials that are
ordinary runs, the best config reproducing its value, importance equal to Optuna's own, the
export, a SIGKILLed worker resumed without lost or duplicated trials, and two workers sharing one
SQLite study."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core import protocol, workspace

pytest.importorskip("optuna")

FAST_BASE = {"dataset": "sample", "device": "cpu", "batch_size": 8, "max_length": 96, "lora_alpha": 16,
             "lora_dropout": 0.0, "lr_scheduler": "constant", "val_fraction": 0.1, "eval_steps": 4,
             "save_steps": 8, "sample_count": 0, "max_steps": 12}


def sweep_file(folder: Path, model: Path, name: str, space: str, base: dict | None = None, **settings) -> Path:
    values = {"name": name, "seed": 0, **settings}
    lines = [
        "[sweep]",
        *(f"{k} = {json.dumps(v)}" for k, v in values.items()),
        "",
        "[sweep.base]",
        f"model = {json.dumps(str(model))}",
        *(f"{k} = {json.dumps(v)}" for k, v in {**FAST_BASE, **(base or {})}.items()),
        "",
        space,
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SPACE = """
[sweep.space.learning_rate]
low = 1e-6
high = 5e-2
log = true

[sweep.space.lora_r]
choices = [2, 4, 8]

[sweep.space.epochs]
low = 1.0
high = 2.0
step = 1.0
"""


def engine(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "engine", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    return done


def result(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    return next(m["data"] for m in messages if m["type"] == "result")


def status(env: dict, name: str, *extra: str) -> dict:
    return result(engine(env, "sweep", "status", name, "--json", *extra))


def load_study(home: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{home / 'sweeps' / f'{name}.db'}")


# -- one 6-trial sweep, shared by the tests that read it ---------------------------------------

@pytest.fixture(scope="module")
def six_trials(tmp_path_factory, tiny_model_dir) -> tuple[dict, dict]:
    """(environment, `sweep status` summary) of a finished 6-trial sweep: TPE (3 random trials
    first) and a median pruner that prunes from the third trial on, from step 4."""
    folder = tmp_path_factory.mktemp("sweep")
    env = dict(os.environ, TUNEBENCH_HOME=str(folder / "home"), PYTHONUNBUFFERED="1")
    # max_steps 0: epochs decides the length, so the space's epochs knob matters.
    path = sweep_file(folder, tiny_model_dir, "six", SPACE, base={"max_steps": 0}, n_trials=6, sampler="tpe",
                      sampler_startup_trials=3, pruner="median", pruner_startup_trials=2, pruner_warmup_steps=0)
    created = result(engine(env, "sweep", "create", str(path), "--json"))
    assert created["name"] == "six"
    started = time.monotonic()
    ran = engine(env, "sweep", "run", "six", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    print(f"6-trial sweep: {time.monotonic() - started:.1f} s")
    return env, status(env, "six")


def test_six_trials_run_as_ordinary_runs_and_the_pruner_stops_one(six_trials) -> None:
    env, summary = six_trials
    states = [t["state"] for t in summary["trials"]]
    assert len(states) == 6 and summary["done"] == 6 and set(states) <= {"complete", "pruned"}
    assert "pruned" in states, states
    home = Path(env["TUNEBENCH_HOME"])
    for trial in summary["trials"]:
        info = workspace.RunFolder(home / "runs" / trial["run_id"]).info()
        assert info["sweep"] == "six" and info["trial"] == trial["number"]
        assert info["sweep_params"] == pytest.approx(trial["params"])
        if trial["state"] == "pruned":
            assert info["status"] == "pruned" and info["pruned_step"] == trial["pruned_step"]
            # Stopped at the evaluation that pruned it, before its planned length.
            assert info["steps"] == trial["pruned_step"] <= info["total_steps"]
            assert max(int(step) for step in trial["intermediate"]) == trial["pruned_step"]
        else:
            assert info["status"] == "finished" and info["sweep_value"] == pytest.approx(trial["value"])
            assert trial["value"] == pytest.approx(lowest_validation_loss(home / "runs" / trial["run_id"]))
            assert (home / "runs" / trial["run_id"] / "adapter" / "adapter_config.json").is_file()
    assert len({t["run_id"] for t in summary["trials"]}) == 6
    # At least one pruned trial was stopped before its planned length (the pruner cut it short).
    cut = [t for t in summary["trials"] if t["state"] == "pruned" and
           workspace.RunFolder(home / "runs" / t["run_id"]).info()["total_steps"] > t["pruned_step"]]
    assert cut, summary["trials"]


def test_the_best_trials_config_reproduces_its_value(six_trials, tmp_path) -> None:
    env, summary = six_trials
    best_file = tmp_path / "best.toml"
    best = result(engine(env, "sweep", "best", "six", "--write", str(best_file), "--json"))
    assert best["number"] == summary["best"]["number"] and best["value"] == min(
        t["value"] for t in summary["trials"] if t["state"] == "complete")
    trained = result(engine(env, "train", "--config", str(best_file), "--json"))
    assert lowest_validation_loss(Path(trained["run_dir"])) == pytest.approx(best["value"], rel=1e-4)


def lowest_validation_loss(run_dir: Path) -> float:
    """A trial's value: the lowest validation loss its run reported, checkpoint saved there or not."""
    lines = (run_dir / "events.ndjson").read_text(encoding="utf-8").splitlines()
    messages = [json.loads(line) for line in lines if line.strip()]
    return min(m["values"]["eval_loss"] for m in messages
               if m.get("type") == "metrics" and "eval_loss" in m.get("values", {}))


def test_importance_is_optunas_own_fanova_on_the_same_study(six_trials) -> None:
    import optuna

    env, summary = six_trials
    study = load_study(Path(env["TUNEBENCH_HOME"]), "six")
    expected = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert set(summary["importance"]) == {"learning_rate", "lora_r", "epochs"}
    assert summary["importance"] == pytest.approx(dict(expected))
    assert sum(summary["importance"].values()) == pytest.approx(1.0)


def test_export_writes_the_trials_as_csv_and_a_study_that_optuna_opens(six_trials, tmp_path) -> None:
    import optuna

    env, summary = six_trials
    written = result(engine(env, "sweep", "export", "six", "--out", str(tmp_path / "out"), "--json"))
    copy = optuna.load_study(study_name="six", storage=written["storage_url"])
    assert [(t.number, t.state.name.lower(), t.value) for t in copy.trials] == [
        (t["number"], t["state"], t["value"]) for t in summary["trials"]]
    with open(written["csv"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {"learning_rate", "lora_r", "epochs", "state", "value", "run_id"} <= set(rows[0])
    assert [r["state"] for r in rows] == [t["state"] for t in summary["trials"]]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


# -- a killed worker, and two workers -------------------------------------------------------

def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def trial_runs(home: Path) -> list[dict]:
    return [run.info() for run in workspace.list_runs(home / "runs")]


def training_step(home: Path, trial: int) -> int:
    """The last step trial ``trial``'s run folder recorded (0 before it started)."""
    for run in workspace.list_runs(home / "runs"):
        if run.info().get("trial") == trial:
            steps = [m["step"] for m in run.read_events() if m["type"] == "metrics"]
            return max(steps, default=0)
    return 0


def test_a_sigkilled_worker_resumes_with_the_interrupted_trial_retried(tiny_model_dir, workspace_home, engine_env,
                                                                       tmp_path) -> None:
    path = sweep_file(tmp_path, tiny_model_dir, "killed", SPACE, n_trials=3, pruner="none", heartbeat_s=1,
                      base={"max_steps": 16})
    result(engine(engine_env, "sweep", "create", str(path), "--json"))
    worker = subprocess.Popen([sys.executable, "-m", "engine", "sweep", "run", "killed", "--json"], env=engine_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: training_step(workspace_home, 1) >= 2, 300, "trial 1 to train 2 steps")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    killed = [t for t in load_study(workspace_home, "killed").trials if t.number == 1][0]
    assert killed.state.name == "RUNNING"  # as the kill left it

    resumed = engine(engine_env, "sweep", "run", "killed", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = status(engine_env, "killed")["trials"]
    by_state = {state: [t for t in trials if t["state"] == state] for state in ("complete", "fail")}
    assert len(by_state["complete"]) == 3 and len(by_state["fail"]) == 1 and len(trials) == 4
    assert by_state["fail"][0]["number"] == 1
    retry = next(t for t in trials if t["retry_of"] == 1)
    assert retry["state"] == "complete" and retry["params"] == by_state["fail"][0]["params"]
    assert retry["run_id"] != by_state["fail"][0]["run_id"]
    runs = {info["id"]: info for info in trial_runs(workspace_home)}
    assert len(runs) == 4 and runs[by_state["fail"][0]["run_id"]]["status"] == "failed"
    assert sorted(info["status"] for info in runs.values()) == ["failed", "finished", "finished", "finished"]


def test_two_workers_share_one_sqlite_study_and_run_no_trial_twice(tiny_model_dir, workspace_home, engine_env,
                                                                    tmp_path) -> None:
    path = sweep_file(tmp_path, tiny_model_dir, "shared", SPACE, n_trials=4, pruner="none", sampler="random")
    result(engine(engine_env, "sweep", "create", str(path), "--json"))
    assert_two_workers_share(engine_env, workspace_home, ["sweep", "run", "shared"], "shared", 4)


def assert_two_workers_share(env: dict, home: Path, command: list[str], name: str, n_trials: int,
                             storage: list[str] = ()) -> None:
    workers = [subprocess.Popen([sys.executable, "-m", "engine", *command, "--json"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [w.communicate(timeout=600)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for e in errors]
    trials = status(env, name, *storage)["trials"]
    # Together they ran the sweep: every trial finished once (two workers asking at the same
    # moment may both start the last one, as with Optuna's MaxTrialsCallback).
    assert n_trials <= len(trials) <= n_trials + 1 and {t["state"] for t in trials} == {"complete"}
    runs = trial_runs(home)
    assert sorted(info["trial"] for info in runs) == sorted(t["number"] for t in trials)
    assert len({t["run_id"] for t in trials}) == len(trials) == len(runs)
    assert len({info["pid"] for info in runs}) == 2, "both workers trained trials"


# -- objective = "metric": an evaluation of each trial's adapter ------------------------------------
# Each finished trial's adapter is evaluated with the sweep's evaluation spec (the code of
# `evaluate run`) and the trial's value is the metric in that evaluation's own summary.json; pruning
# still follows the validation loss, and without a validation split it is off, saying so.

LR_SPACE = """
[sweep.space.learning_rate]
low = 1e-4
high = 5e-2
log = true
"""


def eval_file(folder: Path, metrics: list[str], **extra) -> Path:
    values = {"dataset": "sample", "split": "all", "max_examples": 6, "metrics": metrics, "bootstrap": 10,
              "max_new_tokens": 4, "batch_size": 6, **extra}
    path = folder / f"eval-{'-'.join(metrics)}.toml"
    path.write_text("[evaluate]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def evaluation_value(home: Path, evaluation: str, metric: str) -> tuple[float, list[str]]:
    summary = json.loads((home / "evals" / evaluation / "summary.json").read_text(encoding="utf-8"))
    labels = [m["label"] for m in summary["models"]]
    return summary["metrics"][metric]["values"][labels[0]]["estimate"], labels


def test_each_trial_scores_the_metric_of_its_own_evaluation(tiny_model_dir, workspace_home, engine_env,
                                                            tmp_path) -> None:
    spec_path = eval_file(tmp_path, ["perplexity"])
    path = sweep_file(tmp_path, tiny_model_dir, "scored", LR_SPACE, base={"max_steps": 6, "eval_steps": 2,
                                                                          "save_steps": 6},
                      n_trials=3, objective="metric", metric="perplexity", direction="minimize",
                      eval_spec=spec_path.name, pruner="median", pruner_startup_trials=2)
    created = result(engine(engine_env, "sweep", "create", str(path), "--json"))
    assert created["definition"]["evaluate"]["dataset"] == "sample"
    ran = engine(engine_env, "sweep", "run", "scored", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = status(engine_env, "scored")
    assert summary["objective"] == "metric" and summary["objective_label"] == "Answer perplexity"
    assert summary["pruning_note"] == "" and summary["done"] == 3
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    assert len(complete) >= 2
    for trial in complete:
        value, labels = evaluation_value(workspace_home, trial["evaluation"], "perplexity")
        assert trial["value"] == pytest.approx(value, rel=1e-12)
        assert labels == [trial["run_id"]]  # the trial's adapter alone, not the base again
        info = workspace.RunFolder(workspace_home / "runs" / trial["run_id"]).info()
        assert info["sweep_evaluation"] == trial["evaluation"] and info["sweep_value"] == pytest.approx(value)
        # The pruner was still fed the validation loss at each evaluation step (2, 4, 6).
        assert sorted(int(step) for step in trial["intermediate"]) == [2, 4, 6]
    best = result(engine(engine_env, "sweep", "best", "scored", "--json"))
    assert best["value"] == min(t["value"] for t in complete)


def test_without_a_validation_split_a_maximised_metric_runs_every_trial_to_the_end(
        tiny_model_dir, workspace_home, engine_env, tmp_path) -> None:
    spec_path = eval_file(tmp_path, ["token_f1"])
    path = sweep_file(tmp_path, tiny_model_dir, "noval", LR_SPACE,
                      base={"max_steps": 4, "val_fraction": 0.0, "eval_steps": 0, "save_steps": 4},
                      n_trials=2, objective="metric", metric="token_f1", direction="maximize",
                      eval_spec=str(spec_path), pruner="median", pruner_startup_trials=0)
    created = engine(engine_env, "sweep", "create", str(path), "--json")
    assert "pruning is off" in created.stderr and "val_fraction is 0" in created.stderr
    ran = engine(engine_env, "sweep", "run", "noval", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = status(engine_env, "noval")
    assert "pruning is off" in summary["pruning_note"]
    assert [t["state"] for t in summary["trials"]] == ["complete", "complete"]
    for trial in summary["trials"]:
        assert trial["value"] == pytest.approx(evaluation_value(workspace_home, trial["evaluation"], "token_f1")[0])
        assert trial["intermediate"] == {}


# -- the queue runs sweeps -------------------------------------------------------------------------

def test_the_queue_runs_a_sweep_as_one_job_and_a_killed_sweep_job_resumes_when_queued_again(
        tiny_model_dir, workspace_home, engine_env, tmp_path) -> None:
    from engine.train import job_queue

    path = sweep_file(tmp_path, tiny_model_dir, "queued", SPACE, n_trials=3, pruner="none", heartbeat_s=1,
                      base={"max_steps": 48})  # trial 1 still trains when the kill lands (16 steps take ~1 s)
    result(engine(engine_env, "sweep", "create", str(path), "--json"))
    sweep_job = result(engine(engine_env, "queue", "add", "--sweep", "queued", "--json"))["job"]
    assert sweep_job["kind"] == "sweep" and sweep_job["args"] == ["queued"]
    train_flags = ["--model", str(tiny_model_dir), "--dataset", "sample", "--device", "cpu", "--max-steps", "2",
                   "--max-length", "96", "--sample-count", "0", "--name", "after-the-sweep"]
    train_job = result(engine(engine_env, "queue", "add", "--json", "--", *train_flags))["job"]
    missing = engine(engine_env, "queue", "add", "--sweep", "nosuch", "--json")
    assert missing.returncode == 4 and "no sweep called nosuch" in missing.stdout

    worker = subprocess.Popen([sys.executable, "-m", "engine", "queue", "run"], env=engine_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: training_step(workspace_home, 1) >= 2, 300, "trial 1 to train 2 steps")
        running = next(j for j in job_queue.load() if j["id"] == sweep_job["id"])
        assert running["status"] == "running" and running["run_id"]  # the trial being trained
        os.kill(running["pid"], signal.SIGKILL)  # the sweep's engine process, mid-trial
        assert worker.wait(timeout=300) == 0  # the queue goes on with the job after the sweep
    finally:
        if worker.poll() is None:
            worker.kill()
    jobs = {j["id"]: j for j in job_queue.load()}
    assert jobs[sweep_job["id"]]["status"] == "failed" and jobs[train_job["id"]]["status"] == "finished"
    assert jobs[train_job["id"]]["started"] >= jobs[sweep_job["id"]]["ended"]

    again = result(engine(engine_env, "queue", "add", "--sweep", "queued", "--json"))["job"]
    ran = engine(engine_env, "queue", "run", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert next(j for j in job_queue.load() if j["id"] == again["id"])["status"] == "finished"
    trials = status(engine_env, "queued")["trials"]
    by_state = {state: [t for t in trials if t["state"] == state] for state in ("complete", "fail")}
    assert len(by_state["complete"]) == 3 and [t["number"] for t in by_state["fail"]] == [1] and len(trials) == 4
    retry = next(t for t in trials if t["retry_of"] == 1)
    assert retry["state"] == "complete" and retry["params"] == by_state["fail"][0]["params"]


def test_a_sweep_cancel_file_stops_a_queued_sweep_and_requeues_its_trial(tiny_model_dir, workspace_home,
                                                                          engine_env, tmp_path) -> None:
    from engine.train import job_queue

    # Long enough that the cancel lands mid-trial: the tiny model trains 16 steps in about a second,
    # faster than the cancel file is polled.
    path = sweep_file(tmp_path, tiny_model_dir, "stopped", SPACE, n_trials=2, pruner="none", base={"max_steps": 400})
    result(engine(engine_env, "sweep", "create", str(path), "--json"))
    job = job_queue.add_sweep("stopped")
    worker = subprocess.Popen([sys.executable, "-m", "engine", "queue", "run"], env=engine_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: training_step(workspace_home, 0) >= 2, 300, "trial 0 to train 2 steps")
        job_queue.request_sweep_cancel("stopped")
        assert worker.wait(timeout=300) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert next(j for j in job_queue.load() if j["id"] == job["id"])["status"] == "cancelled"
    trials = status(engine_env, "stopped")["trials"]
    assert [t["state"] for t in trials] == ["fail", "waiting"]  # trial 0 queued again for the next run
