"""A fake engine for the queue: the real worker, with training replayed from a transcript.

Usage (as the Train page's engine command, which appends ``queue run``)::

    python tests/gui/fake_queue_engine.py TRANSCRIPT [--delay S] [--exit CODE] queue run
    python tests/gui/fake_queue_engine.py TRANSCRIPT [--delay S] [--exit CODE] train --json [FLAGS]
    python tests/gui/fake_queue_engine.py TRANSCRIPT sweep create FILE --json   (the real command)
    python tests/gui/fake_queue_engine.py TRANSCRIPT sweep run NAME --json      (ends at once)

``queue run`` is engine.train.job_queue.run_worker itself, with this script as the engine it starts
for each job. ``train`` does what `tunebench-engine train` does to its run folder: creates it
(or reopens it for ``--resume RUN``), keeps run.json (status, pid) up to date, appends the
transcript's messages to events.ndjson with ``delay`` between lines (paths rewritten to the real
folder), stops with exit 7 when ``cancel.request`` appears, and prints the run_dir artifact so
the worker records the run. No torch: GUI tests stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.core import protocol, workspace  # noqa: E402  (after the sys.path line above)
from engine.train import job_queue  # noqa: E402

OLD_DIR = "/home/ada/.local/share/Tunebench/runs/20251123-142000-cpu-quick-demo-3f2a"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("transcript", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--exit", dest="exit_code", type=int, default=None)
    return parser.parse_known_args(argv)


def main(argv: list[str]) -> int:
    args, rest = parse(argv)
    if rest[:2] == ["queue", "run"]:
        options = [str(args.transcript), "--delay", str(args.delay)]
        if args.exit_code is not None:
            options += ["--exit", str(args.exit_code)]
        job_queue.run_worker([sys.executable, str(Path(__file__).resolve()), *options])
        return 0
    if rest[:1] == ["train"]:
        return train(args, rest[1:])
    if rest[:2] == ["sweep", "create"]:  # the real command: it reads the file and makes the study (no torch)
        from engine.cli import main as engine_main

        return engine_main(rest)
    if rest[:2] == ["sweep", "run"]:  # no trials trained here: the engine tests run real sweeps
        print(json.dumps(protocol.result({"name": rest[2], "trials": []})), flush=True)
        return 0
    print(f"fake queue engine: unknown command {rest}", file=sys.stderr)
    return 2


def flag(rest: list[str], name: str) -> str | None:
    return rest[rest.index(name) + 1] if name in rest and rest.index(name) + 1 < len(rest) else None


def train(args: argparse.Namespace, rest: list[str]) -> int:
    resume = flag(rest, "--resume")
    run = workspace.open_run(resume) if resume else workspace.create_run(flag(rest, "--name") or "fake")
    assert run is not None
    (run.path / job_queue.CANCEL_REQUEST).unlink(missing_ok=True)
    info = {"id": run.id, "name": flag(rest, "--name") or "", "status": workspace.RUNNING, "pid": os.getpid(),
            "created": time.time(), "method": "lora", "model": "default", "dataset": "sample"}
    run.update_info(**info)
    print(protocol.encode(protocol.artifact("run_dir", str(run.path), run_id=run.id)), end="", flush=True)
    lines = args.transcript.read_text(encoding="utf-8").splitlines()
    code = 0
    with run.events.open("a", encoding="utf-8") as events:
        for line in lines:
            message = json.loads(line.replace(OLD_DIR, str(run.path)))
            if message["type"] == protocol.ARTIFACT and message["kind"] == "run_dir" and resume:
                message["resumed_from"] = 8
            if resume and message["type"] in (protocol.METRICS, protocol.PROGRESS) and \
                    int(message.get("step", message.get("current", 0))) <= 8:
                continue  # a resumed run carries on after its checkpoint (step 8 here)
            if message["type"] == protocol.ERROR:
                code = int(message["code"])
            if (run.path / job_queue.CANCEL_REQUEST).exists():
                return stop(run, events, protocol.ExitCode.CANCELLED, workspace.CANCELLED)
            if message["type"] == protocol.RESULT:
                run.update_info(status=workspace.FINISHED if code == 0 else workspace.FAILED, steps=12,
                                final_loss=message["data"].get("final_loss"))
            if message["type"] == protocol.ERROR:
                run.update_info(status=workspace.FAILED, error=message["message"])
            events.write(json.dumps(message) + "\n")
            events.flush()
            time.sleep(args.delay)
    code = args.exit_code if args.exit_code is not None else code
    if code != 0 and run.info().get("status") == workspace.RUNNING:
        run.update_info(status=workspace.FAILED)
    return code


def stop(run: workspace.RunFolder, events, code: int, status: str) -> int:  # noqa: ANN001
    run.update_info(status=status)
    events.write(protocol.encode(protocol.result({"run_id": run.id, "run_dir": str(run.path), "status": status})))
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
