"""The K-quants (engine/export/kquants.py): written by llama.cpp's own quantizer where
llama-cpp-python is installed, read back and round-trip checked like every other GGUF type;
refused in one line, before any model loads, where it is not."""

from __future__ import annotations

import argparse

import pytest

from engine.core import errors, protocol
from engine.export import kquants
from engine.export import model as export_model

from .test_export_roundtrip import random_adapter
from .test_train import FakeJob


def export_args(adapter, model_dir, target, outtype: str) -> argparse.Namespace:
    return argparse.Namespace(run=str(adapter), model=str(model_dir), format="gguf", outtype=outtype,
                              out=str(target), force=False, check=True)


def test_without_llama_cpp_the_k_quants_are_refused_before_loading(tiny_model_dir, tmp_path, monkeypatch) -> None:
    adapter = random_adapter(tiny_model_dir, tmp_path)
    monkeypatch.setattr(kquants, "available", lambda: False)
    monkeypatch.setattr(export_model.generate, "load", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(errors.EngineError) as caught:
        export_model.cmd_export(export_args(adapter, tiny_model_dir, tmp_path / "x.gguf", "q4_k_m"), FakeJob())
    assert caught.value.code == protocol.ExitCode.MISSING_DEPENDENCY
    assert caught.value.message == ("outtype: q4_k_m needs llama.cpp's quantizer (llama-cpp-python, which setup "
                                    "installs); q8_0, q5_0 and q4_0 need nothing")


@pytest.mark.parametrize("outtype", sorted(kquants.FTYPES))
def test_each_k_quant_is_written_by_llama_cpp_and_round_trips(outtype, tiny_model_dir, tmp_path) -> None:
    pytest.importorskip("llama_cpp", reason="the K-quants need llama-cpp-python")
    import gguf

    adapter = random_adapter(tiny_model_dir, tmp_path)
    target = tmp_path / f"tuned-{outtype}.gguf"
    job = FakeJob()
    assert export_model.cmd_export(export_args(adapter, tiny_model_dir, target, outtype), job) == protocol.ExitCode.OK
    report = next(m for m in job.messages() if m["type"] == "result")["data"]["roundtrip"]
    assert report["passed"] and "first 3 tokens" in report["rule"], report
    file_type = gguf.GGUFReader(str(target)).fields["general.file_type"].contents()
    assert file_type == kquants.FTYPES[outtype]  # written by llama.cpp's quantizer, not the F16 staging file
    assert not list(tmp_path.glob("*.f16")) and not list(tmp_path.glob(".*partial*"))
