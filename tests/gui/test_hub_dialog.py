"""The "Browse the Hub…" dialog, from the Train page and a Prompt column, driving the real engine
against a fake Hub on 127.0.0.1 (tests/hub_server.py).

Skipped where the engine's packages are not installed (a GUI-only environment)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hub_server import FakeHub, Repo, folder_files
from PySide6.QtCore import Qt

from gui.context import AppContext
from gui.state import hub_view

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "huggingface_hub")),
    reason="the engine's packages are not installed here")

ENGINE_TIMEOUT_MS = 120_000
TINY = "tiny-org/tiny-llama"


@pytest.fixture
def fake_hub(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    files = {**folder_files(tiny_model_dir), "README.md": b"# Tiny llama\n\nA **test** model.",
             "pytorch_model.bin": b"pickle"}
    repos = [Repo(TINY, files, tags=["llama", "license:apache-2.0"], downloads=1234, params=150_000),
             Repo("tiny-org/qwen-thing", {"config.json": b"{}"}, tags=["qwen2"], downloads=99, params=7_000_000_000)]
    with FakeHub(repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        yield hub


def test_search_read_the_card_and_download_into_the_train_picker(qtbot, fake_hub, tmp_path):
    from gui.pages.train import TrainPage

    page = TrainPage(AppContext.from_environment())
    qtbot.addWidget(page)
    dialog = page.open_hub_dialog()
    dialog.search_edit.setText("tiny")
    dialog.architecture_edit.setText("llama")
    qtbot.mouseClick(dialog.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1 and not dialog.query_client.is_active(),
                    timeout=ENGINE_TIMEOUT_MS)
    assert dialog.table.item(0, 0).text() == TINY
    assert "1 model found; fit for this machine's" in dialog.status.text()
    assert dialog.table.item(0, 1).text() == "1.2k" and dialog.table.item(0, 2).text() == "150k"
    assert all(dialog.table.item(0, column).text().split(" ")[0] in hub_view.LABEL_MARKS.values()
               for column in range(4, 8))

    dialog.table.selectRow(0)
    qtbot.waitUntil(lambda: "Tiny llama" in dialog.card_view.toPlainText(), timeout=ENGINE_TIMEOUT_MS)
    with qtbot.waitSignal(dialog.sig_downloaded, timeout=ENGINE_TIMEOUT_MS) as downloaded:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert downloaded.args == ["tiny-org--tiny-llama"]
    qtbot.waitUntil(lambda: not dialog.download_client.is_active(), timeout=ENGINE_TIMEOUT_MS)
    assert not dialog.status.is_error(), dialog.status.text()
    assert dialog.progress.value() == 100 and dialog.progress.format() == "Downloaded"
    assert page.form.values()["model"] == "tiny-org--tiny-llama"
    combo = page.form.widget("model")
    assert combo.findData("tiny-org--tiny-llama") >= 0
    assert not fake_hub.gets("pytorch_model.bin")
    dialog.resize(1100, 560)
    assert dialog.grab().save(str(tmp_path / "hub_dialog.png"))


def test_a_prompt_column_opens_the_dialog_and_takes_the_downloaded_model(qtbot, make_prompt_page, fake_hub):
    page = make_prompt_page()
    column = page.columns[0]
    dialog = page.open_hub_dialog(column)
    dialog.sig_downloaded.emit("tiny-org--tiny-llama")  # as after a download (tested above)
    assert column.model_combo.currentText() == "tiny-org--tiny-llama"
    dialog.close()


def test_cancel_stops_a_download(qtbot, fake_hub, tiny_model_dir, tmp_path):
    import numpy as np
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE
    from safetensors.numpy import save_file

    from gui.widgets.hub_dialog import HubDialog

    weights = tmp_path / "w.safetensors"
    save_file({"pad": np.zeros(DOWNLOAD_CHUNK_SIZE // 2 + 2**18, dtype=np.float32)}, str(weights))  # 2 chunks + 1 MiB
    files = {"config.json": (tiny_model_dir / "config.json").read_bytes(), "model.safetensors": weights.read_bytes()}
    fake_hub.repos["tiny-org/big"] = Repo("tiny-org/big", files)
    fake_hub.pause_per_mib = 0.1
    context = AppContext.from_environment()
    dialog = HubDialog(context.engine_command, context.engine_env)
    qtbot.addWidget(dialog)
    dialog.show_rows([hub_view.ResultRow("tiny-org/big", "0", "?", "", ("?",) * 4, False)])
    dialog.table.selectRow(0)
    qtbot.waitUntil(lambda: not dialog.query_client.is_active(), timeout=ENGINE_TIMEOUT_MS)
    dialog.download()
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=ENGINE_TIMEOUT_MS)
    with qtbot.waitSignal(dialog.download_client.sig_finished, timeout=ENGINE_TIMEOUT_MS):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert "cancelled" in dialog.status.text() and not dialog.cancel_button.isEnabled()


def test_an_error_from_the_hub_shows_as_one_line(qtbot, fake_hub):
    from gui.widgets.hub_dialog import HubDialog

    context = AppContext.from_environment()
    dialog = HubDialog(context.engine_command, context.engine_env)
    qtbot.addWidget(dialog)
    dialog.show_rows([hub_view.ResultRow("nobody/nothing", "0", "?", "", ("?",) * 4, False)])
    dialog.table.selectRow(0)
    qtbot.waitUntil(lambda: not dialog.query_client.is_active(), timeout=ENGINE_TIMEOUT_MS)
    with qtbot.waitSignal(dialog.download_client.sig_finished, timeout=ENGINE_TIMEOUT_MS):
        dialog.download()
    assert dialog.status.is_error() and "not found" in dialog.status.text()


def test_search_arguments_and_texts():
    query = hub_view.SearchQuery("qwen", "text-generation", "", "mit", 10)
    assert query.arguments() == ["models", "search", "qwen", "--task", "text-generation", "--license", "mit",
                                 "--limit", "10"]
    assert hub_view.params_text(7_240_000_000) == "7.2B" and hub_view.params_text(0) == "?"
    text = hub_view.progress_text({"current": 3 * 2**20, "total": 6 * 2**20, "bytes_per_s": 2**20, "eta_s": 3,
                                   "file": "model.safetensors"})
    assert text == "3.0 MB of 6.0 MB at 1.0 MB/s, about 3 s left — model.safetensors"
