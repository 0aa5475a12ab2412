"""Runs ``tunebench-engine batch`` for the Prompt page's columns and turns its messages into
results-table rows.

The columns become the batch's configurations (a JSON file in the cache, named by column
letter); each finished row arrives as a ``progress`` message carrying it. The engine keeps the
record (``<workspace>/batches/<id>/`` with results.jsonl/csv/md), so a batch survives the window.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from engine.core import paths, protocol, workspace
from gui.engine_client import EngineClient
from gui.state import remote_keys
from gui.state.prompt_batch import BatchRow
from gui.state.prompt_params import ColumnConfig

CommandFactory = Callable[[], list[str]]
EnvFactory = Callable[[], dict[str, str]]


def write_configs(columns: list[tuple[str, ColumnConfig]]) -> Path:
    """The columns as a batch configuration file (JSON list), written atomically to the cache.
    A remote column names its key's environment variable (:func:`key_env`), never the key."""
    entries = [_config_entry(letter, config) for letter, config in columns]
    path = paths.cache_dir() / "batch-configs" / f"{uuid.uuid4().hex}.json"
    workspace.atomic_write_json(path, entries)
    return path


def _config_entry(letter: str, config: ColumnConfig) -> dict[str, Any]:
    if not config.base_url:
        return {"name": letter, "model": config.model or "default", "adapter": config.active_adapter,
                "params": config.params.to_wire(), **config.local_fields()}
    return {"name": letter, "model": config.model, "base_url": config.base_url,
            "api_key_env": key_variable(letter), "params": config.params.to_wire()}


def key_variable(letter: str) -> str:
    return f"TUNEBENCH_REMOTE_KEY_{letter}"


def key_env(columns: list[tuple[str, ColumnConfig]]) -> dict[str, str]:
    """The remote columns' keys for the batch process's environment (not its command line, which
    other users of the machine can read)."""
    return {key_variable(letter): remote_keys.get(config.base_url) for letter, config in columns
            if config.base_url}


def row_from_engine(row: dict[str, Any]) -> BatchRow:
    return BatchRow(prompt=str(row.get("prompt", "")), case=int(row.get("case") or 0),
                    column=str(row.get("config", "")), model=str(row.get("model", "")),
                    adapter=str(row.get("adapter", "")), input=str(row.get("input", "")),
                    answer=str(row.get("text", "")), finish_reason=str(row.get("finish_reason") or "stop"),
                    ttft_s=row.get("ttft_s"), tokens_per_s=row.get("tokens_per_s"),
                    error=str(row.get("error") or ""), backend=str(row.get("backend") or ""))


class BatchRunner(QObject):
    """One batch engine process at a time."""

    sig_row = Signal(object, int, int)  # BatchRow, rows done, rows in all
    sig_finished = Signal(bool, str)  # ok (finished or cancelled), one line for the user

    def __init__(self, command: CommandFactory, env: EnvFactory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._command, self._env = command, env
        self._config_file: Path | None = None
        self._result: dict[str, Any] = {}
        self.client = EngineClient(self, grace_s=30)
        self.client.sig_progress.connect(self._on_client_progress)
        self.client.sig_result.connect(lambda m: self._result.update(m.get("data") or {}))
        self.client.sig_finished.connect(self._on_client_finished)

    def is_running(self) -> bool:
        return self.client.is_active()

    def start(self, source_args: list[str], columns: list[tuple[str, ColumnConfig]]) -> None:
        """``source_args``: ``--suite NAME`` or ``--file F --column C [--mode M] [--system S]``."""
        self._config_file = write_configs(columns)
        self._result = {}
        argv = self._command() + ["batch", "--json", *source_args, "--config", str(self._config_file)]
        self.client.start(argv, {**self._env(), **key_env(columns)})

    def cancel(self) -> None:
        self.client.cancel()

    def shutdown(self) -> None:
        self.client.kill()

    def _on_client_progress(self, message: dict[str, Any]) -> None:
        if isinstance(message.get("row"), dict):
            self.sig_row.emit(row_from_engine(message["row"]), int(message["current"]), int(message["total"]))

    def _on_client_finished(self, exit_code: int, summary: str) -> None:
        if self._config_file is not None:
            self._config_file.unlink(missing_ok=True)
        ok = exit_code in (protocol.ExitCode.OK, protocol.ExitCode.CANCELLED)
        if not ok:
            self.sig_finished.emit(False, summary.splitlines()[0])
            return
        rows, folder = self._result.get("rows"), self._result.get("folder", "")
        verb = "stopped" if exit_code == protocol.ExitCode.CANCELLED else "finished"
        failed = int(self._result.get("errors") or 0)
        answers = int(rows or 0) - failed
        problems = f"; {failed} failed (the table says why)" if failed else ""
        self.sig_finished.emit(True, f"Batch {verb}: {answers} answers saved in {folder}{problems}."
                               if folder else f"Batch {verb}.")
