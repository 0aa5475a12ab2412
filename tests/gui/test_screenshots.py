"""Every page renders with content; set TUNEBENCH_SCREENSHOTS=<folder> to keep the pictures
(e.g. to review the layout: cramped forms, cut-off labels, unreadable plots)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gui_helpers import make_dataset, make_run
from PySide6.QtGui import QImage

from engine.core import paths
from gui.main_window import MainWindow

SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")


def distinct_colours(image: QImage, step: int = 7) -> int:
    return len({image.pixel(x, y) for x in range(0, image.width(), step) for y in range(0, image.height(), step)})


def save(image: QImage, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        image.save(str(Path(SHOTS) / f"{name}.png"))


@pytest.fixture
def window(qtbot, tunebench_home):
    from queue_helpers import queue_context, stop_engines

    make_run("cpu quick demo", steps=40, adapter=True)
    make_run("longer context", steps=25)
    make_dataset(paths.datasets_dir(), "reviews", 1, 400)
    make_dataset(paths.datasets_dir(), "reviews", 2, 1250)
    make_dataset(paths.datasets_dir(), "support-faq", 1, 86, shape="messages")
    main = MainWindow(queue_context("train_tiny.ndjson", "--delay", "0.05"))
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    yield main
    stop_engines(tunebench_home)


@pytest.mark.parametrize("title", ["Datasets", "Prompt", "Evaluate", "Runs"])
def test_page_renders(qtbot, window, title):
    window.show_page(title)
    if title == "Runs":
        window.runs_page.table.selectRow(0)
    qtbot.wait(50)
    image = window.grab().toImage()
    save(image, title.lower())
    assert distinct_colours(image) > 20
    if title == "Runs":
        assert distinct_colours(window.runs_page.plot.grab().toImage(), step=3) > 10


def test_train_page_renders_mid_run(qtbot, window):
    train = window.train_page
    train.start_button.click()
    qtbot.waitUntil(lambda: train.plot.buffer.length("loss") >= 7, timeout=15_000)
    train.plot.redraw()
    qtbot.wait(50)
    image = window.grab().toImage()
    save(image, "train")
    assert distinct_colours(image) > 20
    assert distinct_colours(train.plot.grab().toImage(), step=3) > 10  # axes and curves drawn
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.is_busy(), timeout=15_000)
