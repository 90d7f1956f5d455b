"""The experiment page's plot: the primary metric's difference (challenger minus champion) at
each look, with its always-valid confidence sequence as a band (the sequential boundary: the
rule decides when the band leaves zero) and the fixed-horizon interval beside it, drawn with
the monitor page's geometry (`webapp.monitor.charts.time_plot`)."""

from __future__ import annotations

from labeling.experiments import ARMS

from ..models import ExperimentLook
from ..monitor.charts import time_plot


def lift_plot(looks: list[ExperimentLook], mde: float) -> dict | None:
    """The plot's geometry, or None before two looks with a difference."""
    rows = [
        (look, look.figures.get("primary") or {})
        for look in looks
        if (look.figures.get("primary") or {}).get("diff") is not None
    ]
    if len(rows) < 2:
        return None

    def point(look, primary, kind):
        interval = primary.get(kind) or {}
        return {
            "value": primary["diff"],
            "lo": interval.get("lo"),
            "hi": interval.get("hi"),
            "n": sum((look.figures.get("units") or {}).values()),
            "title": look.at.strftime("%Y-%m-%d %H:%M UTC"),
        }

    plot = time_plot(
        list(range(len(rows))),
        [look.at.strftime("%m-%d %H:%M") for look, _ in rows],
        set(),
        [
            {
                "key": "sequential",
                "label": "difference, with its confidence sequence",
                "points": [point(look, p, "sequential") for look, p in rows],
            },
            {
                "key": "fixed",
                "label": "fixed-horizon interval (not valid when peeking)",
                "points": [point(look, p, "fixed") for look, p in rows],
            },
        ],
        [{"value": 0.0, "label": "no difference"}, {"value": mde, "label": "the design's effect"}],
        spacing=1.0,
        unit=False,
        wide=True,
    )
    return plot


def arms_plot(looks: list[ExperimentLook], metric: str) -> dict | None:
    """Each arm's value of `metric` at each look with its 95% interval, or None before two
    looks with a value."""
    rows = [
        (look, look.figures.get("metrics") or {})
        for look in looks
        if any(
            ((look.figures.get("metrics") or {}).get(arm) or {}).get(metric, {}).get("value")
            is not None
            for arm in ARMS
        )
    ]
    if len(rows) < 2:
        return None

    def point(look, metrics, arm):
        m = (metrics.get(arm) or {}).get(metric) or {}
        if m.get("value") is None:
            return None
        return {
            "value": m["value"],
            "lo": m.get("lo"),
            "hi": m.get("hi"),
            "n": m.get("units"),
            "title": look.at.strftime("%Y-%m-%d %H:%M UTC"),
        }

    return time_plot(
        list(range(len(rows))),
        [look.at.strftime("%m-%d %H:%M") for look, _ in rows],
        set(),
        [
            {"key": arm, "label": arm, "points": [point(look, m, arm) for look, m in rows]}
            for arm in ARMS
        ],
        [],
        spacing=1.0,
        unit=True,
        wide=True,
    )
