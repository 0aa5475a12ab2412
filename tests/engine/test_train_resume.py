"""Runs that survive a stop: `train --resume` continues a cancelled run in its own folder and
ends where an uninterrupted run ends; `--continue-from` starts a new run from a finished
adapter. In-process (cmd_train is exactly what the CLI calls) to keep the tiny runs fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import cli
from engine.core import protocol, workspace
from engine.core.errors import EngineError

from .test_train import FakeJob

STEPS = dict(max_steps=8, save_steps=4, batch_size=4, learning_rate=5e-3, lr_scheduler="cosine",
             lora_r=8, lora_alpha=16, lora_dropout=0.0, max_length=128, device="cpu", seed=7)


def train_args(*extra: str):
    return cli.build_parser().parse_args(["train", *extra])


def new_run_args(model_dir: Path, **overrides) -> list[str]:
    values = {**STEPS, **overrides}
    return ["--model", str(model_dir), "--dataset", "sample",
            *[f"--{k.replace('_', '-')}={v}" for k, v in values.items()]]


class CancelAtStep(FakeJob):
    """Cancels the way the window does (the control flag), as step ``step`` ends."""

    def __init__(self, step: int) -> None:
        super().__init__()
        send = self.channel.send

        def send_and_cancel(message: dict) -> None:
            send(message)
            if message["type"] == protocol.PROGRESS and message.get("stage") == "train" \
                    and message["current"] == step:
                self.control.cancelled.set()

        self.channel.send = send_and_cancel


def run_train(job: FakeJob, *argv: str) -> tuple[int, workspace.RunFolder]:
    from engine.train import run as train

    code = train.cmd_train(train_args(*argv), job)
    result = next(m["data"] for m in job.messages() if m["type"] == "result")
    return code, workspace.RunFolder(Path(result["run_dir"]))


def losses(messages) -> dict[int, float]:
    return {m["step"]: m["values"]["loss"] for m in messages
            if m["type"] == "metrics" and "loss" in m["values"]}


def test_resumed_run_continues_the_curve_and_ends_at_the_uninterrupted_loss(
        tiny_model_dir, workspace_home) -> None:
    code, _ = run_train(whole := FakeJob(), *new_run_args(tiny_model_dir))
    assert code == protocol.ExitCode.OK

    code, run = run_train(CancelAtStep(4), *new_run_args(tiny_model_dir))
    assert code == protocol.ExitCode.CANCELLED and run.info()["status"] == "cancelled"
    assert (run.checkpoints / "checkpoint-4" / "trainer_state.json").is_file()

    code, resumed = run_train(FakeJob(), "--resume", str(run.path))
    assert code == protocol.ExitCode.OK and resumed.path == run.path
    info = run.info()
    assert info["status"] == "finished" and info["resumed_from"] == [4] and info["steps"] == 8

    # The event log holds both processes: the curve goes 1..8 with no gap or repeat.
    recorded = list(run.read_events())
    run_dirs = [m for m in recorded if m["type"] == "artifact" and m["kind"] == "run_dir"]
    assert len(run_dirs) == 2 and run_dirs[1]["resumed_from"] == 4
    steps = [m["step"] for m in recorded if m["type"] == "metrics" and "loss" in m["values"]]
    assert steps == list(range(1, 9))
    expected, got = losses(whole.messages()), losses(recorded)
    assert all(abs(expected[s] - got[s]) < 1e-4 for s in range(1, 9)), (expected, got)

    # A finished run is not resumed; training it further is a new run.
    with pytest.raises(EngineError) as caught:
        run_train(FakeJob(), "--resume", run.id)
    assert caught.value.code == protocol.ExitCode.USAGE and "already finished; use continue" in caught.value.message

    code, continued = run_train(FakeJob(), "--continue-from", run.id, "--max-steps", "2", "--save-steps", "2")
    assert code == protocol.ExitCode.OK and continued.path != run.path
    assert continued.info()["continued_from"] == run.id
    first = losses(list(continued.read_events()))[1]
    # The continued adapter starts where the first run ended, well below a fresh start.
    assert first < expected[1] - 0.05 and abs(first - expected[8]) < abs(first - expected[1])


def test_a_checkpoint_cut_off_mid_save_is_never_resumed_from(tiny_model_dir, workspace_home) -> None:
    """The Trainer writes checkpoint-N in place, trainer_state.json last (with a plain write):
    a SIGKILL mid-save leaves a folder without it, or with it empty or cut short. Neither the
    window (last_checkpoint) nor `train --resume` may take such a folder; the resume takes the
    previous complete checkpoint and deletes the cut-off ones before writing them again."""
    import shutil

    code, run = run_train(CancelAtStep(4), *new_run_args(tiny_model_dir, save_steps=2))
    assert code == protocol.ExitCode.CANCELLED
    complete = run.checkpoints / "checkpoint-4"
    assert run.last_checkpoint() == complete
    state = (complete / "trainer_state.json").read_text(encoding="utf-8")
    # Cut off while writing trainer_state.json: every other file is there.
    shutil.copytree(complete, torn := run.checkpoints / "checkpoint-6")
    (torn / "trainer_state.json").write_text(state[: len(state) // 2], encoding="utf-8")
    # Cut off between open() and write(): an empty trainer_state.json.
    shutil.copytree(complete, empty := run.checkpoints / "checkpoint-8")
    (empty / "trainer_state.json").write_text("", encoding="utf-8")
    # Cut off before it: the weights only.
    (bare := run.checkpoints / "checkpoint-10").mkdir()
    shutil.copy(complete / "adapter_model.safetensors", bare)
    # A folder whose state names another step was not written as this checkpoint.
    shutil.copytree(complete, renamed := run.checkpoints / "checkpoint-12")
    for folder in (torn, empty, bare, renamed):
        assert not workspace.checkpoint_complete(folder), folder.name
    assert run.last_checkpoint() == complete

    code, resumed = run_train(FakeJob(), "--resume", str(run.path))
    assert code == protocol.ExitCode.OK and resumed.info()["resumed_from"] == [4]
    assert not bare.exists() and not renamed.exists()
    for step in (6, 8):  # written again by the resumed run, complete this time
        assert workspace.checkpoint_complete(run.checkpoints / f"checkpoint-{step}")
    steps = [m["step"] for m in run.read_events() if m["type"] == "metrics" and "loss" in m["values"]]
    assert steps == list(range(1, 9)) and run.info()["status"] == "finished"


def test_resume_without_a_checkpoint_is_not_found(workspace_home) -> None:
    run = workspace.create_run("stopped")
    run.update_info(id=run.id, status="cancelled")
    run.config_toml.write_text("[train]\nmax_steps = 8\n", encoding="utf-8")
    (run.checkpoints / "checkpoint-3").mkdir(parents=True)  # cut off mid-save: no trainer_state.json
    from engine.train import run as train

    with pytest.raises(EngineError) as caught:
        train.cmd_train(train_args("--resume", run.id), FakeJob())
    assert caught.value.code == protocol.ExitCode.NOT_FOUND and "no complete checkpoint" in caught.value.message
    with pytest.raises(EngineError) as caught:
        train.cmd_train(train_args("--resume", "no-such-run"), FakeJob())
    assert caught.value.code == protocol.ExitCode.NOT_FOUND


def test_resume_refuses_settings_other_than_the_length(engine_argv, engine_env, workspace_home) -> None:
    import subprocess

    done = subprocess.run(engine_argv("train", "--json", "--resume", "some-run", "--learning-rate", "0.1"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE
    errors = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error"]
    assert len(errors) == 1 and "--learning-rate" in errors[0]["message"]
    assert "Traceback" not in done.stderr
