"""`export`: a run's adapter merged into the base, as a Hugging Face folder and as a GGUF file
that transformers' own GGUF loader reads back with the same logits and the same tokenizer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.core import errors, protocol
from engine.export import model as export_model
from engine.runtime import gguf_writer as export_gguf
from engine.runtime import models

from .test_train import FakeJob

CHAT = "<|im_start|>user\nIs the kettle any good?<|im_end|>\n<|im_start|>assistant\n"


def run_engine(engine_argv, engine_env, *args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run(engine_argv(*args, "--json"), env=engine_env, capture_output=True, text=True,
                          timeout=300)
    return done.returncode, [protocol.decode(line) for line in done.stdout.splitlines()], done.stderr


def train(engine_argv, engine_env, model_dir: Path, *extra: str) -> str:
    code, messages, stderr = run_engine(engine_argv, engine_env, "train", "--model", str(model_dir), "--device",
                                        "cpu", "--max-steps", "4", "--learning-rate", "0.05", "--max-length",
                                        "128", "--lora-dropout", "0", *extra)
    assert code == 0, stderr[-2000:]
    return next(m for m in messages if m["type"] == "result")["data"]["run_id"]


def logits(model, tokenizer, text: str = CHAT):
    import torch

    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits[0]


def adapter_logits(model_dir: Path, run_dir: Path):
    """The reference: the base with the run's adapter attached by peft, unmerged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    plain = logits(base, tokenizer)
    tuned = PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval()
    return logits(tuned, tokenizer), plain, tokenizer


def test_a_runs_adapter_exports_merged_and_as_gguf_with_the_adapters_logits(
        tiny_model_dir, engine_argv, engine_env, workspace_home, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_id = train(engine_argv, engine_env, tiny_model_dir)
    run_dir = workspace_home / "runs" / run_id
    expected, plain, tokenizer = adapter_logits(tiny_model_dir, run_dir)
    assert (expected - plain).abs().max() > 1e-3  # the adapter changes the answer, so the test can tell

    code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, "--outtype", "f32")
    assert code == 0, stderr[-2000:]
    folder = Path(messages[-1]["data"]["path"])
    assert folder == run_dir / "exports" / f"{run_id}-f32-merged"
    assert (folder / export_model.INFO_FILE).is_file() and not list(folder.parent.glob(".*"))
    merged = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    assert not hasattr(merged, "peft_config")
    assert (logits(merged, tokenizer) - expected).abs().max() < 1e-4
    assert AutoTokenizer.from_pretrained(str(folder)).chat_template == tokenizer.chat_template

    sizes = {}
    for outtype, tolerance in (("f32", 1e-4), ("q8_0", 0.05)):
        target = tmp_path / "out dir" / f"tuned-{outtype}.gguf"
        code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, "--format", "gguf",
                                            "--outtype", outtype, "--out", str(target))
        assert code == 0, stderr[-2000:]
        progress = [m for m in messages if m["type"] == "progress" and m.get("unit") == "tensors"]
        assert progress and progress[-1]["current"] == progress[-1]["total"]
        sizes[outtype] = target.stat().st_size
        loaded = AutoModelForCausalLM.from_pretrained(str(target.parent), gguf_file=target.name).eval()
        gguf_tokenizer = AutoTokenizer.from_pretrained(str(target.parent), gguf_file=target.name)
        assert gguf_tokenizer(CHAT)["input_ids"] == tokenizer(CHAT, add_special_tokens=False)["input_ids"]
        assert gguf_tokenizer.chat_template == tokenizer.chat_template
        assert (logits(loaded, tokenizer) - expected).abs().max() < tolerance * expected.abs().max()
    assert sizes["q8_0"] < 0.5 * sizes["f32"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["tuned-f32.gguf", "tuned-q8_0.gguf"]


def test_exports_refuse_in_one_line(tiny_model_dir, engine_argv, engine_env, workspace_home, tmp_path) -> None:
    run_id = train(engine_argv, engine_env, tiny_model_dir, "--max-steps", "1")
    keep = tmp_path / "my folder"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine", encoding="utf-8")
    blocker = tmp_path / "a file"
    blocker.write_text("", encoding="utf-8")
    cases = [
        (["--outtype", "q8_0"], protocol.ExitCode.USAGE, "outtype: merged export writes f16, bf16, f32"),
        (["--format", "gguf", "--out", str(blocker / "x.gguf")], protocol.ExitCode.INVALID_INPUT,
         f"out: cannot create {blocker}"),
        (["--out", str(keep)], protocol.ExitCode.INVALID_INPUT, "already exists (add --force"),
        (["--out", str(keep), "--force"], protocol.ExitCode.INVALID_INPUT, "is not an earlier Tunebench export"),
    ]
    for args, expected_code, words in cases:
        code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, *args)
        assert code == expected_code and words in messages[-1]["message"], (args, messages[-1])
        assert "Traceback" not in stderr
    assert (keep / "notes.txt").read_text(encoding="utf-8") == "mine"  # a wrong --out deletes nothing

    code, messages, _ = run_engine(engine_argv, engine_env, "export", "no-such-run")
    assert code == protocol.ExitCode.NOT_FOUND
    assert messages[-1]["message"].startswith("run: 'no-such-run' is not an adapter folder, a run folder")
    prompt_run = train(engine_argv, engine_env, tiny_model_dir, "--max-steps", "1", "--method", "prompt_tuning")
    code, messages, _ = run_engine(engine_argv, engine_env, "export", prompt_run)
    assert code == protocol.ExitCode.INVALID_INPUT and "nothing to merge" in messages[-1]["message"]


def test_a_cancelled_gguf_export_leaves_nothing(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    job = FakeJob()
    job.control.cancelled.set()
    target = tmp_path / "x.gguf"
    with pytest.raises(export_model.Cancelled):
        export_model.write_gguf(model, tokenizer, target, "f16", "x", None, job)
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_midway_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch) -> None:
    import argparse

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "my-run" / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                   LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(str(adapter))

    def disk_full(model, tokenizer_dir, target, *args, **kwargs):
        Path(target).write_bytes(b"GGUF partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_gguf, "write", disk_full)
    target = tmp_path / "out" / "x.gguf"
    args = argparse.Namespace(run=str(adapter), model=str(tiny_model_dir), format="gguf", outtype="f16",
                              out=str(target), force=False, check=False)
    with pytest.raises(errors.EngineError) as caught:
        export_model.cmd_export(args, FakeJob())
    assert caught.value.code == protocol.ExitCode.FAILED
    assert caught.value.message == f"out: could not write {target}: disk full; nothing was left half-written"
    assert list(target.parent.iterdir()) == []


def test_a_base_that_came_from_gguf_keeps_that_files_tokenizer_fields(tiny_model_dir, tmp_path) -> None:
    """The bundled model's pre-tokenizer name ("smollm") is what llama.cpp needs to split text
    as SmolLM2 was trained; it is copied, not guessed."""
    import gguf
    from transformers import AutoModelForCausalLM

    source = models.bundled_gguf()
    target = tmp_path / "copy.gguf"
    export_gguf.write(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tiny_model_dir, target, "f16",
                      "x", source_gguf=source)
    original, copied = gguf.GGUFReader(str(source)), gguf.GGUFReader(str(target))
    keys = [key for key in original.fields if key.startswith("tokenizer.")]
    assert "tokenizer.ggml.pre" in keys and copied.fields["tokenizer.ggml.pre"].contents() == "smollm"
    for key in keys:
        assert copied.fields[key].contents() == original.fields[key].contents(), key


@pytest.mark.parametrize("config, words", [
    (SimpleNamespace(model_type="qwen2"), "supports Llama-family models"),
    (SimpleNamespace(model_type="llama", rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}),
     "'llama3' rope scaling"),
    (SimpleNamespace(model_type="llama", attention_bias=True), "biases"),
])
def test_models_the_gguf_layout_cannot_describe_are_refused(config, words) -> None:
    with pytest.raises(errors.EngineError) as caught:
        export_gguf.check_exportable(config)
    assert words in str(caught.value)
