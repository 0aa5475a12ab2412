"""The Runs page's "Push to the Hugging Face Hub…" dialog driving the real engine's `push` against
the fake Hub on 127.0.0.1 (tests/hub_server.py): a run's adapter and model card arrive, and a
missing token is the engine's one line in the dialog."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import TOKEN, FakeHub

from gui.context import AppContext
from gui.pages.runs import RunsPage

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "peft", "trl")),
    reason="the engine's packages are not installed here")

ENGINE_TIMEOUT_MS = 120_000
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch):
    with FakeHub([]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield hub


def use_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str | None) -> None:
    keyring_file = tmp_path / "keyring.json"
    keyring_file.write_text(json.dumps({"tunebench/huggingface": token} if token else {}), encoding="utf-8")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "file_keyring.FileKeyring")
    monkeypatch.setenv("TUNEBENCH_TEST_KEYRING", str(keyring_file))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def runs_page(qtbot, tiny_model_dir) -> RunsPage:
    done = subprocess.run([sys.executable, "-m", "engine", "train", "--model", str(tiny_model_dir), "--device",
                           "cpu", "--max-steps", "1", "--max-length", "128", "--name", "Kettle helper"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    page = RunsPage(AppContext.from_environment())
    qtbot.addWidget(page)
    assert page.select_run(page.model.row_at(0).id) and page.push_action.isEnabled()
    return page


def open_dialog(page: RunsPage):
    page.push_action.trigger()
    dialog = page.push_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.repo_edit.placeholderText() == "your-name/kettle-helper"
    return dialog


def test_a_run_is_pushed_with_its_model_card(qtbot, runs_page, fake_hub, monkeypatch, tmp_path) -> None:
    use_keyring(monkeypatch, tmp_path, TOKEN)
    dialog = open_dialog(runs_page)
    assert not dialog.push_button.isEnabled()  # no repository named yet
    dialog.repo_edit.setText("not a repo")
    assert not dialog.push_button.isEnabled()
    dialog.repo_edit.setText("me/kettle-helper")
    dialog.private_check.setChecked(True)
    dialog.push_button.click()
    assert not dialog.repo_edit.isEnabled()  # nothing changes under a push
    qtbot.waitUntil(lambda: not dialog.client.is_active(), timeout=ENGINE_TIMEOUT_MS)
    assert not dialog.status_line.is_error(), dialog.status_line.text()
    assert dialog.status_line.text() == f"Pushed to {fake_hub.url}/me/kettle-helper"
    assert runs_page.status_line.text() == f"Pushed Kettle helper to {fake_hub.url}/me/kettle-helper"
    repo = fake_hub.repos["me/kettle-helper"]
    assert repo.private and {"adapter_model.safetensors", "README.md"} <= set(repo.files)
    assert b"library_name: peft" in repo.files["README.md"]


def test_a_push_without_a_token_says_so_in_one_line(qtbot, runs_page, fake_hub, monkeypatch, tmp_path) -> None:
    use_keyring(monkeypatch, tmp_path, None)
    dialog = open_dialog(runs_page)
    dialog.repo_edit.setText("me/kettle-helper")
    dialog.push_button.click()
    qtbot.waitUntil(lambda: not dialog.client.is_active(), timeout=ENGINE_TIMEOUT_MS)
    assert dialog.status_line.is_error() and "\n" not in dialog.status_line.text()
    assert "no token is stored" in dialog.status_line.text() and "models login" in dialog.status_line.text()
    assert "me/kettle-helper" not in fake_hub.repos and dialog.push_button.isEnabled()
