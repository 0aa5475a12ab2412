"""Exporting a run's tuned model from the Runs page: the Export menu's model entries, and the
``tunebench-engine export`` job they start, reported in one line as it goes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from engine.core import protocol
from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.state.run_history import RunRow

# (format, menu title, output types: the first is the suggested one)
FORMATS = (
    ("gguf", "Model as GGUF (llama.cpp, LM Studio, Ollama)", ("q8_0", "q5_0", "q4_0", "f16", "f32")),
    ("merged", "Model, merged (Hugging Face safetensors folder)", ("f16", "bf16", "f32")),
)
OUTTYPE_HELP = {"q8_0": "Q8_0 (8-bit, half the size of F16, near-lossless)",
                "q5_0": "Q5_0 (5-bit, about a third of F16)", "q4_0": "Q4_0 (4-bit, about a quarter of F16)",
                "f16": "F16", "bf16": "BF16", "f32": "F32 (exact, largest)"}


class ModelExport(QObject):
    """Runs one export at a time; ``sig_status(text, is_error)`` tells how it goes."""

    sig_status = Signal(str, bool)
    sig_busy = Signal(bool)

    def __init__(self, context: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.client = EngineClient(self)
        self.client.sig_progress.connect(self._on_progress)
        self.client.sig_result.connect(self._on_result)
        self.client.sig_finished.connect(self._on_finished)
        self._result: dict = {}

    def add_menus(self, menu: QMenu, chosen_run, ask_target=None) -> list[QMenu]:
        """Adds a submenu per format to ``menu``; ``chosen_run()`` gives the run to export (or
        None), ``ask_target(run, fmt, outtype)`` the path (default: a save dialog)."""
        submenus = []
        for fmt, title, outtypes in FORMATS:
            submenu = menu.addMenu(title)
            for outtype in outtypes:
                submenu.addAction(OUTTYPE_HELP[outtype] + "…",
                                  lambda f=fmt, o=outtype: self._export_chosen(chosen_run(), f, o, ask_target))
            submenus.append(submenu)
        return submenus

    def is_busy(self) -> bool:
        return self.client.is_active()

    def command(self, run: RunRow, fmt: str, outtype: str, target: Path) -> list[str]:
        # --force: the save dialog has already asked before replacing; the engine still refuses
        # to replace a folder that is not an earlier export.
        return [*self._context.engine_command(), "export", "--json", str(run.path), "--format", fmt,
                "--outtype", outtype, "--out", str(target), "--force"]

    def start(self, run: RunRow, fmt: str, outtype: str, target: Path) -> bool:
        if self.is_busy():
            self.sig_status.emit("An export is already running; wait for it to finish.", True)
            return False
        self._result = {}
        self.client.start(self.command(run, fmt, outtype, target), env=self._context.engine_env())
        self.sig_busy.emit(True)
        self.sig_status.emit(f"Exporting {run.title} to {target}: merging the adapter…", False)
        return True

    def cancel(self) -> None:
        self.client.cancel()

    def kill(self) -> None:
        """The window is closing: the export stops now."""
        self.client.kill()

    def _export_chosen(self, run: RunRow | None, fmt: str, outtype: str, ask_target) -> None:
        if run is None:
            return
        target = (ask_target or self._ask_target)(run, fmt, outtype)
        if target is not None:
            self.start(run, fmt, outtype, target)

    def _ask_target(self, run: RunRow, fmt: str, outtype: str) -> Path | None:
        parent = self.parent() if isinstance(self.parent(), QWidget) else None
        if fmt == "gguf":
            suggested = Path.home() / f"{run.id}-{outtype}.gguf"
            path, _ = QFileDialog.getSaveFileName(parent, "Export model as GGUF", str(suggested),
                                                  "GGUF files (*.gguf)")
        else:
            suggested = Path.home() / f"{run.id}-{outtype}-merged"
            path, _ = QFileDialog.getSaveFileName(parent, "Export merged model: name the new folder",
                                                  str(suggested), "Folders (*)")
        return Path(path) if path else None

    def _on_progress(self, message: dict) -> None:
        total = message.get("total") or 0
        if message.get("unit") == "prompts":
            self.sig_status.emit(f"Checking the export: loading it back and answering {total} sample prompts…",
                                 False)
        elif total:
            self.sig_status.emit(f"Exporting: {message.get('current', 0)} of {total} tensors written…", False)

    def _on_result(self, message: dict) -> None:
        self._result = message.get("data") or {}

    def _on_finished(self, code: int, summary: str) -> None:
        self.sig_busy.emit(False)
        if code == 0 and self._result:
            self.sig_status.emit(f"Saved {self._result['path']} ({size_text(self._result.get('bytes', 0))}) "
                                 f"in {self._result.get('seconds', 0):.0f} s.{roundtrip_text(self._result)}", False)
        elif code == protocol.ExitCode.CANCELLED:
            self.sig_status.emit("Export cancelled; nothing was written.", False)
        else:
            self.sig_status.emit(summary, True)


def roundtrip_text(result: dict) -> str:
    """What the engine's round-trip check found; a failed check ends the job with its cause."""
    report = result.get("roundtrip")
    if not report:
        return " Not checked (--no-check)."
    return f" Round-trip check passed: {report['prompts']} sample prompts gave {report['rule']}."


def size_text(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} KB"
