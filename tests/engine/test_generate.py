"""`generate`: streamed tokens, greedy determinism, the adapter changes the answer, errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.core import protocol


def generate(engine_argv, engine_env, *args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run(engine_argv("generate", "--json", "--device", "cpu", *args), env=engine_env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, [protocol.decode(line) for line in done.stdout.splitlines()], done.stderr


def test_tokens_stream_before_the_result_and_add_up_to_it(tiny_model_dir, engine_argv, engine_env) -> None:
    code, messages, stderr = generate(engine_argv, engine_env, "--model", str(tiny_model_dir),
                                      "--prompt", "Is the kettle good?", "--max-new-tokens", "12")
    assert code == 0, stderr[-2000:]
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "hello" and kinds[-1] == "result"
    tokens = [m["text"] for m in messages if m["type"] == "token"]
    assert len(tokens) >= 2 and kinds.index("token") < kinds.index("result")
    result = messages[-1]["data"]
    assert "".join(tokens) == result["text"]
    assert 0 < result["tokens"] <= 12 and result["tokens_per_s"] > 0


def test_greedy_is_deterministic_and_sampling_follows_the_seed(tiny_model_dir, engine_argv, engine_env) -> None:
    def text(*extra: str) -> str:
        code, messages, stderr = generate(engine_argv, engine_env, "--model", str(tiny_model_dir),
                                          "--prompt", "hello", "--max-new-tokens", "10", *extra)
        assert code == 0, stderr[-2000:]
        return messages[-1]["data"]["text"]

    assert text() == text()
    assert text("--temperature", "1.5", "--seed", "3") == text("--temperature", "1.5", "--seed", "3")


def test_adapter_by_run_id_changes_the_answer(tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    train = subprocess.run(engine_argv("train", "--json", "--model", str(tiny_model_dir), "--device", "cpu",
                                       "--max-steps", "8", "--learning-rate", "0.02", "--max-length", "128",
                                       "--lora-dropout", "0"),
                           env=engine_env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    run_id = next(m for m in map(protocol.decode, train.stdout.splitlines()) if m["type"] == "result")["data"]["run_id"]
    prompt = ["--prompt", "This blender is loud.", "--max-new-tokens", "12"]
    base = generate(engine_argv, engine_env, "--model", str(tiny_model_dir), *prompt)[1][-1]["data"]["text"]
    code, messages, stderr = generate(engine_argv, engine_env, "--adapter", run_id, *prompt)
    assert code == 0, stderr[-2000:]
    assert any("system prompt the adapter was trained with" in m.get("message", "") for m in messages)
    assert messages[-1]["data"]["text"] != base


@pytest.mark.parametrize("args, code, words", [
    (["--adapter", "no-such-run"], protocol.ExitCode.NOT_FOUND, "adapter: 'no-such-run'"),
    (["--max-new-tokens", "0"], protocol.ExitCode.USAGE, "max_new_tokens"),
])
def test_bad_input_is_one_line(args, code, words, tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    status, messages, stderr = generate(engine_argv, engine_env, "--model", str(tiny_model_dir), "--prompt", "x", *args)
    assert status == code
    assert words in messages[-1]["message"] and "Traceback" not in stderr


def test_a_full_fine_tune_run_answers_by_its_run_id(tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    train = subprocess.run(engine_argv("train", "--json", "--model", str(tiny_model_dir), "--device", "cpu",
                                       "--method", "full", "--max-steps", "2", "--max-length", "128"),
                           env=engine_env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    result = next(m for m in map(protocol.decode, train.stdout.splitlines()) if m["type"] == "result")["data"]
    assert result["artifact_kind"] == "model" and Path(result["model"]).name == "model"
    code, messages, stderr = generate(engine_argv, engine_env, "--adapter", result["run_id"],
                                      "--prompt", "hello", "--max-new-tokens", "4")
    assert code == 0, stderr[-2000:]
    assert messages[-1]["type"] == "result"


def test_json_schema_makes_the_answer_follow_it_and_a_bad_file_is_one_line(tiny_model_dir, tmp_path, engine_argv,
                                                                            engine_env) -> None:
    import json

    schema = tmp_path / "answer.json"
    schema.write_text(json.dumps({"type": "object", "required": ["ok"], "additionalProperties": False,
                                  "properties": {"ok": {"type": "boolean"}}}), encoding="utf-8")
    code, messages, stderr = generate(engine_argv, engine_env, "--model", str(tiny_model_dir), "--prompt", "hi",
                                      "--max-new-tokens", "40", "--json-schema", str(schema))
    assert code == 0, stderr[-2000:]
    result = messages[-1]["data"]
    assert result["finish_reason"] == "stop" and set(json.loads(result["text"])) == {"ok"}
    schema.write_text('{"type": "object", "properties": {"ok": {"$ref": "#/nowhere"}}}', encoding="utf-8")
    code, messages, stderr = generate(engine_argv, engine_env, "--model", str(tiny_model_dir), "--prompt", "hi",
                                      "--json-schema", str(schema))
    assert code == protocol.ExitCode.INVALID_INPUT and "Traceback" not in stderr
    assert messages[-1]["message"] == (f"--json-schema {schema}: not a usable JSON Schema: "
                                       "Pointer '/nowhere' does not exist")
