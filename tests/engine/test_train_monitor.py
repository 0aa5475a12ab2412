"""Monitoring during a run: grad_norm and memory in the metrics events (GPU keys only where NVML
answers, never faked), TensorBoard event files in runs/<id>/tensorboard holding the loss, and
sample generations at each evaluation in samples.jsonl and `samples` artifacts."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from engine.train import monitor as train_monitor

from .test_train import FakeJob
from .test_train_resume import new_run_args, run_train

GPU_KEYS = {"gpu_util", "gpu_temp_c", "gpu_memory_used_gb"}


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_a_run_reports_grad_norm_memory_tensorboard_and_samples(tiny_model_dir, workspace_home) -> None:
    job = FakeJob()
    code, run = run_train(job, *new_run_args(tiny_model_dir, max_steps=4, save_steps=2, eval_steps=2,
                                             val_fraction=0.1, sample_count=2, sample_max_tokens=6))
    assert code == 0
    metrics = [m for m in job.messages() if m["type"] == "metrics" and "split" not in m]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for message in metrics:
        values = message["values"]
        assert values["grad_norm"] >= 0 and 0.01 < values["memory_gb"] < 64  # RSS of this process
        assert not GPU_KEYS & set(values)  # a CPU run has no GPU figures, not zeros

    scalars = tensorboard_scalars(run.path / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([m["values"]["loss"] for m in metrics], rel=1e-5)
    assert "train/grad_norm" in scalars and [s for s, _ in scalars["eval/loss"]] == [2, 4]

    artifacts = [m for m in job.messages() if m["type"] == "artifact" and m["kind"] == "samples"]
    assert [m["step"] for m in artifacts] == [2, 4]
    lines = [json.loads(line) for line in (run.path / "samples.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    validation_prompts = lines[0]["samples"]
    assert len(validation_prompts) == 2 and all(set(s) == {"prompt", "output"} for s in validation_prompts)
    assert all(isinstance(s["output"], str) and s["prompt"] for s in validation_prompts)
    assert artifacts[0]["samples"] == lines[0]["samples"] and artifacts[0]["path"] == str(run.path / "samples.jsonl")


def test_own_sample_prompts_are_used_at_each_save_without_validation(tiny_model_dir, workspace_home) -> None:
    job = FakeJob()
    code, run = run_train(job, *new_run_args(tiny_model_dir, max_steps=2, save_steps=1, sample_max_tokens=4),
                          "--sample-prompts", "Is the kettle good?\n\nRate: broke in a day.")
    assert code == 0
    artifacts = [m for m in job.messages() if m["type"] == "artifact" and m["kind"] == "samples"]
    assert [m["step"] for m in artifacts] == [1, 2]
    assert [s["prompt"] for s in artifacts[0]["samples"]] == ["Is the kettle good?", "Rate: broke in a day."]


def test_no_samples_when_turned_off(tiny_model_dir, workspace_home) -> None:
    job = FakeJob()
    code, run = run_train(job, *new_run_args(tiny_model_dir, max_steps=1, save_steps=1, sample_count=0))
    assert code == 0 and not (run.path / "samples.jsonl").exists()
    assert not [m for m in job.messages() if m["type"] == "artifact" and m["kind"] == "samples"]


class FakeNvml(types.ModuleType):
    """pynvml's calls as NVML answers them on a GPU machine; ``broken`` sensors raise."""

    class NVMLError(Exception):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, broken: tuple[str, ...] = (), init_fails: bool = False) -> None:
        super().__init__("pynvml")
        self.broken, self.init_fails, self.indices = broken, init_fails, []

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.indices.append(index)
        return f"gpu{index}"

    def _check(self, name: str) -> None:
        if name in self.broken:
            raise self.NVMLError("Not Supported")

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._check("util")
        return types.SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._check("temp")
        return 71

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(used=3 * 2**30, total=24 * 2**30)


@pytest.fixture
def fake_nvml(monkeypatch):
    def install(**kw) -> FakeNvml:
        module = FakeNvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        monkeypatch.setattr(train_monitor, "_nvml_state", {})
        monkeypatch.setattr(train_monitor, "_nvml_index", lambda: 1)
        return module
    return install


def test_nvml_figures_are_read_where_nvml_answers(fake_nvml) -> None:
    nvml = fake_nvml()
    assert train_monitor.nvml_metrics() == {"gpu_util": 87.0, "gpu_temp_c": 71.0, "gpu_memory_used_gb": 3.0}
    assert nvml.indices == [1]


def test_a_sensor_nvml_cannot_read_is_left_out(fake_nvml) -> None:
    fake_nvml(broken=("temp",))
    assert set(train_monitor.nvml_metrics()) == {"gpu_util", "gpu_memory_used_gb"}


def test_no_driver_means_no_gpu_keys(fake_nvml) -> None:
    fake_nvml(init_fails=True)
    assert train_monitor.nvml_metrics() == {}
    assert set(train_monitor.hardware_metrics(on_cuda=False)) == {"memory_gb"}
