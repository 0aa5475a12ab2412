"""One run on several processes: data-parallel training (DDP) through accelerate.

``train --gpus N`` (N > 1) keeps the single-process command's shape. This process (the parent)
creates the run folder and writes config.toml as any run does, then starts N worker processes
with ``accelerate launch`` (torch's elastic launcher underneath) running the hidden entry
``tunebench-engine train --json --worker-of RUN``. Each worker loads the saved config.toml,
takes its share of every global batch, and the gradients are averaged, so a step is the step
one process would take on micro-batch x grad. accumulation x N examples (the global batch). On
CUDA each process gets one GPU (NCCL); on the CPU the processes share it (gloo).

Rank 0 alone writes the record -- events.ndjson, engine.log, run.json, checkpoints, the adapter
-- so the run folder has the single-process layout. The other ranks log warnings only and send
their protocol messages nowhere. The parent stops writing events.ndjson once the workers start
and relays what rank 0 appends there to its own stdout, so the window and the queue see one job
with one event stream. The parent also passes a cancel on (stdin, Ctrl+C or cancel.request all
end up as cancel.request, which every rank checks after each step; the ranks agree on stopping
through an all-reduce so none is left waiting in a collective), and it exits with rank 0's exit
code, read from run.json.

``train --export-launch DIR`` writes the same entry for a cluster: DIR/config.toml, an
accelerate config, a torchrun launch script (c10d rendezvous) and a SLURM batch file. There
``--worker-of new`` makes rank 0 create the run folder and share its path with the other ranks.

Standard library at import; torch and accelerate are imported where a process is running.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from engine.core import config, errors, protocol, workspace
from engine.core.channel import Channel
from engine.core.config import ConfigError, TrainConfig
from engine.core.job import Job

log = logging.getLogger("engine.train.run")

CANCEL_REQUEST = "cancel.request"  # as engine.core.control polls for it in a run folder
NEW_RUN = "new"  # --worker-of new: rank 0 creates the run folder (cluster launch)
RELAY_POLL_S = 0.2
STOP_GRACE_S = 30.0
DEFAULT_PORT = 29500

EXPORT_FILES = ("config.toml", "accelerate_config.yaml", "launch.sh", "tunebench.sbatch", "README.txt")


# -- this process's place in the group -----------------------------------------------------------

def processes(cfg: TrainConfig) -> int:
    """How many processes the run trains on (the ``gpus`` knob; 0 and 1 both mean one)."""
    return max(1, cfg.gpus)


def world_size() -> int:
    """Processes in the group this process belongs to (torchrun/accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's index on its machine: the GPU it trains on."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main_process() -> bool:
    """True in a single-process run and in rank 0 of a group: the one that writes the record."""
    return world_size() < 2 or rank() == 0


def global_batch(cfg: TrainConfig, group: int) -> int:
    return cfg.batch_size * cfg.grad_accum * group


def check_processes(cfg: TrainConfig, device_name: str) -> None:
    """Several CUDA processes need as many GPUs on this machine (refused before a run folder
    exists). On the CPU any number of processes share the cores."""
    wanted = processes(cfg)
    if wanted < 2 or device_name != "cuda":
        return
    import torch

    found = torch.cuda.device_count()
    if found < wanted:
        raise ConfigError("gpus", f"asks for {wanted} processes, one per GPU, but this machine has {found} "
                          f"CUDA GPU{'s' if found != 1 else ''}; lower gpus or use --export-launch for a cluster")


def require_accelerate() -> None:
    if importlib.util.find_spec("accelerate") is None:
        raise errors.missing_dependency("gpus: training on several processes needs accelerate "
                                        "(pip install accelerate)")


# -- inside a worker -------------------------------------------------------------------------------

def init_group(device_name: str) -> None:
    """Joins the process group now (NCCL on CUDA, gloo on the CPU), through accelerate's state,
    which the Trainer reuses."""
    from accelerate import PartialState

    PartialState(cpu=device_name == "cpu")


def share_from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (picklable)."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wait_for_everyone() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def leave_group() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def any_rank(flags: list[bool], device: Any = None) -> list[bool]:
    """Each flag true on every rank when it is true on any rank (an all-reduce of the maximum)."""
    if world_size() < 2:
        return list(flags)
    import torch
    import torch.distributed as dist

    values = torch.tensor([int(f) for f in flags], dtype=torch.int64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def quiet(job: Job) -> Job:
    """The job as a non-zero rank runs it: messages dropped, the engine's log at warnings only."""
    logging.getLogger("engine").setLevel(logging.WARNING)
    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- lives as long as the process
    return Job(Channel(sink, json_mode=True), job.control, job.command)


def cancel_requested(job: Job, run: workspace.RunFolder, device: Any = None) -> bool:
    """A cancel on any rank (Ctrl+C, or cancel.request in the run folder, which the parent also
    writes for a cancel on its stdin) counts for all of them; the flag is then set everywhere."""
    local = job.control.cancelled.is_set() or (run.path / CANCEL_REQUEST).exists()
    (agreed,) = any_rank([local], device)
    if agreed:
        job.control.cancelled.set()
    return agreed


def stop_together_callback(job: Job, run: workspace.RunFolder) -> Any:
    """A TrainerCallback, last in line, that makes the ranks agree after every step on stopping
    and saving. Without it a cancel seen by one rank would stop it alone, and the others would
    wait for it in the next gradient all-reduce."""
    from transformers import TrainerCallback

    class StopTogether(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            local_cancel = job.control.cancelled.is_set() or (run.path / CANCEL_REQUEST).exists()
            cancel, stop, save = any_rank([local_cancel, control.should_training_stop, control.should_save],
                                          args.device)
            if cancel:
                if not job.control.cancelled.is_set():
                    log.info("Cancel requested; stopping at this step on every process.")
                job.control.cancelled.set()
            control.should_training_stop = stop or cancel
            control.should_save = save or cancel

    return StopTogether()


# -- the parent: start the workers, relay rank 0, pass a cancel on ---------------------------------

def launch(cfg: TrainConfig, run: workspace.RunFolder, job: Job, device_name: str, resume: bool = False) -> int:
    """Trains ``run`` (its config.toml already resolved) on ``gpus`` worker processes on this
    machine and returns rank 0's exit code."""
    require_accelerate()
    group = processes(cfg)
    where = f"{group} GPUs (NCCL)" if device_name == "cuda" else f"the CPU, {group} processes (gloo)"
    log.info("Data parallel (DDP) on %s: global batch %d = micro-batch %d x grad. accumulation %d x %d "
             "processes", where, global_batch(cfg, group), cfg.batch_size, cfg.grad_accum, group)
    with tempfile.TemporaryDirectory(prefix="tunebench-launch-") as tmp:
        config_file = Path(tmp) / "accelerate_config.yaml"
        config_file.write_text(accelerate_config(1, group, cpu=device_name == "cpu", port=0), encoding="utf-8")
        argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                "-m", "engine", "train", "--json", "--worker-of", str(run.path)]
        if resume:
            argv += ["--resume", str(run.path)]
        # From here rank 0 appends to events.ndjson; this process only relays what it reads there.
        job.channel.close()
        offset = run.events.stat().st_size if run.events.exists() else 0
        process = _start(argv, _worker_env(device_name, group))
        with _terminate_on_signal(process):
            launcher_code = _relay(process, run, job, offset)
    info = run.info()
    if info.get("status") != workspace.RUNNING and isinstance(info.get("exit_code"), int):
        return int(info["exit_code"])
    message = (f"the training processes stopped without finishing the run (launcher exit code {launcher_code}); "
               "the engine's stderr says why")
    append_event(run, protocol.error(protocol.ExitCode.FAILED, message))
    raise errors.EngineError(protocol.ExitCode.FAILED, message)


def _worker_env(device_name: str, group: int) -> dict[str, str]:
    env = dict(os.environ)
    if device_name == "cpu":
        # torchrun would give every process one thread; on the CPU the cores are what they share.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // group)))
    return env


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The launcher in its own process group: Ctrl+C in a terminal reaches only this process,
    which turns it into a cancel the workers finish cleanly."""
    options: dict[str, Any] = {}
    if os.name == "nt":
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        options["start_new_session"] = True
    log.debug("Launching: %s", " ".join(argv))
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, **options)


class _terminate_on_signal:
    """Stops the launcher's process group when this process ends abnormally (a second Ctrl+C,
    SIGTERM, an error), so no worker is left training without its parent."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.previous: Any = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            self.previous = signal.signal(signal.SIGTERM, self._on_term)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        if kind is not None:
            stop_group(self.process)

    @staticmethod
    def _on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the launcher's group (SIGKILL after a grace period)."""
    if process.poll() is not None:
        return
    try:
        if os.name == "nt":
            process.terminate()
        else:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE_S)
    except (ProcessLookupError, PermissionError):
        return
    except subprocess.TimeoutExpired:
        if os.name == "nt":
            process.kill()
        else:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _relay(process: subprocess.Popen, run: workspace.RunFolder, job: Job, offset: int) -> int:
    """Sends on what rank 0 records until the launcher exits; turns this process's cancel
    (stdin, Ctrl+C, cancel.request) into cancel.request for the workers."""
    tail = EventTail(run.events, offset)
    cancel_file = run.path / CANCEL_REQUEST
    while True:
        exited = process.poll() is not None
        for message in tail.read_messages():
            forward(job, message)
        if job.control.cancelled.is_set() and not cancel_file.exists():
            # A worker starting up clears an old request; write it again until the run ends.
            workspace.atomic_write_text(cancel_file, f"{time.time()}\n")
        if exited:
            return int(process.returncode)
        time.sleep(RELAY_POLL_S)


def forward(job: Job, message: dict[str, Any]) -> None:
    """One of rank 0's messages on this process's stream. Its hello is not passed on (the stream
    began with this process's own); in text mode its log lines are printed as the log is."""
    kind = message["type"]
    if kind == protocol.HELLO:
        return
    if kind == protocol.LOG and not job.channel.json_mode:
        stamp = time.strftime("%H:%M:%S", time.localtime(float(message.get("t", time.time()))))
        print(f"{stamp} {str(message.get('level', 'info')).upper()} engine: {message.get('message', '')}",
              file=sys.stderr, flush=True)
        return
    job.channel.send(message)


class EventTail:
    """Reads a growing events.ndjson from ``offset``, whole lines only (a line being written is
    read on the next call)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset

    def read_messages(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        messages = []
        for line in chunk[:end + 1].decode("utf-8", errors="replace").splitlines():
            try:
                messages.append(protocol.decode(line))
            except protocol.ProtocolError:
                continue
        return messages


def append_event(run: workspace.RunFolder, message: dict[str, Any]) -> None:
    """One whole line appended to events.ndjson (for the parent's last word, once it no longer
    records through its channel)."""
    with run.events.open("a", encoding="utf-8", newline="\n") as handle:
        handle.write(protocol.encode(message))


# -- the files for a cluster -----------------------------------------------------------------------

def accelerate_config(machines: int, per_machine: int, cpu: bool, port: int = DEFAULT_PORT) -> str:
    """An ``accelerate launch`` config for DDP: ``machines`` x ``per_machine`` processes.

    accelerate's multi-GPU type means "torchrun-style processes"; with use_cpu the workers
    train on the CPU with gloo (accelerate's own multi-CPU type needs MPI)."""
    lines = [
        "compute_environment: LOCAL_MACHINE",
        "distributed_type: MULTI_GPU",
        f"num_machines: {machines}",
        f"num_processes: {machines * per_machine}",
        "machine_rank: 0",
        f"main_process_port: {port}",
        f"rdzv_backend: {'c10d' if machines > 1 else 'static'}",
        f"same_network: {'false' if machines > 1 else 'true'}",
        "gpu_ids: all",
        "mixed_precision: 'no'",
        f"use_cpu: {'true' if cpu else 'false'}",
        "downcast_bf16: 'no'",
        "debug: false",
        "tpu_env: []",
        "tpu_use_cluster: false",
        "tpu_use_sudo: false",
    ]
    return "\n".join(lines) + "\n"


def export_launch(folder: Path, cfg: TrainConfig, nodes: int, job: Job) -> int:
    """Writes the cluster launch files for ``cfg`` into ``folder`` (each file atomically) and
    reports them; trains nothing."""
    if nodes < 1:
        raise errors.usage(f"nodes: must be at least 1; got {nodes}")
    folder = folder.expanduser().resolve()
    per_node = processes(cfg)
    total = nodes * per_node
    cpu = cfg.device == "cpu"
    files = {
        "config.toml": config.to_toml(cfg, f"Settings of the run that {folder.name}/launch.sh starts; gpus is the "
                                      "processes on each node."),
        "accelerate_config.yaml": _accelerate_export(nodes, per_node, cpu),
        "launch.sh": _launch_script(nodes, per_node),
        "tunebench.sbatch": _sbatch(cfg, nodes, per_node, cpu),
        "README.txt": _readme(cfg, nodes, per_node, cpu),
    }
    for name, text in files.items():
        workspace.atomic_write_text(folder / name, text)
        (folder / name).chmod(0o755 if name.endswith((".sh", ".sbatch")) else 0o644)
    log.info("Launch files for %d node%s x %d processes (global batch %d) written to %s", nodes,
             "s" if nodes != 1 else "", per_node, global_batch(cfg, total), folder)
    job.channel.send(protocol.artifact("launch_files", str(folder), files=list(files)))
    job.channel.send(protocol.result({"export_launch": str(folder), "files": [str(folder / n) for n in files],
                                      "nodes": nodes, "processes_per_node": per_node, "processes": total,
                                      "global_batch": global_batch(cfg, total)}))
    return protocol.ExitCode.OK


def _accelerate_export(nodes: int, per_node: int, cpu: bool) -> str:
    header = (
        "# accelerate launch config for Tunebench (DDP). Run on every machine, in this folder:\n"
        "#   accelerate launch --config_file accelerate_config.yaml --machine_rank \"$NODE_RANK\" \\\n"
        "#       --main_process_ip \"$MASTER_ADDR\" --main_process_port \"$MASTER_PORT\" \\\n"
        "#       -m engine train --worker-of new --config config.toml\n"
        "# NODE_RANK is 0 on the machine at MASTER_ADDR and 1, 2, ... on the others; the command line\n"
        "# overrides machine_rank and main_process_port below, which are only placeholders.\n"
        "# mixed_precision stays 'no' here: the run's precision setting in config.toml decides.\n")
    return header + accelerate_config(nodes, per_node, cpu)


def _launch_script(nodes: int, per_node: int) -> str:
    return f"""#!/usr/bin/env bash
# Tunebench: one training run on several machines, started by torchrun with a c10d rendezvous.
# Run this script once on every machine with the same MASTER_ADDR and MASTER_PORT (tunebench.sbatch
# does that under SLURM), e.g.:
#   NNODES={nodes} GPUS_PER_NODE={per_node} MASTER_ADDR=node01 MASTER_PORT={DEFAULT_PORT} bash launch.sh
# Extra arguments are train flags that override config.toml (e.g. --max-steps 100).
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
PYTHON="${{TUNEBENCH_PYTHON:-python3}}"          # a Python with Tunebench's engine installed
NNODES="${{NNODES:-${{SLURM_NNODES:-{nodes}}}}}"
GPUS_PER_NODE="${{GPUS_PER_NODE:-{per_node}}}"
MASTER_ADDR="${{MASTER_ADDR:?set MASTER_ADDR to the host name or address of the first machine}}"
MASTER_PORT="${{MASTER_PORT:-{DEFAULT_PORT}}}"
RDZV_ID="${{RDZV_ID:-${{SLURM_JOB_ID:-tunebench}}}}"
exec "$PYTHON" -m torch.distributed.run \\
    --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE" \\
    --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$RDZV_ID" \\
    -m engine train --worker-of new --config "$HERE/config.toml" "$@"
"""


def _sbatch(cfg: TrainConfig, nodes: int, per_node: int, cpu: bool) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in (cfg.name or "tunebench"))[:40]
    resources = (f"#SBATCH --cpus-per-task={per_node}\n" if cpu else f"#SBATCH --gpus-per-node={per_node}\n")
    return f"""#!/usr/bin/env bash
#SBATCH --job-name={name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
{resources}#SBATCH --output=tunebench-%j.out
# Submit from this folder: sbatch tunebench.sbatch. Every node must see this folder and the
# Tunebench workspace (TUNEBENCH_HOME on shared storage); set TUNEBENCH_PYTHON if the engine's
# Python is not the python3 on the PATH.
set -euo pipefail
LAUNCH_DIR="${{TUNEBENCH_LAUNCH_DIR:-$SLURM_SUBMIT_DIR}}"
export NNODES="$SLURM_NNODES"
export GPUS_PER_NODE={per_node}
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export MASTER_ADDR
export MASTER_PORT="${{MASTER_PORT:-{DEFAULT_PORT}}}"
export RDZV_ID="$SLURM_JOB_ID"
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash "$LAUNCH_DIR/launch.sh"
"""


def _readme(cfg: TrainConfig, nodes: int, per_node: int, cpu: bool) -> str:
    total = nodes * per_node
    unit = "processes (CPU, gloo)" if cpu else "GPUs (NCCL)"
    heading = f"one data-parallel (DDP) training run on {nodes} machine(s) x {per_node} {unit}"
    steps = f"micro-batch {cfg.batch_size} x grad. accumulation {cfg.grad_accum} x {total} processes"
    return f"""Tunebench launch files: {heading}
= {total} processes. Global batch: {steps}
= {global_batch(cfg, total)} examples per optimiser step.

config.toml
    The run's settings, resolved from the preset, run file and flags given to
    `tunebench-engine train --export-launch`. gpus is the number of processes on each machine.

launch.sh
    Starts the run with torchrun (python -m torch.distributed.run) and a c10d rendezvous. Run it
    once on every machine with the same MASTER_ADDR (the first machine's host name or address)
    and MASTER_PORT:
        NNODES={nodes} GPUS_PER_NODE={per_node} MASTER_ADDR=node01 MASTER_PORT={DEFAULT_PORT} bash launch.sh
    Arguments after launch.sh are train flags that override config.toml, e.g. --max-steps 100.

tunebench.sbatch
    The same under SLURM: `sbatch tunebench.sbatch` from this folder asks for {nodes} node(s) with
    {per_node} {"CPUs" if cpu else "GPUs"} each, picks the first node as MASTER_ADDR and runs launch.sh on every node
    with srun. Add your partition or account with #SBATCH lines or sbatch flags.

accelerate_config.yaml
    For `accelerate launch` instead of torchrun; the command is at the top of the file. Each
    machine passes its own --machine_rank ($NODE_RANK: 0 on the MASTER_ADDR machine) and the
    shared --main_process_ip/--main_process_port.

What every machine needs
    - Tunebench's engine in the Python that runs (TUNEBENCH_PYTHON, default python3), the same
      version everywhere.
    - The same workspace on shared storage (TUNEBENCH_HOME): rank 0 creates the run folder
      there, and every rank reads the dataset from it. The model ("{cfg.model}") and dataset
      ("{cfg.dataset}") must be reachable by that name or path on the cluster.

What it writes
    One run folder, runs/<id>/ in the workspace, with the layout of any Tunebench run
    (run.json, config.toml, events.ndjson, engine.log, checkpoints/, adapter/ or model/).
    Only rank 0 writes it. The Runs page of a Tunebench window on the same workspace shows it.
    To stop it, create cancel.request in the run folder: every process stops after the
    current step and rank 0 saves what was trained. `tunebench-engine train --resume <id>`
    continues a stopped run on one machine, with gpus processes there.
"""
