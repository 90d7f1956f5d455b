"""Round axis ticks for the app's server-side SVG charts (the learning curve, the monitor)."""

from __future__ import annotations

import math


def nice_step(span: float, count: int, whole: bool = False) -> float:
    """A round tick step (1, 2 or 5 times a power of ten, and 2.5 for `whole` numbers from 25
    on) giving about `count` ticks."""
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 2.5, 5, 10) if whole and power >= 10 else (1, 2, 5, 10)
    return next(m * power for m in steps if m * power >= raw)


def ticks(lo: float, hi: float, step: float) -> list[float]:
    """The multiples of `step` from `lo` to `hi`."""
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 10) for i in range(max(count, 0))]
