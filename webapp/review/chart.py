"""The agreement page's plot: each expert's agreement with the final labels as a dot on a 0-1
scale with its 95% Wilson interval as a bar, one row per expert, drawn as inline SVG like the
monitor's plots (`webapp/templates/monitor/_chart.html`) with the same round ticks."""

from __future__ import annotations

from ..axes import nice_step, ticks

WIDTH = 560
ROW = 24  # height of one expert's row
LEFT, RIGHT, TOP, BOTTOM = 150, 16, 10, 34
NAME_CHARS = 22  # longer names are cut (the table beside the plot shows them whole)


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def expert_plot(experts: list[dict], names: dict[str, str]) -> dict | None:
    """The plot's geometry, or None when no expert shares an item with another.

    Args:
        experts: The `experts` of `project_agreement`.
        names: annotator -> what people read (an email), for the row labels.

    Returns:
        `width`, `height`, the frame (`left`, `right`, `top`, `bottom`), `x_ticks` as
        (position, label), and `rows`, each with the expert's `name`, `label` (shortened),
        `y`, the figures (`rate`, `low`, `high`, `items`) and their positions (`x`, `x_lo`,
        `x_hi`).
    """
    shown = [e for e in experts if e["final"] is not None]
    if not shown:
        return None
    height = TOP + ROW * len(shown) + BOTTOM
    right, bottom = WIDTH - RIGHT, height - BOTTOM

    def x_of(v: float) -> float:
        return round(LEFT + v * (right - LEFT), 1)

    rows = []
    for i, e in enumerate(shown):
        final = e["final"]
        name = names.get(e["annotator"], e["annotator"])
        rows.append(
            {
                "name": name,
                "label": _short(name),
                "y": round(TOP + ROW * (i + 0.5), 1),
                **{k: final[k] for k in ("rate", "low", "high", "items")},
                "x": x_of(final["rate"]),
                "x_lo": x_of(final["low"]),
                "x_hi": x_of(final["high"]),
            }
        )
    return {
        "width": WIDTH,
        "height": height,
        "left": LEFT,
        "right": right,
        "top": TOP,
        "bottom": bottom,
        "x_ticks": [(x_of(t), f"{t:g}") for t in ticks(0.0, 1.0, nice_step(1.0, 5))],
        "rows": rows,
    }
