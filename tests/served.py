"""A real `tunebench-engine serve` on 127.0.0.1 for tests that need an OpenAI-compatible server
(remote columns, engine and GUI side). Imported by name: tests/conftest.py puts tests/ on the path."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from engine.core import protocol


@contextlib.contextmanager
def serving(model_dir: Path, home: Path, *flags: str) -> Iterator[dict[str, Any]]:
    """Yields serve's start result (url, token, model); stops the server afterwards."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", TUNEBENCH_HOME=str(home))
    process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--json", "--device", "cpu",
                                "--threads", "1", "--model", str(model_dir), *flags], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = None
    assert process.stdout is not None and process.stdin is not None
    for line in process.stdout:
        message = protocol.decode(line)
        assert message["type"] != "error", message
        if message["type"] == "result":
            info = message["data"]
            break
    assert info and info["url"].startswith("http://127.0.0.1:")
    try:
        yield {**info, "process": process}
    finally:
        if process.poll() is None:
            process.stdin.write(protocol.encode(protocol.make("cancel")))
            process.stdin.flush()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
