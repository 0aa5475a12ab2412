"""The Runs page's Export menu entries for Ollama and LM Studio: each starts the engine's export
with the right options, and the status line says where the model went or the command to run."""

from __future__ import annotations

from pathlib import Path

from gui_helpers import make_run
from PySide6.QtWidgets import QFileDialog, QInputDialog

from gui.pages.runs import RunsPage
from gui.widgets import model_export


def test_the_tool_entries_start_the_export_with_ollama_and_lmstudio_options(qtbot, make_context, tmp_path,
                                                                          monkeypatch):
    run = make_run("kettle helper", adapter=True)
    runs = RunsPage(make_context())
    qtbot.addWidget(runs)
    assert runs.select_run(run.id)
    tools_menu = runs.model_export_menus[-1]
    assert tools_menu.title() == model_export.TOOLS_TITLE and tools_menu.isEnabled()
    started: list[list[str]] = []
    monkeypatch.setattr(runs.model_export.client, "start", lambda argv, env=None: started.append(argv))
    target = tmp_path / "tuned.gguf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("kettle", True))
    models_dir = tmp_path / "lm studio"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(models_dir))

    for action in tools_menu.actions():
        action.trigger()
    ollama, create, lmstudio = (argv[argv.index("export"):] for argv in started)
    assert ollama[-8:] == ["--format", "gguf", "--outtype", "q8_0", "--out", str(target), "--force", "--ollama"]
    assert create[-2:] == ["--ollama-create", "kettle"] and str(target) in create
    assert lmstudio[-3:] == ["--lmstudio", "--lmstudio-dir", str(models_dir)]
    assert "--out" not in lmstudio and "--force" not in lmstudio  # nobody was asked before replacing there


def test_the_status_says_where_the_model_went():
    assert model_export.tools_text({"path": "/x/tuned.gguf"}) == ""
    placed = str(Path("models") / "tunebench" / "kettle-helper" / "kettle-helper-q8_0.gguf")
    assert model_export.tools_text({"path": placed, "lmstudio": {"models_dir": "models"}}) == \
        " LM Studio lists it under tunebench/kettle-helper."
    assert model_export.tools_text({"path": "t.gguf", "ollama": {"created": True, "name": "kettle"}}) == \
        " Created in Ollama as kettle."
    assert model_export.tools_text({"path": "t.gguf", "ollama": {"created": False,
                                                                 "command": "ollama create kettle -f t.Modelfile"}}) \
        == " Modelfile written; to add it to Ollama: ollama create kettle -f t.Modelfile"


def test_the_gguf_menu_offers_the_k_quants_only_where_llama_cpp_can_write_them(qtbot, make_context, monkeypatch):
    from engine.export import kquants

    run = make_run("kettle helper", adapter=True)
    for installed in (False, True):
        monkeypatch.setattr(kquants, "available", lambda installed=installed: installed)
        runs = RunsPage(make_context())
        qtbot.addWidget(runs)
        assert runs.select_run(run.id)
        actions = {action.text().split(" ")[0]: action for action in runs.model_export_menus[0].actions()}
        assert actions["Q8_0"].isEnabled() and actions["Q4_0"].isEnabled()
        assert actions["Q4_K_M"].isEnabled() == installed
        refused = "needs llama.cpp's quantizer (llama-cpp-python, which setup installs)" in actions["Q4_K_M"].text()
        assert refused != installed
    adapter_menu = runs.model_export_menus[2]
    assert adapter_menu.isEnabled()
    assert [action.text().split(" ")[0].rstrip("…") for action in adapter_menu.actions()] == ["F16", "Q8_0", "F32"]
