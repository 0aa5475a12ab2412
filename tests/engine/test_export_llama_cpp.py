"""Exports read back by llama.cpp itself (engine/export/readback.py), where llama-cpp-python is
installed: a trained run's merged GGUF files and its adapter as a GGUF LoRA over the base's GGUF
give the adapter's greedy answers in llama.cpp. Skipped, saying so, where it is not installed
(it builds from source: see the README). Without it the same checks run through transformers,
also tested here by hiding it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.core import protocol
from engine.export import model as export_model
from engine.export import readback
from engine.runtime import gguf_writer as export_gguf

from .test_export_model import run_engine, train
from .test_train import FakeJob

needs_llama_cpp = pytest.mark.skipif(not readback.llama_cpp_installed(),
                                     reason="llama-cpp-python is not installed (bootstrap.py setup builds it)")


def export(engine_argv, engine_env, run_id: str, *flags: str) -> dict:
    code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, *flags)
    assert code == 0, stderr[-2000:]
    return messages[-1]["data"]


@needs_llama_cpp
def test_a_runs_gguf_files_answer_like_the_adapter_in_llama_cpp(tiny_model_dir, engine_argv, engine_env,
                                                                workspace_home, tmp_path) -> None:
    run_id = train(engine_argv, engine_env, tiny_model_dir, "--sample-count", "2")
    for outtype in ("f32", "q8_0", "q4_k_m"):
        result = export(engine_argv, engine_env, run_id, "--format", "gguf", "--outtype", outtype,
                        "--out", str(tmp_path / f"{outtype}.gguf"))
        report = result["roundtrip"]
        assert report["loader"] == "llama.cpp" and report["passed"], report
        assert ("same greedy text" in report["rule"]) == (outtype == "f32")


@needs_llama_cpp
def test_an_adapter_file_over_the_bases_gguf_answers_like_the_adapter_in_llama_cpp(
        tiny_model_dir, engine_argv, engine_env, workspace_home, tmp_path) -> None:
    """A base that came from a GGUF file (here the tiny model written as F32 GGUF): llama.cpp
    runs the base with the adapter's --lora file and must give the adapter's exact text; the
    result names the user's base file for llama-cli."""
    from transformers import AutoModelForCausalLM

    base_gguf = tmp_path / "tiny-base.gguf"
    export_gguf.write(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tiny_model_dir, base_gguf, "f32",
                      "tiny")
    run_id = train(engine_argv, engine_env, base_gguf, "--sample-count", "2")
    result = export(engine_argv, engine_env, run_id, "--format", "gguf-lora", "--outtype", "f32")
    report = result["roundtrip"]
    assert report["loader"] == "llama.cpp" and report["passed"], report
    assert "same greedy text" in report["rule"] and result["base_gguf"] == str(base_gguf)
    assert result["llama_cpp_command"] == f'llama-cli -m "{base_gguf}" --lora "{result["path"]}"'


def test_without_llama_cpp_the_check_reads_the_file_with_transformers(tiny_model_dir, tmp_path,
                                                                      monkeypatch) -> None:
    from .test_export_roundtrip import random_adapter

    monkeypatch.setattr(readback, "llama_cpp_installed", lambda: False)
    adapter = random_adapter(tiny_model_dir, tmp_path)
    job = FakeJob()
    args = argparse.Namespace(run=str(adapter), model=str(tiny_model_dir), format="gguf", outtype="f16",
                              out=str(tmp_path / "x.gguf"), force=False, check=True)
    assert export_model.cmd_export(args, job) == protocol.ExitCode.OK
    report = next(m for m in job.messages() if m["type"] == "result")["data"]["roundtrip"]
    assert report["loader"] == "transformers" and report["passed"], report
    assert Path(tmp_path / "x.gguf").is_file()
