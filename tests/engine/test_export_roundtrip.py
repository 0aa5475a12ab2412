"""The round-trip check every export ends with (engine/export/roundtrip.py): each GGUF type in
the menu is written, read back and answers the run's sample prompts like the adapter; an export
whose chat template lost its end-of-turn fails, naming that cause."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.core import errors, protocol
from engine.export import model as export_model
from engine.export import readback, roundtrip

from .test_export_model import run_engine, train
from .test_train import FakeJob


def random_adapter(model_dir: Path, tmp_path: Path) -> Path:
    """A LoRA adapter outside any run (so the check answers its two neutral prompts)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "my-run" / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(model_dir)),
                   LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(str(adapter))
    return adapter


def test_every_gguf_type_in_the_menu_round_trips(tiny_model_dir, engine_argv, engine_env, workspace_home,
                                                 tmp_path) -> None:
    run_id = train(engine_argv, engine_env, tiny_model_dir, "--sample-count", "2", "--save-steps", "2")
    sizes = {}
    for outtype in ("f32", "f16", "q8_0", "q5_0", "q4_0"):
        target = tmp_path / f"tuned-{outtype}.gguf"
        code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, "--format", "gguf",
                                            "--outtype", outtype, "--out", str(target))
        assert code == 0, stderr[-2000:]
        report = messages[-1]["data"]["roundtrip"]
        assert report["passed"] and report["prompts"] == 2 and report["differing"] == [], report
        assert ("same greedy text" in report["rule"]) == (outtype in readback.EXACT_TYPES[report["loader"]])
        sizes[outtype] = target.stat().st_size
    assert sizes["q4_0"] < sizes["q5_0"] < sizes["q8_0"] < sizes["f16"] < sizes["f32"]


def test_an_export_whose_template_lost_its_end_of_turn_fails_naming_the_cause(tiny_model_dir, tmp_path,
                                                                              monkeypatch) -> None:
    import gguf

    adapter = random_adapter(tiny_model_dir, tmp_path)
    original = gguf.SpecialVocab.add_to_gguf

    def without_end_of_turn(self, writer, quiet=False):
        self.chat_template = self.chat_template.replace("<|im_end|>", "")
        return original(self, writer, quiet=quiet)

    monkeypatch.setattr(gguf.SpecialVocab, "add_to_gguf", without_end_of_turn)
    target = tmp_path / "out" / "broken.gguf"
    args = argparse.Namespace(run=str(adapter), model=str(tiny_model_dir), format="gguf", outtype="f32",
                              out=str(target), force=False, check=True)
    with pytest.raises(errors.EngineError) as caught:
        export_model.cmd_export(args, FakeJob())
    assert caught.value.code == protocol.ExitCode.FAILED
    message = caught.value.message
    assert "\n" not in message and f"{target} was written, but its round-trip check failed" in message
    assert "chat template renders prompts differently" in message and "<|im_end|>" in message
    assert target.is_file()  # kept, so the user can look at it


def test_no_check_skips_the_round_trip(tiny_model_dir, tmp_path) -> None:
    adapter = random_adapter(tiny_model_dir, tmp_path)
    job = FakeJob()
    args = argparse.Namespace(run=str(adapter), model=str(tiny_model_dir), format="gguf", outtype="q4_0",
                              out=str(tmp_path / "x.gguf"), force=False, check=False)
    assert export_model.cmd_export(args, job) == protocol.ExitCode.OK
    result = next(m for m in job.messages() if m["type"] == "result")
    assert result["data"]["roundtrip"] is None


@pytest.mark.parametrize(("want", "have", "exact", "why"), [
    (roundtrip.Answer([1, 2, 3, 4], "abcd", True), roundtrip.Answer([1, 2, 3, 4], "abcd", True), True, ""),
    (roundtrip.Answer([1, 2, 3, 4], "abcd", True), roundtrip.Answer([1, 2, 3, 5], "abce", True), True,
     "'abce' instead of 'abcd'"),
    (roundtrip.Answer([1, 2, 3, 4], "abcd", True), roundtrip.Answer([1, 2, 3, 5], "abce", True), False, ""),
    (roundtrip.Answer([1, 2, 3, 4], "abcd", True), roundtrip.Answer([1, 9, 3], "a?c", True), False,
     "it opens 'a?c' instead of 'abcd'"),
    (roundtrip.Answer([1, 2, 3, 4], "abcd", True), roundtrip.Answer([1, 2, 3, 4, 5, 6], "abcdef", False), False,
     "no end-of-turn within 48 tokens (the adapter ended its answer): the export rambles"),
    (roundtrip.Answer([1, 2, 3, 4], "abcd", False), roundtrip.Answer([1, 2, 3, 7], "abcx", False), False, ""),
])
def test_the_rule_for_exact_and_rounded_exports(want, have, exact, why) -> None:
    assert roundtrip._difference(want, have, exact) == why
