#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Render Tunebench's app icon from ``tunebench.svg`` to PNG files.

Writes ``tunebench.png`` (256x256) and ``tunebench-64.png`` (64x64) beside this
script. Needs PySide6 (the GUI extra); runs headless:

    QT_QPA_PLATFORM=offscreen python resources/icons/render_icons.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

HERE = Path(__file__).resolve().parent
SVG = HERE / "tunebench.svg"
OUTPUTS = {
    "tunebench.png": 256,
    "tunebench-64.png": 64,
}


def render(renderer: QSvgRenderer, size: int, path: Path) -> None:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    # Save to a temporary name first so a failed write never leaves half a file.
    tmp = path.with_name(path.name + ".tmp")
    if not image.save(str(tmp), "PNG"):
        raise RuntimeError(f"could not write {tmp}")
    os.replace(tmp, path)


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"could not load {SVG}", file=sys.stderr)
        return 1
    for name, size in OUTPUTS.items():
        render(renderer, size, HERE / name)
        print(f"wrote {name} ({size}x{size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
