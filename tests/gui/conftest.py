"""GUI tests: offscreen Qt, a fresh TUNEBENCH_HOME per test, and a fake engine subprocess."""

from __future__ import annotations

import os

# Before anything imports Qt: no display is needed (CI, SSH sessions).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The repository root for `gui`/`engine` under plain `pytest`; this folder for `gui_helpers`
# (pytest does not put test folders on the path in every import mode).
for folder in (ROOT, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from gui_helpers import FAKE_ENGINE, TRANSCRIPTS  # noqa: E402


@pytest.fixture(autouse=True)
def tunebench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own workspace, settings and cache; nothing touches the user's."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TUNEBENCH_HOME", str(home))
    return home


FakeCommand = Callable[..., list[str]]


@pytest.fixture
def fake_engine() -> FakeCommand:
    """``fake_engine("train_tiny.ndjson", "--delay", "0.05")`` → an argv prefix to use where
    the real engine command would go."""

    def command(transcript: str, *options: str) -> list[str]:
        return [sys.executable, str(FAKE_ENGINE), str(TRANSCRIPTS / transcript), *options]

    return command


@pytest.fixture
def make_context(fake_engine: FakeCommand) -> Callable[..., "AppContext"]:  # noqa: F821
    from gui.context import AppContext

    def make(transcript: str = "train_tiny.ndjson", *options: str) -> AppContext:
        return AppContext.from_environment(engine_override=fake_engine(transcript, *options))

    return make


@pytest.fixture
def make_prompt_page(qtbot, make_context):
    """``make_prompt_page("session_chat.ndjson")`` → a Prompt page on a fake session engine
    replaying that transcript; every page's session is shut down after the test."""
    from gui.pages.prompt import PromptPage

    pages: list[PromptPage] = []

    def make(transcript: str = "session_chat.ndjson", *options: str) -> PromptPage:
        page = PromptPage(make_context(transcript, *options))
        qtbot.addWidget(page)
        page.resize(1280, 760)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.shutdown()
