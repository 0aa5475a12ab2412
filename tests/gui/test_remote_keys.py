"""Remote columns' keys: kept in the OS keyring when a backend exists, else for the session only;
settings and batch configuration files hold a flag and a variable name, never the key."""

from __future__ import annotations

import json

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from gui.state import remote_keys
from gui.state.prompt_params import ColumnConfig
from gui.widgets.prompt_batch_runner import key_env, write_configs

URL = "http://127.0.0.1:11434/v1"


class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps passwords in a dict (the tests' stand-in for the OS's)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username), None)


@pytest.fixture
def backend():
    """Swaps the process's keyring backend and restores it; session copies are dropped around it."""
    before = keyring.get_keyring()
    remote_keys.forget_session()

    def use(chosen):
        keyring.set_keyring(chosen)
        return chosen

    yield use
    keyring.set_keyring(before)
    remote_keys.forget_session()


def test_a_key_goes_to_the_keyring_and_outlives_the_session(backend) -> None:
    memory = backend(MemoryKeyring())
    assert remote_keys.persistent()
    assert remote_keys.store(URL, "sk-secret") is True
    assert memory.passwords == {(remote_keys.SERVICE, URL): "sk-secret"}
    remote_keys.forget_session()  # a new session reads it back from the keyring
    assert remote_keys.get(URL) == "sk-secret"
    assert remote_keys.store(URL, "") is False and memory.passwords == {}


def test_without_a_backend_the_key_is_kept_for_the_session_only(backend) -> None:
    backend(fail.Keyring())
    assert not remote_keys.persistent()
    assert remote_keys.store(URL, "sk-secret") is False
    assert remote_keys.get(URL) == "sk-secret"
    remote_keys.forget_session()
    assert remote_keys.get(URL) == ""


def test_settings_and_batch_files_hold_no_key(backend, tmp_path) -> None:
    backend(MemoryKeyring())
    remote_keys.store(URL, "sk-secret")
    settings = remote_keys.remember({"other": 1}, URL, "llama3.2")
    settings = remote_keys.remember(settings, "http://127.0.0.1:1234/v1", "qwen")
    assert settings["remote_servers"] == [
        {"base_url": "http://127.0.0.1:1234/v1", "model": "qwen", "has_key": False},
        {"base_url": URL, "model": "llama3.2", "has_key": True}]
    assert "sk-secret" not in json.dumps(settings) and remote_keys.recent({"remote_servers": "junk"}) == []
    columns = [("A", ColumnConfig()), ("B", ColumnConfig(model="llama3.2", base_url=URL))]
    path = write_configs(columns)
    text = path.read_text(encoding="utf-8")
    assert "sk-secret" not in text
    assert json.loads(text)[1] == {"name": "B", "model": "llama3.2", "base_url": URL,
                                   "api_key_env": "TUNEBENCH_REMOTE_KEY_B",
                                   "params": columns[1][1].params.to_wire()}
    assert key_env(columns) == {"TUNEBENCH_REMOTE_KEY_B": "sk-secret"}
    assert columns[1][1].target_fields()["remote"] == {"base_url": URL, "api_key": "sk-secret"}
    assert "sk-secret" not in json.dumps(columns[1][1].describe())


def test_a_column_switched_to_a_server_starts_on_the_last_one_used(backend, make_prompt_page) -> None:
    backend(fail.Keyring())
    page = make_prompt_page()
    remote_keys.store(URL, "sk-session")
    page._context.save_settings(remote_keys.remember({}, URL, "llama3.2"))
    column = page.columns[0]
    column.source_combo.setCurrentIndex(column.source_combo.findData("server"))
    assert column.url_edit.text() == URL and column.key_edit.text() == "sk-session"
    assert column.config.base_url == URL and column.config.model == "llama3.2"
    assert not column.key_note.isHidden() and column.local_box.isHidden()
    assert "local only" in column.params_label.text()
    column.source_combo.setCurrentIndex(column.source_combo.findData("local"))
    assert column.config.base_url == "" and column.config.model == "default"
    assert "local only" not in column.params_label.text()
