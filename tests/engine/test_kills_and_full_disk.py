"""Kills and a full disk lose nothing (issue 19).

The short CI version of benchmarks/kill_harness.py (one SIGKILL of each kind; the full 20-kill
run is `python benchmarks/kill_harness.py --kills 20`), and a full disk during a checkpoint and
during an export, on a small tmpfs workspace where this test can mount one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core import protocol, workspace

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import kill_harness  # noqa: E402


def test_one_kill_of_each_kind_loses_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    report = kill_harness.run_harness(len(kill_harness.KINDS), tmp_path, tiny_model_dir, seed=3)
    failed = [r for r in report["results"] if not r["ok"]]
    assert failed == [], failed
    assert report["ok"] == report["kills"] == 5
    # Every kill lands while work is under way (a try that came too late is tried again).
    assert report["killed_mid_work"] == report["kills"], report["results"]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 48 MiB tmpfs, or a skip saying why none could be mounted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path) -> Path:
    """Writes a file until the disk is full; removing it frees the space again."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def error_lines(engine: kill_harness.Engine) -> list[str]:
    return [m["message"] for m in engine.messages if m["type"] == protocol.ERROR]


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(small_disk: Path, tiny_model_dir: Path) -> None:
    home = small_disk / "home"
    engine = kill_harness.Engine(home, "train", "--model", str(tiny_model_dir), *kill_harness.TRAIN_FLAGS)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and engine.process.poll() is None:
        path = engine.artifact("run_dir")
        if path and workspace.RunFolder(Path(path)).last_checkpoint() is not None:
            break
        time.sleep(0.005)
    run = workspace.RunFolder(Path(engine.artifact("run_dir")))
    first = run.last_checkpoint()
    assert first is not None and first.name == "checkpoint-2"
    filler = fill(small_disk)
    code = engine.wait()

    assert code == protocol.ExitCode.FAILED
    assert error_lines(engine) == [kill_harness_disk_full()]
    assert "Traceback" not in "".join(engine.stderr)
    assert run.last_checkpoint() == first and (first / "adapter_model.safetensors").is_file()
    filler.unlink()
    assert workspace.read_json(run.run_json) is not None
    resumed = kill_harness.run_engine_ok(home, kill_harness.Kill("resume"), "train", "--resume", str(run.path))
    assert resumed is not None and run.info()["status"] == workspace.FINISHED


def kill_harness_disk_full() -> str:
    from engine.cli import DISK_FULL

    return DISK_FULL


def test_full_disk_during_an_export_leaves_nothing_half_written(small_disk: Path, tiny_model_dir: Path,
                                                                 tmp_path: Path) -> None:
    home = tmp_path / "home"
    trained = kill_harness.run(home, "train", "--model", str(tiny_model_dir), *kill_harness.TRAIN_FLAGS)
    filler = fill(small_disk)
    target = small_disk / "merged"
    engine = kill_harness.Engine(home, "export", trained.artifact("run_dir"), "--out", str(target))
    code = engine.wait()
    filler.unlink()

    assert code == protocol.ExitCode.FAILED
    [line] = error_lines(engine)
    assert "disk full" in line and "\n" not in line
    assert not target.exists() and [p.name for p in small_disk.iterdir()] == []
