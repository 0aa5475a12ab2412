"""`evaluate harness` runs lm-eval tasks through Tunebench (issue 17).

The shipped multiple-choice task runs on the tiny random Llama through the real engine process,
and its accuracy must equal `lm_eval.simple_evaluate` run directly on the same model and task;
a random LoRA adapter gets a column of its own; a broken task YAML is one line naming the file.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.core import paths

pytest.importorskip("lm_eval")

TASK = "tunebench_review_sentiment"
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_engine(engine_argv: Any, env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(engine_argv(*args, "--json"), env={**env, **OFFLINE}, capture_output=True,
                          text=True, timeout=300)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, messages, proc.stderr


@pytest.fixture(scope="module")
def direct_acc(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """lm-eval on its own: HFLM loads the folder, the task YAML is the shipped one with its data
    path written in."""
    mp = pytest.MonkeyPatch()
    for name, value in OFFLINE.items():
        mp.setenv(name, value)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager

        folder = tmp_path_factory.mktemp("direct-task")
        source = paths.harness_tasks_dir()
        text = (source / f"{TASK}.yaml").read_text(encoding="utf-8").replace("@DATA@", source.as_posix())
        (folder / f"{TASK}.yaml").write_text(text, encoding="utf-8")
        out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tiny_model_dir)}, tasks=[TASK],
                                      task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                                      batch_size=4, device="cpu", bootstrap_iters=0)
        return {k.split(",")[0]: v for k, v in out["results"][TASK].items() if k in ("acc,none", "acc_norm,none")}
    finally:
        mp.undo()


def test_shipped_task_equals_lm_eval_with_adapter(tiny_model_dir: Path, engine_env: dict[str, str],
                                                  engine_argv: Any, direct_acc: dict[str, float],
                                                  tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = tmp_path / "lora" / "adapter"  # labelled by its parent, as a run folder's adapter is
    get_peft_model(base, config).save_pretrained(str(adapter))

    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--model",
                                        str(tiny_model_dir), "--adapter", str(adapter), "--device", "cpu")
    assert code == 0, stderr[-2000:]
    assert messages[0]["type"] == "hello" and messages[0]["command"] == "evaluate harness"
    assert [m["current"] for m in messages if m["type"] == "progress"] == [0, 1, 1, 2]
    result = next(m["data"] for m in messages if m["type"] == "result")
    assert result["models"] == ["base", "lora"]
    folder = Path(result["path"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    acc = summary["metrics"][f"{TASK}:acc"]["values"]
    assert acc["base"]["estimate"] == direct_acc["acc"]
    assert summary["metrics"][f"{TASK}:acc_norm"]["values"]["base"]["estimate"] == direct_acc["acc_norm"]
    assert acc["base"]["stderr"] > 0 and acc["base"]["low"] < acc["base"]["estimate"] < acc["base"]["high"]
    # init_lora_weights=False: the adapter changes the logits, so its scores are its own.
    assert "lora" in acc
    harness = json.loads((folder / "harness.json").read_text(encoding="utf-8"))
    assert harness["lm_eval_version"] and TASK in harness["models"]["base"]["configs"]
    assert (folder / "tasks" / f"{TASK}.yaml").is_file()
    rows = [json.loads(line) for line in (folder / "examples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 24 and summary["examples"] == 24
    correct = sum(r["metrics"]["base"][f"{TASK}:acc"] for r in rows)
    assert correct / len(rows) == direct_acc["acc"]
    assert set(rows[0]["outputs"]) == {"base", "lora"}


def test_bad_task_yaml_is_one_line_naming_the_file(tiny_model_dir: Path, engine_env: dict[str, str],
                                                   engine_argv: Any, tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("task: mine\ndataset_path: json\n  doc_to_text: [oops\n", encoding="utf-8")
    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--include", str(bad),
                                        "--model", str(tiny_model_dir))
    assert code == 2, stderr[-2000:]
    error = next(m for m in messages if m["type"] == "error")
    assert f"{bad}:3: not valid YAML" in error["message"] and "\n" not in error["message"]
    assert "Traceback" not in stderr


def test_missing_task_data_is_one_line_naming_the_task_file(tiny_model_dir: Path, engine_env: dict[str, str],
                                                            engine_argv: Any, tmp_path: Path) -> None:
    task = tmp_path / "nodata.yaml"
    task.write_text("task: nodata\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                    f"    test: {(tmp_path / 'absent.jsonl').as_posix()}\ntest_split: test\n"
                    "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: ['a', 'b']\n"
                    "doc_to_target: 0\n", encoding="utf-8")
    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--include", str(task),
                                        "--model", str(tiny_model_dir))
    error = next(m for m in messages if m["type"] == "error")
    assert code == 3 and str(task) in error["message"] and "absent.jsonl" in error["message"]
    assert "\n" not in error["message"] and "Traceback" not in stderr


def test_unknown_task_lists_the_shipped_ones(tiny_model_dir: Path, engine_env: dict[str, str],
                                             engine_argv: Any) -> None:
    code, messages, _ = run_engine(engine_argv, engine_env, "evaluate", "harness", "--tasks", "nope",
                                   "--model", str(tiny_model_dir))
    error = next(m for m in messages if m["type"] == "error")
    assert code == 2 and "nope" in error["message"] and TASK in error["message"]


def test_one_of_lm_evals_own_tasks_is_found_and_says_its_data_is_not_cached_offline(
        tiny_model_dir: Path, engine_env: dict[str, str], engine_argv: Any) -> None:
    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--tasks", "arc_easy",
                                        "--model", str(tiny_model_dir))
    error = next(m for m in messages if m["type"] == "error")
    assert code == 3 and "arc_easy.yaml" in error["message"], error["message"]
    assert "not in this machine's Hugging Face cache" in error["message"] and "\n" not in error["message"]
    assert "Traceback" not in stderr


def test_shipped_tasks_are_listed() -> None:
    names = sorted(p.stem for p in paths.harness_tasks_dir().glob("*.yaml"))
    assert names == ["tunebench_review_product", "tunebench_review_sentiment"]
    assert os.path.isfile(paths.harness_tasks_dir() / "reviews_heldout.jsonl")


def test_shipped_generation_task_runs_end_to_end_as_lm_eval_scores_it(tiny_model_dir: Path,
                                                                       engine_env: dict[str, str],
                                                                       engine_argv: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    task = "tunebench_review_product"
    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--tasks", task,
                                        "--limit", "6", "--model", str(tiny_model_dir), "--device", "cpu")
    assert code == 0, stderr[-2000:]
    folder = Path(next(m["data"] for m in messages if m["type"] == "result")["path"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "examples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and all(r["task"] == task and r["reference"].strip() for r in rows)
    assert all(isinstance(r["outputs"]["base"], str) for r in rows)

    source = paths.harness_tasks_dir()
    (tmp_path / f"{task}.yaml").write_text((source / f"{task}.yaml").read_text(encoding="utf-8")
                                           .replace("@DATA@", source.as_posix()), encoding="utf-8")
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    direct = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tiny_model_dir)}, tasks=[task],
                                     task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
                                     batch_size=4, device="cpu", limit=6, bootstrap_iters=0, log_samples=True)
    assert summary["metrics"][f"{task}:exact_match"]["values"]["base"]["estimate"] == \
        direct["results"][task]["exact_match,strip"]
    answers = [s["filtered_resps"][0] for s in sorted(direct["samples"][task], key=lambda s: s["doc_id"])]
    assert [r["outputs"]["base"] for r in rows] == answers


QUIZ_TASK = """task: quiz_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: "@DATASET:quiz@"
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{messages[0].content}}\\nAnswer:"
doc_to_choice: ["yes", "no"]
doc_to_target: "{{ 0 if messages[1].content == 'yes' else 1 }}"
metric_list:
  - metric: acc
"""


def test_a_workspace_dataset_is_task_data(tiny_model_dir: Path, engine_env: dict[str, str], engine_argv: Any,
                                          tmp_path: Path) -> None:
    questions = [("Is two even?", "yes"), ("Is three even?", "no"), ("Is water wet?", "yes"),
                 ("Is fire cold?", "no"), ("Is the sky blue?", "yes")]
    source = tmp_path / "quiz.jsonl"
    source.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                       {"role": "assistant", "content": a}]}) + "\n"
                              for q, a in questions), encoding="utf-8")
    imported = subprocess.run(engine_argv("data", "import", str(source), "--name", "quiz"), env=engine_env,
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr[-2000:]
    task = tmp_path / "tasks" / "quiz.yaml"
    task.parent.mkdir()
    task.write_text(QUIZ_TASK, encoding="utf-8")

    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--include", str(task),
                                        "--model", str(tiny_model_dir), "--device", "cpu")
    assert code == 0, stderr[-2000:]
    folder = Path(next(m["data"] for m in messages if m["type"] == "result")["path"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["harness"]["datasets"] == {"@DATASET:quiz@": "quiz@v1"}
    rows = [json.loads(line) for line in (folder / "examples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["input"], r["reference"]) for r in rows] == [(f"Question: {q}\nAnswer:", a) for q, a in questions]
    assert "@DATASET" not in (folder / "tasks" / "quiz_mc.yaml").read_text(encoding="utf-8")
    harness = json.loads((folder / "harness.json").read_text(encoding="utf-8"))
    assert harness["task_files"] == [str(task)]  # the user's file, not the scratch copy that ran
    assert task.read_text(encoding="utf-8") == QUIZ_TASK  # the user's file is left as it was

    task.write_text(QUIZ_TASK.replace("@DATASET:quiz@", "@DATASET:nosuch@"), encoding="utf-8")
    code, messages, stderr = run_engine(engine_argv, engine_env, "evaluate", "harness", "--include", str(task),
                                        "--model", str(tiny_model_dir))
    error = next(m for m in messages if m["type"] == "error")
    assert code == 4 and error["message"].startswith(f"{task}: @DATASET:nosuch@: no dataset named 'nosuch'")
    assert "\n" not in error["message"] and "Traceback" not in stderr
