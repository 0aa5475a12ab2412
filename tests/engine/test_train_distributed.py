"""Several processes (DDP through accelerate) on the CPU with gloo: the same losses as one
process with the same global batch, one job and one event stream for the queue, cancel and
resume across processes, the cluster launch files (run here for real on one node), and
one-line refusals.

Why the losses of 2 processes x micro-batch 2 equal those of 1 process x micro-batch 4:
accelerate's seeded sampler draws one permutation of the rows for both runs, and under DDP it
hands consecutive micro-batches of it to the ranks in turn (micro-batch i to rank i % 2), so a
step covers the same 4 rows either way. The loss is normalised by the answer tokens of the
whole global batch (``average_tokens_across_devices``): each rank computes 2 x its token-loss
sum / the global token count, DDP averages the gradients, and the logged loss is the mean over
ranks -- the one-process loss. Padding-free batches attend within each example, so packing 4
examples into one row or 2 into each of two rows gives the same per-example loss.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from engine.core import config, protocol, workspace
from engine.core.config import ConfigError, TrainConfig
from engine.train import job_queue

# fp32: a CPU with native bf16 (precision auto) would round the two batch layouts differently.
# No LoRA dropout: its random masks would differ between one process and two.
SETTINGS = dict(model=None, dataset="sample", device="cpu", max_steps=3, learning_rate=5e-3,
                lr_scheduler="constant", lora_dropout=0.0, max_length=128, save_steps=2, sample_count=0,
                precision="fp32")


def flags(tiny_model_dir: Path, **changes: object) -> list[str]:
    values = {**SETTINGS, "model": str(tiny_model_dir), **changes}
    return [f"--{k.replace('_', '-')}={v}" for k, v in values.items()]


def step_values(run: workspace.RunFolder, key: str) -> dict[int, float]:
    """The recorded training metrics by step; each step must appear once (rank 0 alone records)."""
    metrics = [m for m in run.read_events() if m["type"] == "metrics" and m.get("split") != "validation"]
    steps = [m["step"] for m in metrics]
    assert len(steps) == len(set(steps)), steps
    return {m["step"]: m["values"][key] for m in metrics}


def run_from(done: subprocess.CompletedProcess) -> workspace.RunFolder:
    result = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "result")
    return workspace.RunFolder(Path(result["data"]["run_dir"]))


def test_two_processes_train_as_one_process_with_the_same_global_batch(
        tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    # The 2-process run goes through the queue worker, as the window starts it: one job.
    job_queue.add(flags(tiny_model_dir, gpus=2, batch_size=2), name="ddp")
    assert job_queue.run_worker([sys.executable, "-m", "engine"], env=engine_env) == 1
    (entry,) = job_queue.load()
    assert entry["status"] == "finished" and entry["exit_code"] == 0, entry
    ddp = workspace.RunFolder(Path(entry["run_dir"]))

    single = subprocess.run(engine_argv("train", "--json", *flags(tiny_model_dir, batch_size=4)), env=engine_env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    one = run_from(single)

    ddp_loss, one_loss = step_values(ddp, "loss"), step_values(one, "loss")
    assert sorted(ddp_loss) == sorted(one_loss) == [1, 2, 3]
    for step in one_loss:
        assert ddp_loss[step] == pytest.approx(one_loss[step], rel=1e-4), (step, ddp_loss, one_loss)
    # The same global gradient, averaged across the ranks, and a model that learns from it.
    ddp_norm, one_norm = step_values(ddp, "grad_norm"), step_values(one, "grad_norm")
    assert all(ddp_norm[s] == pytest.approx(one_norm[s], rel=1e-3) for s in one_norm), (ddp_norm, one_norm)
    assert one_loss[3] < one_loss[2] < one_loss[1]

    info = ddp.info()
    assert info["status"] == "finished" and info["steps"] == 3
    assert info["processes"] == 2 and info["global_batch"] == 4
    assert info["pid"] == entry["pid"]  # the run belongs to the job's process, the parent
    assert (ddp.adapter / "adapter_model.safetensors").is_file()
    checkpoint = ddp.checkpoints / "checkpoint-2"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert ddp.engine_log.read_text().count("Trainable parameters") == 1  # rank 1 logs warnings only
    config_toml = tomllib.loads(ddp.config_toml.read_text())["train"]
    assert config_toml["gpus"] == 2 and config_toml["dataset"] == "sample-product-reviews@v1"
    assert [m["type"] for m in ddp.read_events()][-2:] == ["result", "log"]


def test_cancel_reaches_every_process_and_the_run_resumes_on_two(
        tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    argv = engine_argv("train", "--json", *flags(tiny_model_dir, gpus=2, batch_size=2, max_steps=400,
                                                  save_steps=1000))
    process = subprocess.Popen(argv, env=engine_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(240, process.kill)  # a hung launch must fail the test, not CI
    timer.start()
    messages = []
    for line in process.stdout:
        messages.append(protocol.decode(line))
        if messages[-1]["type"] == "metrics" and messages[-1]["step"] == 2:
            process.stdin.write(protocol.encode(protocol.make(protocol.CANCEL)))
            process.stdin.flush()
    code = process.wait()
    timer.cancel()
    assert code == protocol.ExitCode.CANCELLED
    assert [m["type"] for m in messages].count("hello") == 1  # one stream, rank 0's hello not passed on
    result = next(m["data"] for m in messages if m["type"] == "result")
    assert result["status"] == "cancelled" and 2 <= result["steps"] < 100
    run = workspace.RunFolder(Path(result["run_dir"]))
    stopped = result["steps"]
    assert run.info()["status"] == "cancelled" and run.info()["exit_code"] == protocol.ExitCode.CANCELLED
    assert (run.checkpoints / f"checkpoint-{stopped}" / "rng_state_1.pth").is_file()

    done = subprocess.run(engine_argv("train", "--json", "--resume", run.id, "--max-steps", str(stopped + 2)),
                          env=engine_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = run.info()
    assert info["status"] == "finished" and info["steps"] == stopped + 2 and info["resumed_from"] == [stopped]
    resumed = [protocol.decode(line) for line in done.stdout.splitlines()]
    assert [m["step"] for m in resumed if m["type"] == "metrics"] == [stopped + 1, stopped + 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_export_launch_writes_cluster_files_that_start_the_run(
        tiny_model_dir, engine_argv, engine_env, workspace_home, tmp_path) -> None:
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file

    out = tmp_path / "cluster launch"
    done = subprocess.run(engine_argv("train", "--json", "--export-launch", str(out), "--nodes", "3",
                                      *flags(tiny_model_dir, gpus=2, batch_size=2, name="big run")),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "result")["data"]
    assert result["processes"] == 6 and result["global_batch"] == 12
    assert not (workspace_home / "runs").exists() or not list((workspace_home / "runs").iterdir())
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["config.toml", "accelerate_config.yaml", "launch.sh", "tunebench.sbatch", "README.txt"])
    for script in ("launch.sh", "tunebench.sbatch"):
        assert subprocess.run(["bash", "-n", str(out / script)], capture_output=True).returncode == 0, script
        assert os.access(out / script, os.X_OK)
    accelerate_yaml = yaml.safe_load((out / "accelerate_config.yaml").read_text())
    assert accelerate_yaml["num_processes"] == 6 and accelerate_yaml["num_machines"] == 3
    assert accelerate_yaml["distributed_type"] == "MULTI_GPU" and accelerate_yaml["rdzv_backend"] == "c10d"
    assert load_config_from_file(str(out / "accelerate_config.yaml")).num_processes == 6  # accelerate reads it
    sbatch = (out / "tunebench.sbatch").read_text()
    assert "#SBATCH --nodes=3" in sbatch and "srun" in sbatch and "#SBATCH --job-name=big-run" in sbatch
    launch = (out / "launch.sh").read_text()
    assert "--rdzv-backend c10d" in launch and '--rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"' in launch
    exported = config.load_toml(out / "config.toml")
    assert exported.gpus == 2 and exported.name == "big run" and exported.model == str(tiny_model_dir)

    # The launch script itself, on this machine as a one-node cluster of 2 CPU processes.
    env = dict(engine_env, NNODES="1", GPUS_PER_NODE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               TUNEBENCH_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    launched = subprocess.run(["bash", str(out / "launch.sh"), "--max-steps", "2"], env=env, capture_output=True,
                              text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    (run,) = workspace.list_runs(workspace_home / "runs")
    info = run.info()
    assert info["status"] == "finished" and info["steps"] == 2 and info["processes"] == 2
    assert info["name"] == "big run" and (run.adapter / "adapter_config.json").is_file()
    assert sorted(step_values(run, "loss")) == [1, 2]
    assert tomllib.loads(run.config_toml.read_text())["train"]["max_steps"] == 2


def test_more_gpus_than_the_machine_has_is_refused_by_name(tiny_model_dir) -> None:
    import torch

    from engine.train.setup import check_runtime

    with pytest.raises(ConfigError) as caught:
        check_runtime(TrainConfig(model=str(tiny_model_dir), gpus=max(2, torch.cuda.device_count() + 1)), "cuda")
    assert caught.value.field == "gpus" and "\n" not in str(caught.value)
    check_runtime(TrainConfig(gpus=4, device="cpu"), "cpu")  # processes share the CPU: allowed


@pytest.mark.parametrize("args, code, words", [
    (["--gpus", "65"], protocol.ExitCode.USAGE, "gpus: must be at most 64"),
    (["--nodes", "2"], protocol.ExitCode.USAGE, "nodes: applies to --export-launch only"),
    (["--export-launch", "x", "--resume", "some-run"], protocol.ExitCode.USAGE, "export_launch: a cluster run"),
    (["--export-launch", "x", "--nodes", "0"], protocol.ExitCode.USAGE, "nodes: must be at least 1"),
    (["--worker-of", "some-run"], protocol.ExitCode.USAGE, "worker_of: for the processes that"),
])
def test_bad_launch_options_give_one_error_line(args, code, words, tiny_model_dir, engine_argv, engine_env,
                                                workspace_home, tmp_path) -> None:
    args = [str(tmp_path / a) if a == "x" else a for a in args]
    done = subprocess.run(engine_argv("train", "--json", "--model", str(tiny_model_dir), "--device", "cpu", *args),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    errors = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error"]
    assert len(errors) == 1 and words in errors[0]["message"], errors
    assert "Traceback" not in done.stderr
    assert not (workspace_home / "runs").exists() or not list((workspace_home / "runs").iterdir())
