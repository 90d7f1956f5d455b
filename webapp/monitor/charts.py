"""The geometry of the monitor page's plots, drawn as inline SVG like the learning curve
(`webapp/runs/curve.py`, whose round-tick helpers this reuses): metrics over time with their
95% intervals as bands and alert thresholds as dashed lines, and the drift table's sparklines.

Everything here takes numbers and returns numbers and strings; `board.py` reads the windows.
The learning curve's helpers are imported where they are used: importing `webapp.runs` loads
its views, which import this package's views, so a module-level import here is a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..axes import nice_step, ticks

WIDTH, HEIGHT = 560, 230
WIDE_WIDTH, WIDE_HEIGHT = 1100, 280  # a plot across the page (the accuracy's three series)
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 14, 40
SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 132, 30, 3
# Tick labels on the time axis at most (the newest window is always labelled).
TIME_TICKS = 7
WIDE_TIME_TICKS = 14


def _y_scale(values: list[float], unit: bool, whole: bool) -> tuple[float, float, float]:
    """The y range and tick step: within [0, 1] for rates (at least a tenth of it), from 0
    for counts; a margin so nothing sits on the frame."""
    if whole:
        hi = max(max(values, default=0.0), 1.0)
        step = nice_step(hi, 4, whole=True)
        if step < 1:
            step = 1.0
        return 0.0, hi * 1.08, step
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if unit:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    if hi - lo < 0.1:
        middle = (hi + lo) / 2
        if unit:
            middle = min(max(middle, 0.05), 0.95)
        lo, hi = middle - 0.05, middle + 0.05
    step = nice_step(hi - lo, 4)
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    if unit:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi, step


def _segments(indices: list[int], starts: set[int]) -> list[list[int]]:
    """Split the indices of the points present into runs with no gap (a missing value, or a
    window in `starts` that does not follow the previous one)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1 and i not in starts:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def time_plot(
    times: Sequence[float],
    labels: Sequence[str],
    gaps: set[int],
    series: Sequence[dict],
    lines: Sequence[dict],
    *,
    spacing: float,
    unit: bool = True,
    whole: bool = False,
    wide: bool = False,
) -> dict:
    """The geometry of one metric over time.

    Args:
        times: Each window's start, in seconds from any origin, ascending.
        labels: Each window's tick label.
        gaps: Indices of windows that do not follow the previous one (a line breaks there).
        series: Per series `key`, `label` and `points`, one per window: None or a dict with
            `value` and optional `lo`, `hi` (its interval) and `title`.
        lines: Threshold lines, each with `value` (None: not drawn) and whatever else the
            template shows.
        spacing: The windows' length in the same unit as `times` (half of it pads each end).
        unit: The metric lives in [0, 1].
        whole: The metric counts things (the axis starts at 0, ticks are whole).
        wide: Draw it across the page (`WIDE_WIDTH` by `WIDE_HEIGHT`).

    Returns:
        `width`, `height`, the frame (`left`, `right`, `top`, `bottom`), `x_ticks` and
        `y_ticks` as (position, label), `series` (per series its `path`, `bands` as closed
        paths, one per run of windows with intervals, and `marks` with positions), whether any
        point has an interval (`intervals`), and the drawn `lines` with their `y`.
    """
    values = [
        v
        for s in series
        for p in s["points"]
        if p is not None
        for v in (p["value"], p.get("lo"), p.get("hi"))
        if v is not None
    ]
    values += [line["value"] for line in lines if line["value"] is not None]
    y_lo, y_hi, y_step = _y_scale(values, unit, whole)
    x_lo, x_hi = times[0] - spacing / 2, times[-1] + spacing / 2
    width, height = (WIDE_WIDTH, WIDE_HEIGHT) if wide else (WIDTH, HEIGHT)
    inner_w, inner_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x_of(t: float) -> float:
        return round(LEFT + (t - x_lo) / (x_hi - x_lo) * inner_w, 1)

    def y_of(v: float) -> float:
        return round(TOP + (y_hi - v) / (y_hi - y_lo) * inner_h, 1)

    drawn = []
    for s in series:
        present = [i for i, p in enumerate(s["points"]) if p is not None and p["value"] is not None]
        marks = []
        for i in present:
            p = s["points"][i]
            bounded = p.get("lo") is not None and p.get("hi") is not None
            marks.append(
                {
                    **p,
                    "index": i,
                    "x": x_of(times[i]),
                    "y": y_of(p["value"]),
                    "y_lo": y_of(p["lo"]) if bounded else None,
                    "y_hi": y_of(p["hi"]) if bounded else None,
                    "alone": False,  # an interval with no neighbour to make a band with
                }
            )
        by_index = {m["index"]: m for m in marks}
        path, bands = [], []
        for run in _segments(present, gaps):
            path.append(
                " ".join(
                    f"{'M' if k == 0 else 'L'}{by_index[i]['x']},{by_index[i]['y']}"
                    for k, i in enumerate(run)
                )
            )
            for band in _segments([i for i in run if by_index[i]["y_lo"] is not None], set()):
                if len(band) == 1:
                    by_index[band[0]]["alone"] = True
                else:
                    top = [f"{by_index[i]['x']},{by_index[i]['y_hi']}" for i in band]
                    bottom = [f"{by_index[i]['x']},{by_index[i]['y_lo']}" for i in band[::-1]]
                    bands.append("M" + " L".join(top + bottom) + " Z")
        drawn.append({**s, "path": " ".join(path), "bands": bands, "marks": marks})
    step = max(1, -(-len(times) // (WIDE_TIME_TICKS if wide else TIME_TICKS)))
    ticked = range(len(times) - 1, -1, -step)
    return {
        "width": width,
        "height": height,
        "left": LEFT,
        "right": width - RIGHT,
        "top": TOP,
        "bottom": height - BOTTOM,
        "x_ticks": [(x_of(times[i]), labels[i]) for i in sorted(ticked)],
        "y_ticks": [
            (y_of(t), f"{t:g}" if whole else f"{t:.2f}") for t in ticks(y_lo, y_hi, y_step)
        ],
        "series": drawn,
        "intervals": any(m["y_lo"] is not None for s in drawn for m in s["marks"]),
        "lines": [
            {**line, "y": y_of(line["value"])} for line in lines if line["value"] is not None
        ],
    }


def sparkline(values: Sequence[float | None], threshold: float | None) -> dict | None:
    """A small line of a drift statistic over the windows, from 0, with its drift cut-off;
    None without a value."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    hi = max([*present, threshold or 0.0]) * 1.1 or 1.0
    n = len(values)

    def x_of(i: int) -> float:
        inner = SPARK_WIDTH - 2 * SPARK_PAD
        return round(SPARK_PAD + (inner * i / (n - 1) if n > 1 else inner / 2), 1)

    def y_of(v: float) -> float:
        return round(SPARK_PAD + (hi - v) / hi * (SPARK_HEIGHT - 2 * SPARK_PAD), 1)

    runs = _segments([i for i, v in enumerate(values) if v is not None], set())
    path = " ".join(
        " ".join(f"{'M' if k == 0 else 'L'}{x_of(i)},{y_of(values[i])}" for k, i in enumerate(run))
        for run in runs
    )
    last = max(i for i, v in enumerate(values) if v is not None)
    return {
        "width": SPARK_WIDTH,
        "height": SPARK_HEIGHT,
        "path": path,
        "points": len(present),
        "last": (x_of(last), y_of(values[last])),
        "threshold_y": y_of(threshold) if threshold is not None else None,
    }
