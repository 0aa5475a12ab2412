"""Kill harness (issue 19): SIGKILLs real engine processes at random moments and checks that
nothing is lost.

    python benchmarks/kill_harness.py --kills 20 --report kill_report.json [--seed 1]

Each kill is one of five kinds, taken in turn:

- ``import``: ``data import`` of a 60,000-row file, killed at a random moment of its work;
- ``train-step``: ``train`` (a tiny random Llama, 8 steps, a checkpoint every 2), killed at a
  random moment of the steps after its first complete checkpoint;
- ``checkpoint-save``: the same run, killed the moment a checkpoint folder appears and before
  the Trainer has finished it (its trainer_state.json is written last);
- ``queue-write``: ``queue add``, killed at a random moment after its start;
- ``export``: ``export --format merged`` of a finished run, killed at a random moment of its work.

After each kill the harness checks that no half-written dataset version, checkpoint or export is
visible (what Tunebench lists or resumes from is complete; the Trainer writes a checkpoint in
place, so a folder cut off mid-save, ``workspace.checkpoint_complete`` false, is ignored, then
removed by the resume), that run.json and queue.json parse, that the next command of the same
kind succeeds, and, for training, that ``train --resume``
continues from the last complete checkpoint and ends with the same loss curve as an
uninterrupted run (every step within 1e-4). "Random moment" is drawn uniformly over the
measured working time of an uninterrupted run of that kind (after its hello: the interpreter's
own start-up writes nothing); each import kill imports under a new name, since an unchanged file
imported again reuses its version at once. A try whose process ended before its moment is
checked all the same and tried again (up to MAX_ATTEMPTS, drawing over the time that process
lived), so that every kill lands mid-work. The report (JSON) lists every kill with its moment,
attempts and outcome.
tests/engine/test_kills_and_full_disk.py runs a short version in CI (one kill of each kind).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.core import protocol, workspace  # noqa: E402

KINDS = ("import", "train-step", "checkpoint-save", "queue-write", "export")
TRAIN_FLAGS = ["--dataset", "sample", "--max-steps", "8", "--save-steps", "2", "--batch-size", "4",
               "--learning-rate", "5e-3", "--lr-scheduler", "cosine", "--lora-r", "8", "--lora-alpha", "16",
               "--lora-dropout", "0.0", "--max-length", "128", "--device", "cpu", "--seed", "7"]
LOSS_TOLERANCE = 1e-4
MAX_ATTEMPTS = 5
IMPORT_ROWS = 60_000


@dataclass
class Kill:
    kind: str
    moment_s: float = 0.0  # after the hello
    killed: bool = False  # False: the process ended before the moment came (counted, not a kill)
    attempts: int = 1  # tries until a kill landed mid-work (see Harness.one)
    ok: bool = False
    seconds: float = 0.0  # the kill and the checks after it
    notes: list[str] = field(default_factory=list)


class Engine:
    """One engine process with --json, its messages collected as they arrive."""

    def __init__(self, home: Path, *args: str) -> None:
        env = dict(os.environ, TUNEBENCH_HOME=str(home), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
                   PYTHONIOENCODING="utf-8")
        # --json before a "--": what follows it (`queue add ... -- TRAIN FLAGS`) belongs to the
        # queued job, and a --json there left `queue add` without its hello, so every wait for it
        # ran out its whole timeout (300 s) and the queue kill never landed mid-work.
        end = args.index("--") if "--" in args else len(args)
        argv = [*args[:end], "--json", *args[end:]]
        self.process = subprocess.Popen([sys.executable, "-m", "engine", *argv], cwd=REPO, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: list[dict[str, Any]] = []
        self.hello = threading.Event()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(
            line.decode("utf-8", "replace") for line in self.process.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = protocol.decode(line)
            except protocol.ProtocolError:
                continue
            self.messages.append(message)
            if message["type"] == protocol.HELLO:
                self.hello.set()

    def wait_hello(self, timeout: float = 300) -> bool:
        """True once the hello has arrived; False when the process ended (or the timeout ran
        out) without one."""
        deadline = time.monotonic() + timeout
        while not self.hello.wait(0.02):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return self.hello.wait(0.5)  # let the reader drain what is left
        return True

    def artifact(self, kind: str) -> str | None:
        return next((m["path"] for m in self.messages if m["type"] == "artifact" and m["kind"] == kind), None)

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout)
        time.sleep(0.1)  # let the reader threads drain
        return code

    def kill(self) -> bool:
        """SIGKILL; False when the process had already ended."""
        if self.process.poll() is not None:
            return False
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return True


def run(home: Path, *args: str) -> Engine:
    engine = Engine(home, *args)
    code = engine.wait()
    if code != 0:
        raise RuntimeError(f"engine {' '.join(args)} exited {code}: {''.join(engine.stderr[-5:])}")
    return engine


def timed(home: Path, *args: str) -> tuple[Engine, float]:
    """An uninterrupted run and its working time (hello to exit)."""
    engine = Engine(home, *args)
    if not engine.wait_hello():
        raise RuntimeError(f"engine {' '.join(args)} sent no hello: {''.join(engine.stderr[-5:])}")
    started = time.monotonic()
    if engine.wait() != 0:
        raise RuntimeError(f"engine {' '.join(args)} failed: {''.join(engine.stderr[-5:])}")
    return engine, time.monotonic() - started


def kill_at_random(engine: Engine, window_s: float, rng: random.Random, kill: Kill,
                   ready: Callable[[], bool] = lambda: True) -> float | None:
    """Kills at a moment drawn uniformly over ``window_s`` after the hello (and ``ready``);
    returns how long the process lived after that point when it ended before the moment."""
    if not engine.wait_hello():
        kill.notes.append("the engine sent no hello")
    deadline = time.monotonic() + 600
    while not ready() and engine.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    kill.moment_s = round(rng.uniform(0.0, window_s), 3)
    started = time.monotonic()
    due = started + kill.moment_s
    while (now := time.monotonic()) < due:
        if engine.process.poll() is not None:
            return now - started
        time.sleep(min(0.002, due - now))
    kill.killed = engine.kill()
    return None if kill.killed else time.monotonic() - started


def losses(messages: list[dict[str, Any]]) -> dict[int, float]:
    """Loss by step; a step logged twice (before a kill and again after the resume) keeps the later."""
    return {m["step"]: m["values"]["loss"] for m in messages if m["type"] == "metrics" and "loss" in m["values"]}


class Harness:
    def __init__(self, workdir: Path, model: Path, seed: int) -> None:
        self.workdir = workdir
        self.model = model
        self.rng = random.Random(seed)
        self.home = workdir / "home"
        self.reference: dict[str, Any] = {}
        self.windows: dict[str, float] = {}  # the span a kill's moment is drawn over, by kind
        self.imports = 0

    # -- references ----------------------------------------------------------------------------
    def prepare(self) -> None:
        source = self.workdir / "big.jsonl"
        with source.open("w", encoding="utf-8") as handle:
            for index in range(IMPORT_ROWS):
                handle.write(
                    json.dumps(
                        {
                            "messages": [
                                {"role": "user", "content": f"question {index}"},
                                {"role": "assistant", "content": f"answer {index} " * 5},
                            ]
                        }
                    )
                    + "\n"
                )
        self.reference["import_s"] = timed(self.home, "data", "import", str(source), "--name", "reference")[1]
        train, self.reference["train_s"] = timed(self.home, "train", "--model", str(self.model), *TRAIN_FLAGS)
        self.reference["losses"] = losses(train.messages)
        # A train-step kill comes after the first complete checkpoint, during the steps after it.
        first_save = next(m["t"] for m in train.messages if m["type"] == "artifact" and m["kind"] == "checkpoint")
        last_step = max(m["t"] for m in train.messages if m["type"] == "metrics")
        self.reference["train_steps_s"] = last_step - first_save
        self.reference["run"] = train.artifact("run_dir")
        self.reference["export_s"] = timed(self.home, "export", self.reference["run"], "--out",
                                           str(self.workdir / "reference-export"))[1]
        self.reference["queue_s"] = timed(self.home, "queue", "add", "--name", "reference", "--",
                                          "--model", str(self.model), *TRAIN_FLAGS)[1]

    # -- one kill of each kind -----------------------------------------------------------------
    def kill_import(self, kill: Kill) -> None:
        # A new name each time: an unchanged file imported again under its old name reuses its
        # version at once, so only the first import kill would interrupt an import.
        self.imports += 1
        name = f"killed-{self.imports}"
        engine = Engine(self.home, "data", "import", str(self.workdir / "big.jsonl"), "--name", name)
        self._lived("import", kill_at_random(engine, self.window("import", "import_s"), self.rng, kill))
        folder = self.home / "datasets" / name
        for version in folder.glob("v*") if folder.is_dir() else []:
            if not ((version / "manifest.json").is_file() and (version / "data").is_dir()):
                kill.notes.append(f"half-written dataset version visible: {version}")
        again = run(self.home, "data", "import", str(self.workdir / "big.jsonl"), "--name", name)
        result = next(m["data"] for m in again.messages if m["type"] == "result")
        if result["rows"] != IMPORT_ROWS:
            kill.notes.append(f"import after the kill stored {result['rows']} rows")

    def kill_training(self, kill: Kill, mid_save: bool) -> None:
        engine = Engine(self.home, "train", "--model", str(self.model), *TRAIN_FLAGS)
        run_dir: list[Path] = []

        def first_checkpoint() -> bool:
            path = engine.artifact("run_dir")
            if path:
                run_dir[:] = [Path(path)]
                return workspace.RunFolder(Path(path)).last_checkpoint() is not None
            return False

        if mid_save:
            self._kill_mid_save(engine, kill, run_dir, first_checkpoint)
        else:
            self._lived("train-step", kill_at_random(engine, self.window("train-step", "train_steps_s"), self.rng,
                                                     kill, first_checkpoint))
        if not run_dir:
            kill.notes.append("the run folder never appeared")
            return
        self._check_resume(workspace.RunFolder(run_dir[0]), kill)

    def _kill_mid_save(
        self, engine: Engine, kill: Kill, run_dir: list[Path], first_checkpoint: Callable[[], bool]
    ) -> None:
        """Waits for the first complete checkpoint, then kills as soon as a later checkpoint folder
        exists without its trainer_state.json (the Trainer writes that file last)."""
        if not engine.wait_hello():
            kill.notes.append("the engine sent no hello")
        while not first_checkpoint() and engine.process.poll() is None:
            time.sleep(0.005)
        started = time.monotonic()
        while engine.process.poll() is None:
            folder = workspace.RunFolder(run_dir[0]) if run_dir else None
            if folder and any(
                not (c / "trainer_state.json").is_file() for c in folder.checkpoints.glob("checkpoint-*")
            ):
                kill.moment_s = round(time.monotonic() - started, 3)
                kill.killed = engine.kill()
                return
            time.sleep(0.001)

    def _check_resume(self, run: workspace.RunFolder, kill: Kill) -> None:
        info = workspace.read_json(run.run_json)
        if info is None:
            kill.notes.append("run.json does not parse")
            return
        last = run.last_checkpoint()
        if last is not None and not (
            workspace.checkpoint_complete(last) and (last / "adapter_model.safetensors").is_file()
        ):
            kill.notes.append(f"the last checkpoint Tunebench would resume from is incomplete: {last}")
        if info.get("status") == workspace.FINISHED:
            return  # it finished before the kill landed
        resumed = run_engine_ok(self.home, kill, "train", "--resume", str(run.path))
        if resumed is None:
            return
        cut_off = [c.name for c in run.checkpoints.glob("checkpoint-*") if not workspace.checkpoint_complete(c)]
        if cut_off:
            kill.notes.append(f"half-written checkpoints still there after the resume: {cut_off}")
        got, expected = losses(list(run.read_events())), self.reference["losses"]
        if sorted(got) != sorted(expected):
            kill.notes.append(f"resumed curve has steps {sorted(got)}, expected {sorted(expected)}")
        elif any(abs(got[s] - expected[s]) > LOSS_TOLERANCE for s in expected):
            kill.notes.append(f"resumed losses differ: {got} vs {expected}")

    def kill_queue(self, kill: Kill) -> None:
        engine = Engine(self.home, "queue", "add", "--name", "killed", "--", "--model", str(self.model), *TRAIN_FLAGS)
        self._lived("queue-write", kill_at_random(engine, self.window("queue-write", "queue_s"), self.rng, kill))
        queue_json = self.home / "queue" / "queue.json"
        if queue_json.exists() and workspace.read_json(queue_json) is None:
            kill.notes.append("queue.json does not parse")
        run_engine_ok(
            self.home, kill, "queue", "add", "--name", "after", "--", "--model", str(self.model), *TRAIN_FLAGS
        )

    def kill_export(self, kill: Kill) -> None:
        target = self.workdir / f"export-{self.rng.randrange(10**6)}"
        engine = Engine(self.home, "export", self.reference["run"], "--out", str(target))
        self._lived("export", kill_at_random(engine, self.window("export", "export_s"), self.rng, kill))
        if target.exists() and not (target / "tunebench-export.json").is_file():
            kill.notes.append(f"half-written export visible: {target}")
        run_engine_ok(self.home, kill, "export", self.reference["run"], "--out", str(target), "--force")
        if not (target / "tunebench-export.json").is_file():
            kill.notes.append("export after the kill is incomplete")

    def window(self, kind: str, reference: str) -> float:
        return self.windows.setdefault(kind, self.reference[reference])

    def _lived(self, kind: str, lived: float | None) -> None:
        """A process that ended before its moment came shows the window was too long here (the
        reference ran on a quieter or busier machine): later draws use what it lived."""
        if lived is not None:
            self.windows[kind] = max(0.001, min(self.windows[kind], lived * 0.9))

    def one(self, kind: str) -> Kill:
        """One kill of ``kind``; a try whose process ended before the moment came (checked all the
        same) is tried again, up to MAX_ATTEMPTS, so that the kill lands mid-work."""
        started = time.monotonic()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            kill = self._try(kind)
            kill.attempts = attempt
            if kill.killed or kill.notes:
                break
        kill.seconds = round(time.monotonic() - started, 1)
        return kill

    def _try(self, kind: str) -> Kill:
        kill = Kill(kind)
        try:
            {"import": self.kill_import, "train-step": lambda k: self.kill_training(k, mid_save=False),
             "checkpoint-save": lambda k: self.kill_training(k, mid_save=True),
             "queue-write": self.kill_queue, "export": self.kill_export}[kind](kill)
        except Exception as exc:  # a harness or engine failure is a failed kill, reported
            kill.notes.append(f"{type(exc).__name__}: {exc}")
        kill.ok = not kill.notes
        return kill


def run_engine_ok(home: Path, kill: Kill, *args: str) -> Engine | None:
    engine = Engine(home, *args)
    code = engine.wait()
    if code != 0:
        kill.notes.append(f"`{' '.join(args[:2])}` after the kill exited {code}: {''.join(engine.stderr[-3:]).strip()}")
        return None
    return engine


def run_harness(kills: int, workdir: Path, model: Path, seed: int = 1,
                kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    started = time.monotonic()
    harness = Harness(workdir, model, seed)
    harness.prepare()
    prepared_s = time.monotonic() - started
    results = [harness.one(kinds[index % len(kinds)]) for index in range(kills)]
    return {"kills": len(results), "ok": sum(k.ok for k in results),
            "killed_mid_work": sum(k.killed for k in results),
            "seconds": round(time.monotonic() - started, 1), "prepare_s": round(prepared_s, 1), "seed": seed,
            "reference_s": {k: round(v, 2) for k, v in harness.reference.items() if k.endswith("_s")},
            "results": [asdict(k) for k in results]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path, default=Path("kill_report.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--model", type=Path, default=None, help="default: a tiny random Llama built here")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tunebench-kills-") as temp:
        workdir = args.workdir or Path(temp)
        model = args.model
        if model is None:
            sys.path.insert(0, str(REPO / "tests"))
            from conftest import build_tiny_model

            model = build_tiny_model(workdir / "tiny-llama")
        report = run_harness(args.kills, workdir, model, args.seed)
    workspace.atomic_write_json(args.report.resolve(), report)
    print(f"{report['ok']}/{report['kills']} kills lost nothing ({report['killed_mid_work']} landed mid-work); "
          f"report: {args.report}")
    return 0 if report["ok"] == report["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
