"""The Qt binding must survive a long training run's worth of calls.

PySide6 6.12.0 on Python 3.10/3.11 returns None/True/False from void methods and from
Signal.emit without taking a reference; after a few thousand calls the interpreter aborts
("Fatal Python error: none_dealloc"). pyproject.toml excludes that release; this test fails if
a broken binding gets installed again."""

from __future__ import annotations

import subprocess
import sys

from gui_helpers import TESTS

SCRIPT = """
import gui
from PySide6.QtCore import QObject, Signal, QTimer

class Source(QObject):
    sig_value = Signal(int)

source, timer, seen = Source(), QTimer(), []
source.sig_value.connect(seen.append)
for i in range(20000):
    source.sig_value.emit(i)      # returns True
    timer.setInterval(5)          # returns None
    source.sig_value.disconnect(seen.append); source.sig_value.connect(seen.append)
print("ok", len(seen))
"""


def test_many_qt_calls_do_not_exhaust_singleton_references() -> None:
    # A fresh interpreter: if the references ran out it would abort (none_dealloc), which would
    # also take a pytest process down with it.
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=TESTS.parent, capture_output=True,
                          text=True, timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok 20000"
