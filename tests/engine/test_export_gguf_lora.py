"""`export --format gguf-lora` (engine/runtime/gguf_lora.py): the adapter alone as llama.cpp's GGUF
LoRA file. The file is checked against llama.cpp's own rule in GGUF space (base tensor + alpha /
rank * lora_b @ lora_a equals the merged export's tensor), and the round-trip check answers like
the adapter; adapters the format cannot hold are refused in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.core import errors, protocol
from engine.export import model as export_model
from engine.export import readback
from engine.runtime import gguf_lora
from engine.runtime import gguf_writer as export_gguf

from .test_export_model import run_engine, train
from .test_train import FakeJob

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def strong_adapter(model_dir: Path, tmp_path: Path, **lora: object) -> Path:
    """A LoRA on every Linear with random A and B (peft's init leaves B at zero, which would hide
    a wrong row order) and a scale large enough to change the greedy answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ALL_LINEAR, "init_lora_weights": False, **lora}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(model_dir)), LoraConfig(**settings))
    adapter = tmp_path / "my-run" / "adapter"
    model.save_pretrained(str(adapter))
    return adapter


def export(adapter: Path, model_dir: Path, target: Path, fmt: str = "gguf-lora", outtype: str = "f32",
           check: bool = True, job: FakeJob | None = None) -> dict:
    job = job or FakeJob()
    args = argparse.Namespace(run=str(adapter), model=str(model_dir), format=fmt, outtype=outtype,
                              out=str(target), force=False, check=check)
    assert export_model.cmd_export(args, job) == protocol.ExitCode.OK
    return next(m for m in job.messages() if m["type"] == "result")["data"]


def gguf_tensors(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}


def test_the_file_follows_llama_cpps_rule_in_gguf_space(tiny_model_dir, tmp_path) -> None:
    """llama.cpp adds alpha / rank * lora_b @ lora_a to the base GGUF tensor as stored (q/k rows
    in its rotary order). Computed that way, no reorder of ours undone, the sum must equal the
    merged GGUF export's tensor: a wrong row order, name, transpose or scale breaks it."""
    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM

    adapter = strong_adapter(tiny_model_dir, tmp_path)
    lora_file = tmp_path / "adapter.gguf"
    export(adapter, tiny_model_dir, lora_file, check=False)
    merged_file = tmp_path / "merged.gguf"
    export(adapter, tiny_model_dir, merged_file, fmt="gguf", check=False)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    base_tensors = {name: data for name, data, _ in export_gguf._tensors(base, "f32")}
    lora, merged = gguf_tensors(lora_file), gguf_tensors(merged_file)
    reader = gguf.GGUFReader(str(lora_file))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    alpha = reader.fields["adapter.lora.alpha"].contents()
    assert alpha == pytest.approx(8.0)
    adapted = sorted(name.removesuffix(".lora_a") for name in lora if name.endswith(".lora_a"))
    assert len(adapted) == 2 * len(ALL_LINEAR) and "blk.1.attn_k.weight" in adapted
    for name in adapted:
        a, b = lora[f"{name}.lora_a"], lora[f"{name}.lora_b"]
        rows, columns = base_tensors[name].shape
        assert a.shape == (4, columns) and b.shape == (rows, 4)  # llama.cpp's shape checks
        np.testing.assert_allclose(base_tensors[name] + alpha / 4 * b @ a, merged[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_each_type_round_trips(outtype, tiny_model_dir, tmp_path) -> None:
    adapter = strong_adapter(tiny_model_dir, tmp_path)
    result = export(adapter, tiny_model_dir, tmp_path / f"a-{outtype}.gguf", outtype=outtype)
    report = result["roundtrip"]
    assert report["passed"] and report["differing"] == [], report
    assert ("same greedy text" in report["rule"]) == (outtype in readback.EXACT_TYPES[report["loader"]])
    assert result["llama_cpp_command"].endswith(f'--lora "{tmp_path / f"a-{outtype}.gguf"}"')


def test_a_wrong_row_order_fails_the_round_trip(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """The check reads q/k rows back with transformers' reorder, so a file whose lora_b of q and
    k kept Hugging Face's order gives other answers, and the export says so."""
    adapter = strong_adapter(tiny_model_dir, tmp_path)
    monkeypatch.setattr(gguf_lora, "_rotary_rows", lambda pair, config: pair.b)
    with pytest.raises(errors.EngineError) as caught:
        export(adapter, tiny_model_dir, tmp_path / "wrong.gguf")
    assert caught.value.code == protocol.ExitCode.FAILED
    assert "round-trip check failed" in caught.value.message and "answers differ" in caught.value.message


def test_rank_stabilised_lora_keeps_its_scale(tiny_model_dir, tmp_path) -> None:
    """rsLoRA scales by alpha / sqrt(rank); the file's alpha is chosen so llama.cpp's alpha / rank
    gives the same scale."""
    import gguf

    adapter = strong_adapter(tiny_model_dir, tmp_path, use_rslora=True)
    target = tmp_path / "rs.gguf"
    assert export(adapter, tiny_model_dir, target)["roundtrip"]["passed"]
    assert gguf.GGUFReader(str(target)).fields["adapter.lora.alpha"].contents() == pytest.approx(8 / 2 * 4)


@pytest.mark.parametrize(("lora", "says"), [
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "lm_head in full"),
])
def test_adapters_the_format_cannot_hold_are_refused(lora, says, tiny_model_dir, tmp_path) -> None:
    adapter = strong_adapter(tiny_model_dir, tmp_path, **lora)
    target = tmp_path / "x.gguf"
    with pytest.raises(errors.EngineError) as caught:
        export(adapter, tiny_model_dir, target)
    message = caught.value.message
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT and "\n" not in message
    assert says in message and "--format gguf (merged)" in message
    assert not target.exists()


def test_ollama_and_lm_studio_are_refused_with_the_adapter_alone(tiny_model_dir, tmp_path) -> None:
    adapter = strong_adapter(tiny_model_dir, tmp_path)
    args = argparse.Namespace(run=str(adapter), model=str(tiny_model_dir), format="gguf-lora", outtype=None,
                              out=None, force=False, check=True, ollama=True)
    with pytest.raises(errors.EngineError) as caught:
        export_model.cmd_export(args, FakeJob())
    assert caught.value.code == protocol.ExitCode.USAGE and "drop --format gguf-lora" in caught.value.message


def test_a_trained_run_exports_its_adapter_from_the_command_line(tiny_model_dir, engine_argv, engine_env,
                                                                 workspace_home) -> None:
    run_id = train(engine_argv, engine_env, tiny_model_dir, "--sample-count", "2")
    code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, "--format", "gguf-lora")
    assert code == 0, stderr[-2000:]
    result = messages[-1]["data"]
    assert result["roundtrip"]["passed"] and result["format"] == "gguf-lora"
    assert Path(result["path"]).name == f"{run_id}-f16-lora.gguf" and Path(result["path"]).parent.name == "exports"
    assert result["base_gguf"] is None and "BASE.gguf" in result["llama_cpp_command"]
