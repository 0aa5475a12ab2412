"""Exporting a run's tuned model from the Runs page: the Export menu's model entries, and the
``tunebench-engine export`` job they start, reported in one line as it goes."""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QWidget

from engine.core import protocol
from engine.export import kquants, lmstudio, ollama
from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.state.run_history import RunRow

# (format, menu title, output types: the first is the suggested one)
FORMATS = (
    ("gguf", "Model as GGUF (llama.cpp, LM Studio, Ollama)",
     ("q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0", "f16", "f32")),
    ("merged", "Model, merged (Hugging Face safetensors folder)", ("f16", "bf16", "f32")),
    ("gguf-lora", "Adapter only as GGUF LoRA (llama.cpp --lora over the base GGUF)", ("f16", "q8_0", "f32")),
)
OUTTYPE_HELP = {"q8_0": "Q8_0 (8-bit, half the size of F16, near-lossless)",
                "q5_0": "Q5_0 (5-bit, about a third of F16)", "q4_0": "Q4_0 (4-bit, about a quarter of F16)",
                "q6_k": "Q6_K (6-bit K-quant)", "q5_k_m": "Q5_K_M (5-bit K-quant)",
                "q4_k_m": "Q4_K_M (4-bit K-quant, the usual choice for chat)",
                "f16": "F16", "bf16": "BF16", "f32": "F32 (exact, largest)"}
# Ollama and LM Studio users mostly run quantised files; Q8_0 is half of F16 and near-lossless.
TOOL_OUTTYPE = "q8_0"
TOOLS = (
    ("ollama", "Ollama: GGUF file and Modelfile…"),
    ("ollama-create", "Ollama: create the model (runs ollama create)…"),
    ("lmstudio", "LM Studio: into its models folder…"),
)
TOOLS_TITLE = "For Ollama or LM Studio (GGUF, Q8_0)"


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
        self.adapter_menu: QMenu | None = None

    def add_menus(self, menu: QMenu, chosen_run, ask_target=None) -> list[QMenu]:
        """Adds a submenu per format to ``menu``; ``chosen_run()`` gives the run to export (or
        None), ``ask_target(run, fmt, outtype)`` the path (default: a save dialog)."""
        submenus = []
        for fmt, title, outtypes in FORMATS:
            submenu = menu.addMenu(title)
            if fmt == "gguf-lora":
                self.adapter_menu = submenu  # offered for runs with an adapter only
            for outtype in outtypes:
                action = submenu.addAction(OUTTYPE_HELP[outtype] + "…",
                                           lambda f=fmt, o=outtype: self._export_chosen(chosen_run(), f, o, ask_target))
                if outtype in kquants.FTYPES and not kquants.available():
                    action.setEnabled(False)
                    action.setText(f"{OUTTYPE_HELP[outtype]}: needs llama.cpp's quantizer ({kquants.NEEDS})")
            submenus.append(submenu)
        tools = menu.addMenu(TOOLS_TITLE)
        for tool, title in TOOLS:
            tools.addAction(title, functools.partial(self._export_for_tool_chosen, chosen_run, tool))
        submenus.append(tools)
        return submenus

    def is_busy(self) -> bool:
        return self.client.is_active()

    def command(self, run: RunRow, fmt: str, outtype: str, target: Path | None,
                extra: tuple[str, ...] = ()) -> list[str]:
        # --force: the save dialog has already asked before replacing; the engine still refuses
        # to replace a folder that is not an earlier export. With no target (LM Studio) nobody
        # asked, so an earlier file there is kept and the engine says so.
        where = ["--out", str(target), "--force"] if target is not None else []
        return [*self._context.engine_command(), "export", "--json", str(run.path), "--format", fmt,
                "--outtype", outtype, *where, *extra]

    def start(self, run: RunRow, fmt: str, outtype: str, target: Path | None, extra: tuple[str, ...] = ()) -> bool:
        """``target`` None: the engine picks the place (LM Studio's models folder, in ``extra``)."""
        if self.is_busy():
            self.sig_status.emit("An export is already running; wait for it to finish.", True)
            return False
        self._result = {}
        self.client.start(self.command(run, fmt, outtype, target, extra), env=self._context.engine_env())
        self.sig_busy.emit(True)
        where = target if target is not None else "LM Studio's models folder"
        step = "writing the adapter" if fmt == "gguf-lora" else "merging the adapter"
        self.sig_status.emit(f"Exporting {run.title} to {where}: {step}…", False)
        return True

    def start_for_tool(self, run: RunRow, tool: str, target: Path | None, value: str) -> bool:
        """``value``: the Ollama model name (ollama-create) or LM Studio's models folder (lmstudio)."""
        extra = {"ollama": ("--ollama",), "ollama-create": ("--ollama-create", value),
                 "lmstudio": ("--lmstudio", "--lmstudio-dir", value)}[tool]
        return self.start(run, "gguf", TOOL_OUTTYPE, None if tool == "lmstudio" else target, extra)

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

    def _export_for_tool_chosen(self, chosen_run, tool: str) -> None:
        self._export_for_tool(chosen_run(), tool)

    def _parent_widget(self) -> QWidget | None:
        parent = self.parent()
        return parent if isinstance(parent, QWidget) else None

    def _export_for_tool(self, run: RunRow | None, tool: str) -> None:
        if run is None:
            return
        parent = self._parent_widget()
        value = ""
        if tool == "ollama-create":
            value, ok = QInputDialog.getText(parent, "Create in Ollama", "Ollama model name:",
                                             text=ollama.suggested_name(run.title))
            if not ok or not value.strip():
                return
        if tool == "lmstudio":
            value = QFileDialog.getExistingDirectory(parent, "LM Studio's models folder",
                                                     str(lmstudio.default_models_dir()))
            if value:
                self.start_for_tool(run, tool, None, value)
            return
        target = self._ask_target(run, "gguf", TOOL_OUTTYPE)
        if target is not None:
            self.start_for_tool(run, tool, target, value.strip())

    def _ask_target(self, run: RunRow, fmt: str, outtype: str) -> Path | None:
        parent = self._parent_widget()
        if fmt in ("gguf", "gguf-lora"):
            adapter_only = fmt == "gguf-lora"
            suggested = Path.home() / f"{run.id}-{outtype}{'-lora' if adapter_only else ''}.gguf"
            title = "Export the adapter as a GGUF LoRA file" if adapter_only else "Export model as GGUF"
            path, _ = QFileDialog.getSaveFileName(parent, title, str(suggested), "GGUF files (*.gguf)")
        else:
            suggested = Path.home() / f"{run.id}-{outtype}-merged"
            path, _ = QFileDialog.getSaveFileName(parent, "Export merged model: name the new folder",
                                                  str(suggested), "Folders (*)")
        return Path(path) if path else None

    def _on_progress(self, message: dict) -> None:
        total = message.get("total") or 0
        if message.get("unit") == "ollama":  # ollama create's own progress lines
            self.sig_status.emit(f"Ollama: {message.get('message', '')}", False)
        elif message.get("unit") == "prompts":
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
                                 f"in {self._result.get('seconds', 0):.0f} s.{roundtrip_text(self._result)}"
                                 f"{tools_text(self._result)}", False)
        elif code == protocol.ExitCode.CANCELLED:
            self.sig_status.emit("Export cancelled; nothing was written.", False)
        else:
            self.sig_status.emit(summary, True)


def roundtrip_text(result: dict) -> str:
    """What the engine's round-trip check found; a failed check ends the job with its cause."""
    report = result.get("roundtrip")
    if not report:
        return " Not checked (--no-check)."
    where = f" in {report['loader']}" if report.get("loader") else ""
    return f" Round-trip check passed{where}: {report['prompts']} sample prompts gave {report['rule']}."


def tools_text(result: dict) -> str:
    """Where Ollama and LM Studio find the export; "" for a plain export."""
    text = ""
    if result.get("lmstudio"):
        text += f" LM Studio lists it under {lmstudio.PUBLISHER}/{Path(result['path']).parent.name}."
    if result.get("llama_cpp_command"):
        text += f" Use it with llama.cpp: {result['llama_cpp_command']}"
    created = result.get("ollama")
    if created and created.get("created"):
        text += f" Created in Ollama as {created['name']}."
    elif created:
        text += f" Modelfile written; to add it to Ollama: {created['command']}"
    return text


def size_text(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} KB"
