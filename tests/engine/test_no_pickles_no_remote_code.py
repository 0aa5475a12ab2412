"""No pickles and no remote code (issue 19, README "What Tunebench guarantees").

A run folder, a model folder or an adapter folder may come from anywhere. Loading one must never
run code it carries: a pickled object in a checkpoint's rng_state.pth / optimizer.pt /
scheduler.pt or in a model's *.bin weights is refused with one line naming the file before any
library reads it (and the libraries load with torch's weights_only unpickler anyway), and a
model folder's own Python code (config.json's auto_map) is never imported."""

from __future__ import annotations

import ast
import inspect
import json
import pickle
import shutil
from pathlib import Path

import pytest

from engine import cli
from engine.core import protocol, workspace
from engine.core.errors import EngineError

from .test_train import FakeJob

REPO = Path(__file__).resolve().parents[2]


class WritesMarker:
    """Unpickling this object opens (creates) the marker file: the code a hostile pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def hostile_torch_file(path: Path, marker: Path) -> None:
    import torch

    torch.save({"python": WritesMarker(marker), "cpu": torch.zeros(2)}, path)


def resumable_run_with(checkpoint_file: str, marker: Path, raw_pickle: bool = False) -> workspace.RunFolder:
    """A stopped run whose last complete checkpoint holds ``checkpoint_file`` as a hostile pickle."""
    run = workspace.create_run("stopped")
    run.update_info(id=run.id, status="cancelled")
    run.config_toml.write_text("[train]\nmax_steps = 8\n", encoding="utf-8")
    checkpoint = run.checkpoints / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4}), encoding="utf-8")
    if raw_pickle:  # a plain pickle.dump, not even a torch.save file
        (checkpoint / checkpoint_file).write_bytes(pickle.dumps({"python": WritesMarker(marker)}))
    else:
        hostile_torch_file(checkpoint / checkpoint_file, marker)
    return run


@pytest.mark.parametrize("name, raw", [("rng_state.pth", False), ("optimizer.pt", False),
                                       ("scheduler.pt", False), ("rng_state.pth", True)])
def test_a_checkpoint_holding_a_pickled_object_is_refused_and_never_run(name, raw, workspace_home,
                                                                        tmp_path) -> None:
    from engine.train import run as train

    marker = tmp_path / "pwned"
    run = resumable_run_with(name, marker, raw_pickle=raw)
    with pytest.raises(EngineError) as caught:
        train.cmd_train(cli.build_parser().parse_args(["train", "--resume", run.id]), FakeJob())
    message = caught.value.message
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert "\n" not in message and f"checkpoint-4/{name}" in message, message
    assert "pickle" in message
    assert not marker.exists()
    assert run.info()["status"] == "cancelled"  # refused before the run was touched


def test_a_real_checkpoint_passes_the_pickle_check(tiny_model_dir, workspace_home) -> None:
    """The check refuses objects, not what the Trainer itself saves (numpy RNG state included)."""
    from engine.runtime import pickles

    from .test_train_resume import CancelAtStep, new_run_args, run_train

    code, run = run_train(CancelAtStep(2), *new_run_args(tiny_model_dir, max_steps=4, save_steps=2))
    assert code == protocol.ExitCode.CANCELLED
    checkpoint = run.last_checkpoint()
    assert checkpoint is not None
    names = {file.name for file in pickles.pickled_files(checkpoint)}
    assert {"rng_state.pth", "optimizer.pt", "scheduler.pt"} <= names
    pickles.check_folder(checkpoint, "resume")


def test_the_libraries_load_checkpoints_with_the_weights_only_unpickler() -> None:
    """The second line of defence: every torch.load on the resume path (transformers' Trainer
    and its helpers, PEFT's adapter loader) passes weights_only=True. A library upgrade that
    drops it fails here."""
    import peft.utils.save_and_load as peft_io
    import transformers.trainer as trainer
    import transformers.trainer_utils as trainer_utils

    calls = [(module.__name__, node) for module in (trainer, trainer_utils)
             for node in ast.walk(ast.parse(inspect.getsource(module))) if isinstance(node, ast.Call)
             and "torch.load" in (ast.unparse(node.func), *map(ast.unparse, node.args[:1]))]  # or partial(torch.load,
    assert len(calls) > 5
    for name, call in calls:
        weights_only = [k.value for k in call.keywords if k.arg == "weights_only"]
        assert len(weights_only) == 1 and isinstance(weights_only[0], ast.Constant) \
            and weights_only[0].value is True, (name, call.lineno, ast.unparse(call))
    assert inspect.signature(peft_io.torch_load).parameters["weights_only"].default is True


def test_a_model_folder_with_pickled_weights_holding_an_object_is_refused(tiny_model_dir, workspace_home,
                                                                         tmp_path) -> None:
    from engine.runtime import models

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "pwned"
    hostile_torch_file(folder / "pytorch_model.bin", marker)
    with pytest.raises(EngineError) as caught:
        models.resolve(str(folder))
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert "\n" not in caught.value.message and "pytorch_model.bin" in caught.value.message
    assert not marker.exists()


CUSTOM_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def folder_with_custom_code(tiny_model_dir: Path, tmp_path: Path, model_type: str) -> tuple[Path, Path]:
    """The tiny model with its own configuration/modeling modules named in auto_map; importing
    either writes the marker."""
    folder, marker = tmp_path / f"custom-{model_type}", tmp_path / f"ran-{model_type}"
    shutil.copytree(tiny_model_dir, folder)
    for module in ("configuration_custom", "modeling_custom", "tokenization_custom"):
        (folder / f"{module}.py").write_text(CUSTOM_CODE.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig",
                          "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder, marker


def test_a_model_needing_its_own_code_is_refused_and_its_code_never_runs(tiny_model_dir, workspace_home,
                                                                        tmp_path) -> None:
    from engine.infer import generate

    folder, marker = folder_with_custom_code(tiny_model_dir, tmp_path, "custom-arch")
    args = cli.build_parser().parse_args(["generate", "--model", str(folder), "--prompt", "hi",
                                          "--max-new-tokens", "2", "--device", "cpu"])
    with pytest.raises(EngineError) as caught:
        generate.cmd_generate(args, FakeJob())
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert "\n" not in caught.value.message and "config.json" in caught.value.message
    assert "auto_map" in caught.value.message
    assert not marker.exists()

    # A tokenizer that names its own class: the same.
    tokenizer_folder = tmp_path / "custom-tokenizer"
    shutil.copytree(tiny_model_dir, tokenizer_folder)
    tokenizer_config = json.loads((tokenizer_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.update(tokenizer_class="CustomTokenizer",
                            auto_map={"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]})
    (tokenizer_folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    (tokenizer_folder / "tokenization_custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)),
                                                             encoding="utf-8")
    args.model = str(tokenizer_folder)
    with pytest.raises(EngineError) as caught:
        generate.cmd_generate(args, FakeJob())
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT and "tokenizer_config.json" in caught.value.message
    assert not marker.exists()


def test_a_built_in_architecture_ignores_the_folders_code(tiny_model_dir, workspace_home, tmp_path) -> None:
    """A llama folder that also ships auto_map code loads with transformers' own class: the
    folder's modules are never imported."""
    from engine.infer import generate

    folder, marker = folder_with_custom_code(tiny_model_dir, tmp_path, "llama")
    job = FakeJob()
    args = cli.build_parser().parse_args(["generate", "--model", str(folder), "--prompt", "hi",
                                          "--max-new-tokens", "2", "--device", "cpu"])
    assert generate.cmd_generate(args, job) == protocol.ExitCode.OK
    assert not marker.exists()


def test_the_engine_never_asks_for_remote_code() -> None:
    """No engine module passes trust_remote_code, as a keyword or a key of keyword arguments
    (there is no setting that would); the only mentions are the docstrings saying so."""
    for file in sorted((REPO / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            assert not (isinstance(node, ast.keyword) and node.arg == "trust_remote_code"), (file, node.lineno)
            assert not (isinstance(node, ast.Dict) and any(
                isinstance(key, ast.Constant) and key.value == "trust_remote_code" for key in node.keys)), file
