"""Cancel without the window's pipe: a ``cancel.request`` file in the run folder stops the run."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from pathlib import Path

from engine.core import protocol, workspace
from engine.core.channel import Channel
from engine.core.control import Control

FAST = dict(max_steps=500, batch_size=4, learning_rate=5e-3, lr_scheduler="constant", lora_r=8,
            lora_alpha=16, lora_dropout=0.0, max_length=128, save_steps=1000, device="cpu")


def test_the_file_appearing_sets_cancelled(tmp_path: Path) -> None:
    control = Control(Channel(io.StringIO(), json_mode=True))
    request = tmp_path / "cancel.request"
    control.watch_cancel_file(request, interval_s=0.02)
    assert not control.cancelled.wait(0.1)
    request.write_text("", encoding="utf-8")
    assert control.cancelled.wait(2.0)


def test_a_stale_file_from_an_earlier_stop_is_ignored(tmp_path: Path) -> None:
    control = Control(Channel(io.StringIO(), json_mode=True))
    request = tmp_path / "cancel.request"
    request.write_text("", encoding="utf-8")  # left by the stop a resumed run continues after
    control.watch_cancel_file(request, interval_s=0.02)
    assert not request.exists()
    assert not control.cancelled.wait(0.2)


def test_a_real_run_stops_with_exit_7_and_a_checkpoint_when_the_file_appears(
        tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    # stdin is closed at once: the engine has no pipe from a window, only its run folder.
    process = subprocess.Popen(engine_argv("train", "--json", "--model", str(tiny_model_dir), *flags),
                               env=engine_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(240, process.kill)  # a hung engine must fail the test, not CI
    timer.start()
    messages: list[dict] = []
    run_dir = None
    for line in process.stdout:
        messages.append(protocol.decode(line))
        if messages[-1]["type"] == "artifact" and messages[-1]["kind"] == "run_dir":
            run_dir = Path(messages[-1]["path"])
        if messages[-1]["type"] == "metrics" and messages[-1]["step"] == 2:
            (run_dir / "cancel.request").write_text(str(time.time()), encoding="utf-8")
    code = process.wait()
    timer.cancel()
    assert code == protocol.ExitCode.CANCELLED
    result = next(m["data"] for m in messages if m["type"] == "result")
    # Stopped long before its 500 steps: the file is polled twice a second, and a tiny-model
    # step takes milliseconds, so the exact step depends on the machine's load.
    assert result["status"] == "cancelled" and 2 <= result["steps"] < FAST["max_steps"] // 2
    run = workspace.RunFolder(run_dir)
    assert run.info()["status"] == "cancelled" and run.info()["exit_code"] == 7
    assert (run.checkpoints / f"checkpoint-{result['steps']}" / "trainer_state.json").is_file()
    assert (run.adapter / "adapter_model.safetensors").is_file()
