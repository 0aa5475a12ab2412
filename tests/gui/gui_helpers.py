"""Builders for workspace folders as the engine writes them, using the engine's own helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.core import protocol, workspace

TESTS = Path(__file__).resolve().parent.parent
FAKE_ENGINE = TESTS / "fake_engine.py"
TRANSCRIPTS = TESTS / "transcripts"


def make_run(name: str = "demo", status: str = "finished", steps: int = 12, pid: int | None = None,
             adapter: bool = False) -> workspace.RunFolder:
    """A run folder with run.json and an event log of ``steps`` falling losses."""
    run = workspace.create_run(name)
    losses = [round(0.8 + 2.2 * 0.9**step, 4) for step in range(1, steps + 1)]
    run.update_info(id=run.id, name=name, status=status, method="lora", model="default",
                    dataset="sample", steps=steps, final_loss=losses[-1] if losses else None,
                    created=time.time(), pid=pid)
    lines = [protocol.encode(protocol.hello("train", "0.1.0"))]
    for step, loss in enumerate(losses, start=1):
        lines.append(protocol.encode(protocol.progress(step, steps)))
        lines.append(protocol.encode(protocol.metrics(step, {"loss": loss, "learning_rate": 2e-4,
                                                             "tokens_per_s": 140.0 + step % 5})))
    run.events.write_text("".join(lines), encoding="utf-8")
    if adapter:
        run.adapter.mkdir()
        (run.adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    return run


def make_dataset(root: Path, name: str, version: int, rows: int, **extra: object) -> Path:
    folder = root / name / f"v{version}"
    manifest = {"name": name, "version": version, "source": f"{name}.jsonl", "shape": "prompt-completion",
                "rows": rows, "content_hash": "sha256:0f3a", "created": "2025-11-23T14:20:00", **extra}
    workspace.atomic_write_json(folder / "manifest.json", manifest)
    return folder


def dead_pid() -> int:
    """The id of a process that has certainly exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not workspace.pid_alive(child.pid) or os.name == "nt"
    return child.pid


def transcript_results(transcript: str) -> list[str]:
    """The answer texts of the ``result`` messages a session transcript replays."""
    lines = map(json.loads, (TRANSCRIPTS / transcript).read_text(encoding="utf-8").splitlines())
    return [m["data"]["text"] for m in lines if m.get("type") == "result"]
