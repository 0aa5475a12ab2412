"""`batch`: a suite or a file column over configurations, results and exports, cancel, errors."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from engine.core import protocol


def batch(engine_argv, engine_env, *args: str, stdin: str = "") -> tuple[int, list[dict], str]:
    done = subprocess.run(engine_argv("batch", "--json", "--device", "cpu", *args), env=engine_env, input=stdin,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, [protocol.decode(line) for line in done.stdout.splitlines()], done.stderr


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({
        "format": "tunebench-suite", "version": 1, "name": "Reviews",
        "prompts": [{"name": "summary", "template": "Summarise: {{review}}", "mode": "chat"},
                    {"name": "fewshot", "template": "{{review}}", "mode": "raw",
                     "examples": [{"input": "Great.", "output": "positive"}]}],
        "cases": [{"review": "Arrived broken."}, {"review": "Love it."}]}), encoding="utf-8")
    return path


def test_a_suite_over_two_configurations_writes_every_row_and_the_exports(
        suite_file, tiny_model_dir, tmp_path, engine_argv, engine_env) -> None:
    configs = tmp_path / "configs.toml"
    configs.write_text(f'[[config]]\nname = "greedy"\nmodel = "{tiny_model_dir}"\nparams = {{max_new_tokens = 5}}\n'
                       f'[[config]]\nname = "hot"\nmodel = "{tiny_model_dir}"\n'
                       'params = {temperature = 1.2, seed = 3, max_new_tokens = 4, stop = ["\\n\\n"]}\n',
                       encoding="utf-8")
    code, messages, stderr = batch(engine_argv, engine_env, "--suite", str(suite_file), "--config", str(configs))
    assert code == 0, stderr[-2000:]
    rows_seen = [m["row"] for m in messages if m["type"] == "progress" and "row" in m]
    assert len(rows_seen) == 8 and [m["current"] for m in messages if "row" in m] == list(range(1, 9))
    result = messages[-1]["data"]
    folder = Path(result["folder"])
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == rows_seen and result["status"] == "finished"
    assert {(r["config"], r["prompt"], r["case"]) for r in rows} == {
        (c, p, k) for c in ("greedy", "hot") for p in ("summary", "fewshot") for k in (0, 1)}
    assert all(0 < r["completion_tokens"] <= 5 for r in rows if r["finish_reason"] == "length")
    fewshot = next(r for r in rows if r["prompt"] == "fewshot")
    assert fewshot["input"].startswith("Input: Great.\nOutput: positive")
    with open(result["csv"], encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["text"] for r in table] == [r["text"] for r in rows]
    markdown = Path(result["markdown"]).read_text(encoding="utf-8")
    assert markdown.count("\n| ") == 1 + 8 and "Summarise: Arrived broken." in markdown
    assert json.loads((folder / "batch.json").read_text())["rows"] == 8


def test_a_csv_column_runs_with_the_flag_configuration(tiny_model_dir, tmp_path, engine_argv, engine_env) -> None:
    data = tmp_path / "prompts.csv"
    data.write_text('id,question\n1,"Is it loud?"\n2,"Does it, like, work?"\n', encoding="utf-8")
    code, messages, stderr = batch(engine_argv, engine_env, "--file", str(data), "--column", "question",
                                   "--model", str(tiny_model_dir), "--max-new-tokens", "3")
    assert code == 0, stderr[-2000:]
    rows = [m["row"] for m in messages if "row" in m]
    assert [r["input"] for r in rows] == ["Is it loud?", "Does it, like, work?"]


def test_cancel_stops_the_batch_and_keeps_the_rows_done(tiny_model_dir, tmp_path, engine_argv, engine_env) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"q": f"question {i}"}) + "\n" for i in range(40)), encoding="utf-8")
    code, messages, stderr = batch(engine_argv, engine_env, "--file", str(data), "--column", "q",
                                   "--model", str(tiny_model_dir), "--max-new-tokens", "400",
                                   stdin=protocol.encode(protocol.make("cancel")))
    assert code == protocol.ExitCode.CANCELLED, stderr[-2000:]
    result = messages[-1]["data"]
    assert result["status"] == "cancelled" and result["rows"] < 40
    assert len(Path(result["jsonl"]).read_text(encoding="utf-8").splitlines()) == result["rows"]


@pytest.mark.parametrize("args, code, words", [
    (["--file", "nope.csv", "--column", "q"], protocol.ExitCode.NOT_FOUND, "nope.csv"),
    (["--suite", "missing-suite"], protocol.ExitCode.NOT_FOUND, "suite: 'missing-suite'"),
    ([], protocol.ExitCode.USAGE, "either --suite or --file"),
])
def test_bad_input_is_one_line(args, code, words, engine_argv, engine_env) -> None:
    status, messages, stderr = batch(engine_argv, engine_env, *args)
    assert status == code and words in messages[-1]["message"] and "Traceback" not in stderr


def test_a_bad_configuration_names_the_file_and_entry(suite_file, tmp_path, engine_argv, engine_env) -> None:
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([{"name": "ok"}, {"params": {"top_p": 7}}]), encoding="utf-8")
    status, messages, _ = batch(engine_argv, engine_env, "--suite", str(suite_file), "--config", str(configs))
    assert status == protocol.ExitCode.INVALID_INPUT
    assert f"{configs}: config 2: params.top_p" in messages[-1]["message"]


@pytest.mark.parametrize("entry, words", [
    ({"backend": "vllm"}, "backend: must be one of auto, llama.cpp, transformers, got 'vllm'"),
    ({"adapter_scale": 9}, "adapter_scale: must be a number from 0 to 4.0"),
    ({"base_url": "http://127.0.0.1:9/v1", "model": "m", "backend": "llama.cpp"},
     "backend, adapter_scale: a remote server's model runs on that server"),
])
def test_a_bad_backend_or_scale_names_the_file_and_entry(entry, words, suite_file, tmp_path, engine_argv,
                                                         engine_env) -> None:
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([{"name": "ok"}, entry]), encoding="utf-8")
    status, messages, _ = batch(engine_argv, engine_env, "--suite", str(suite_file), "--config", str(configs))
    assert status == protocol.ExitCode.INVALID_INPUT
    assert messages[-1]["message"] == f"{configs}: config 2: {words}"


def test_a_configuration_that_cannot_load_gives_error_rows_and_the_rest_still_runs(
        suite_file, tiny_model_dir, tmp_path, engine_argv, engine_env) -> None:
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([
        {"name": "broken", "model": str(tiny_model_dir), "adapter": str(tmp_path / "no-such-adapter"),
         "params": {"max_new_tokens": 3}},
        {"name": "fine", "model": str(tiny_model_dir), "params": {"max_new_tokens": 3}}]), encoding="utf-8")
    code, messages, stderr = batch(engine_argv, engine_env, "--suite", str(suite_file), "--config", str(configs))
    assert code == 0, stderr[-2000:]
    result = messages[-1]["data"]
    folder = Path(result["folder"])
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    broken = [r for r in rows if r["config"] == "broken"]
    assert len(broken) == 4 and all("no-such-adapter" in r["error"] and r["finish_reason"] == "error" for r in broken)
    assert len([r for r in rows if r["config"] == "fine" and not r["error"] and r["completion_tokens"]]) == 4
    assert result["errors"] == 4 and json.loads((folder / "batch.json").read_text())["status"] == "finished"
    assert "error: " in Path(result["markdown"]).read_text(encoding="utf-8")
    assert any(m["type"] == "log" and m.get("level") == "warning" and "broken" in m["message"] for m in messages)


def test_a_column_with_an_adapter_gets_the_system_prompt_its_run_trained_with(tiny_model_dir, workspace_home) -> None:
    """As `generate --adapter` does: a chat prompt with no system turn of its own gets the trained
    one, so the adapter answers in the shape it learned; a prompt's own system turn is kept."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.core import workspace
    from engine.infer.batch import with_trained_system
    from engine.infer.session import ModelPool

    run = workspace.create_run("reviews")
    run.update_info(id=run.id, status="finished", system_prompt="Answer with one line of JSON.")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(run.adapter))
    pool = ModelPool("cpu")
    tuned = pool.target(str(tiny_model_dir), str(run.adapter), lambda *_: None)
    plain = pool.target(str(tiny_model_dir), "", lambda *_: None)

    user = [{"role": "user", "content": "The stand wobbles."}]
    assert with_trained_system(user, tuned) == [{"role": "system", "content": "Answer with one line of JSON."}, *user]
    assert with_trained_system(user, plain) == user
    own = [{"role": "system", "content": "Be brief."}, *user]
    assert with_trained_system(own, tuned) == own


def test_a_batch_under_a_json_schema_gives_schema_valid_rows(tiny_model_dir, tmp_path, engine_argv, engine_env) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"q": f"question {i}"}) + "\n" for i in range(4)), encoding="utf-8")
    schema = {"type": "object", "required": ["label", "score"], "additionalProperties": False,
              "properties": {"label": {"enum": ["positive", "negative"]}, "score": {"type": "integer"}}}
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([{"model": str(tiny_model_dir), "params": {
        "temperature": 1.0, "seed": 3, "max_new_tokens": 60, "json_schema": json.dumps(schema)}}]), encoding="utf-8")
    code, messages, stderr = batch(engine_argv, engine_env, "--file", str(data), "--column", "q",
                                   "--config", str(configs))
    assert code == 0, stderr[-2000:]
    rows = [m["row"] for m in messages if "row" in m]
    assert len(rows) == 4 and all(r["finish_reason"] == "stop" for r in rows), rows
    for row in rows:
        value = json.loads(row["text"])
        assert set(value) == {"label", "score"} and value["label"] in ("positive", "negative")
        assert type(value["score"]) is int


@pytest.mark.parametrize("schema, words", [
    ('{"type": "integr"}', ": not a usable JSON Schema: Invalid type: integr"),
    ("{oops", ": not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
])
def test_a_bad_schema_file_is_one_line_naming_it(schema, words, tmp_path, engine_argv, engine_env) -> None:
    path = tmp_path / "schema.json"
    path.write_text(schema, encoding="utf-8")
    data = tmp_path / "prompts.csv"
    data.write_text("q\nhi\n", encoding="utf-8")
    status, messages, stderr = batch(engine_argv, engine_env, "--file", str(data), "--column", "q",
                                     "--json-schema", str(path))
    assert status == protocol.ExitCode.INVALID_INPUT and "Traceback" not in stderr
    assert messages[-1]["message"] == f"--json-schema {path}{words}"


def test_a_bad_schema_in_a_configuration_names_the_file_and_entry(suite_file, tmp_path, engine_argv,
                                                                   engine_env) -> None:
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([{"params": {"json_schema": "[1]"}}]), encoding="utf-8")
    status, messages, _ = batch(engine_argv, engine_env, "--suite", str(suite_file), "--config", str(configs))
    assert status == protocol.ExitCode.INVALID_INPUT
    assert messages[-1]["message"] == (f"{configs}: config 1: params.json_schema: a JSON Schema must be an "
                                       'object, e.g. {"type": "object"}')
