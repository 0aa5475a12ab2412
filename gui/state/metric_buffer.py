"""Growing numpy arrays of (step, value) per metric series. Qt-free.

Appending is amortised O(1): capacity doubles when full, and ``arrays`` returns views, so a
10 Hz redraw never copies the whole history.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

INITIAL_CAPACITY = 256


class _Series:
    def __init__(self) -> None:
        self.x = np.empty(INITIAL_CAPACITY, dtype=np.float64)
        self.y = np.empty(INITIAL_CAPACITY, dtype=np.float64)
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == len(self.x):
            self.x = np.resize(self.x, 2 * len(self.x))
            self.y = np.resize(self.y, 2 * len(self.y))
        self.x[self.size] = x
        self.y[self.size] = y
        self.size += 1


class MetricBuffer:
    """Metric history of one run: ``append("loss", step, 2.31)``, then ``arrays("loss")``."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self.version = 0  # bumped on every change, so a redraw timer can skip idle ticks

    def append(self, name: str, x: float, y: float) -> None:
        self._series.setdefault(name, _Series()).append(float(x), float(y))
        self.version += 1

    def append_values(self, step: float, values: Mapping[str, object], names: Iterable[str]) -> None:
        """Appends each wanted metric that is present and numeric; others are skipped."""
        if not _is_number(step):
            return
        for name in names:
            value = values.get(name)
            if _is_number(value):
                self.append(name, step, value)  # type: ignore[arg-type]

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        series = self._series.get(name)
        if series is None:
            return np.empty(0), np.empty(0)
        return series.x[: series.size], series.y[: series.size]

    def length(self, name: str) -> int:
        series = self._series.get(name)
        return series.size if series else 0

    def names(self) -> list[str]:
        return list(self._series)

    def last(self, name: str) -> float | None:
        series = self._series.get(name)
        return float(series.y[series.size - 1]) if series and series.size else None

    def truncate_after(self, x: float) -> None:
        """Drops points past ``x`` in every series: a resumed run repeats the steps its crashed
        attempt logged after the checkpoint it resumes from."""
        for series in self._series.values():
            series.size = int(np.searchsorted(series.x[: series.size], x, side="right"))
        self.version += 1

    def clear(self) -> None:
        self._series.clear()
        self.version += 1

    def __len__(self) -> int:
        """Points in the longest series (the number of logged steps)."""
        return max((s.size for s in self._series.values()), default=0)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def smooth_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with weight ``weight`` (0 = raw,
    0.99 = very smooth), debiased so the first points are not pulled towards zero. Non-finite
    points stay as they are and do not enter the average."""
    out = np.array(values, dtype=np.float64, copy=True)
    if weight <= 0 or out.size == 0:
        return out
    last, count = 0.0, 0
    for i, value in enumerate(out):
        if not np.isfinite(value):
            continue
        last = last * weight + (1.0 - weight) * value
        count += 1
        out[i] = last / (1.0 - weight ** count)
    return out
