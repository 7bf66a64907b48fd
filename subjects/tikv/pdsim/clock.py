"""The process clock: wall time, optionally accelerated, that `/sim/advance` can jump forward."""

from __future__ import annotations

import time
from typing import Callable


class SimClock:
    def __init__(self, speed: float = 1.0, source: Callable[[], float] = time.time) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._source = source
        self._origin = source()
        self._speed = speed
        self._offset = 0.0

    def __call__(self) -> float:
        return self._origin + (self._source() - self._origin) * self._speed + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds
