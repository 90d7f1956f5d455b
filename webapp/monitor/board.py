"""What the monitor and alerts pages show, read from the stored windows, rules and alerts.

Every figure comes from `MonitorWindow` rows as the monitoring job stored them (one indexed
read of at most 90 rows); thresholds are the enabled rules' as the evaluator sees them, a
champion-relative rule's resolved against the current champion's held-out metrics.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select

from labeling import alerting, drift

from .. import monitoring
from ..alerts import monitored_key, rule_dict
from ..enums import AlertState
from ..extensions import db
from ..models import Alert, AlertRule, MonitorWindow, Prediction, Project, User, utcnow
from ..training import champion_version
from . import charts

RANGES = (7, 30, 90)  # the time ranges offered, in windows
DEFAULT_RANGE = 30
RECENT_ALERTS = 10
Z95 = 1.959963984540054  # a 95% interval is ± this many standard deviations


def _rate(block: dict | None, n: int | None = None) -> dict | None:
    """A `{value, lo, hi}` figure as a plotted point (None when undefined)."""
    if not block or block.get("value") is None:
        return None
    return {"value": block["value"], "lo": block.get("lo"), "hi": block.get("hi"), "n": n}


def _labeled(source: str) -> Callable[[MonitorWindow], dict | None]:
    """The realised accuracy of one source of labels (`audit` or `all`)."""

    def point(w: MonitorWindow) -> dict | None:
        block = (w.stats.get("labeled") or {}).get(source) or {}
        return _rate(block.get("accuracy"), block.get("n"))

    return point


def _cbpe(w: MonitorWindow) -> dict | None:
    """CBPE's accuracy with a 95% band (it stores ±3σ, NannyML's band; the page shows 95%
    intervals everywhere, so the bands compare)."""
    block = (w.estimate or {}).get("accuracy") or {}
    value, std = block.get("value"), block.get("std")
    if value is None:
        return None
    n = (w.estimate or {}).get("n")
    if std is None:
        return {"value": value, "lo": None, "hi": None, "n": n}
    return {
        "value": value,
        "lo": max(0.0, value - Z95 * std),
        "hi": min(1.0, value + Z95 * std),
        "n": n,
    }


def _volume(w: MonitorWindow) -> dict:
    """Predictions in the window."""
    return {"value": w.stats.get("volume", 0), "n": None}


def _correction(w: MonitorWindow) -> dict | None:
    """The share of feedback verdicts that correct the model."""
    block = w.stats.get("feedback") or {}
    return _rate(block.get("correction_rate"), block.get("n"))


def _confidence(w: MonitorWindow) -> dict | None:
    """The mean top probability of the window's predictions."""
    block = w.stats.get("confidence") or {}
    if block.get("mean") is None:
        return None
    return {"value": block["mean"], "n": block.get("n")}


def _ece(w: MonitorWindow) -> dict | None:
    """The expected calibration error on the window's audits."""
    block = ((w.stats.get("labeled") or {}).get("audit") or {}).get("calibration") or {}
    if block.get("ece") is None:
        return None
    return {"value": block["ece"], "n": block.get("n")}


class Series(NamedTuple):
    """One line of a plot: its key (a CSS class), its legend label and how a window gives it."""

    key: str
    label: str
    point: Callable[[MonitorWindow], dict | None]


class Panel(NamedTuple):
    """One plot of the monitor page."""

    key: str
    title: str
    caption: str
    metrics: tuple[str, ...]  # the rules' metric names drawn as thresholds here
    series: tuple[Series, ...]
    whole: bool = False  # it counts things
    wide: bool = False  # drawn across the page


PANELS = (
    Panel(
        "accuracy",
        "Accuracy",
        "Audits are a uniform random sample of the traffic, so their accuracy is unbiased; "
        "all labels lean toward the disputed and uncertain items the queue serves first. CBPE "
        "estimates accuracy from the model's calibrated confidence without labels: it assumes "
        "the inputs-to-label relation has not changed, so when the audits leave its band, "
        "that assumption broke.",
        ("accuracy", "all.accuracy", "cbpe.accuracy"),
        (
            Series("audit", "audits (unbiased)", _labeled("audit")),
            Series("all", "all labels (biased toward disputed items)", _labeled("all")),
            Series("cbpe", "estimated (CBPE)", _cbpe),
        ),
        wide=True,
    ),
    Panel(
        "volume",
        "Prediction volume",
        "Predictions per window; a gap is a window without any.",
        ("volume",),
        (Series("volume", "predictions", _volume),),
        whole=True,
    ),
    Panel(
        "correction-rate",
        "Feedback correction rate",
        "Share of end-user feedback that corrects the model.",
        ("feedback.correction_rate",),
        (Series("correction-rate", "corrections", _correction),),
    ),
    Panel(
        "confidence",
        "Mean confidence",
        "The model's mean top probability over every prediction (no interval: it is the whole "
        "window's mean, not a sample's).",
        ("confidence.mean",),
        (Series("confidence", "mean confidence", _confidence),),
    ),
    Panel(
        "ece",
        "Calibration (ECE)",
        "Expected calibration error on the audits: how far confidence is from accuracy "
        "(lower is better; no interval is stored).",
        ("calibration.ece",),
        (Series("ece", "ECE on audits", _ece),),
    ),
)


def _label_of(start: datetime, length: int) -> str:
    """A window's tick label: its day, and its time unless windows are whole days."""
    return start.strftime("%m-%d" if length % 86400 == 0 else "%m-%d %H:%M")


def _window_title(w: MonitorWindow, length: int) -> str:
    """A window's name in tooltips and notes."""
    return w.start.strftime("%Y-%m-%d" if length % 86400 == 0 else "%Y-%m-%d %H:%M")


def rules_of(project: Project) -> list[dict]:
    """The project's rules as the evaluator sees them, oldest first: per rule its row, the
    canonical metric, and the threshold now (a champion-relative one resolved)."""
    champion = champion_version(project.id)
    metrics = champion.metrics if champion is not None else None
    out = []
    for rule in db.session.scalars(
        select(AlertRule).where(AlertRule.project_id == project.id).order_by(AlertRule.id)
    ):
        ordered = rule.comparison in alerting.ORDERED_OPS
        given = rule_dict(rule)
        if not ordered:
            given["threshold"] = (rule.params or {}).get("value")
        resolved = alerting.resolve_threshold(given, metrics)
        out.append(
            {
                "rule": rule,
                "metric": resolved["metric"],
                "ordered": ordered,
                "threshold": resolved["threshold"],
                "tolerance": resolved["tolerance"],
                "baseline": resolved.get("baseline"),
                # Where a champion-relative threshold starts: the held-out value, or the end
                # of its interval where the evaluator starts from that (`interval_baseline`).
                "start": resolved.get("interval_baseline", resolved.get("baseline")),
                "bound": resolved["bound"],
                "min_n": resolved["min_n"],
                "severity": resolved["severity"],
                "description": resolved["description"],
            }
        )
    return out


def _lines(panel: Panel, rules: list[dict]) -> list[dict]:
    """One dashed line per distinct threshold of the panel's enabled rules."""
    by_value: dict[float, list[dict]] = defaultdict(list)
    for r in rules:
        if r["rule"].enabled and r["ordered"] and r["metric"] in panel.metrics:
            if r["threshold"] is not None:
                by_value[round(r["threshold"], 6)].append(r)
    return [
        {"value": value, "rules": found, "names": ", ".join(r["rule"].name for r in found)}
        for value, found in sorted(by_value.items())
    ]


def _assumption_breaks(windows: list[MonitorWindow], length: int) -> list[str]:
    """Windows whose audited accuracy interval excludes the CBPE estimate."""
    out = []
    for w in windows:
        audit, estimate = _labeled("audit")(w), _cbpe(w)
        if audit and estimate and audit["lo"] is not None and audit["hi"] is not None:
            if not audit["lo"] <= estimate["value"] <= audit["hi"]:
                out.append(_window_title(w, length))
    return out


def panels(windows: list[MonitorWindow], rules: list[dict], length: int) -> list[dict]:
    """Every panel's plot over the windows (oldest first), with its thresholds."""
    origin = windows[0].start
    times = [(w.start - origin).total_seconds() for w in windows]
    labels = [_label_of(w.start, length) for w in windows]
    gaps = {i for i in range(1, len(times)) if times[i] - times[i - 1] > length}
    out = []
    for panel in PANELS:
        series = []
        for s in panel.series:
            points = []
            for w in windows:
                point = s.point(w)
                if point is not None:
                    point = {**point, "title": _window_title(w, length)}
                points.append(point)
            series.append({"key": s.key, "label": s.label, "points": points})
        lines = _lines(panel, rules)
        plot = charts.time_plot(
            times,
            labels,
            gaps,
            series,
            lines,
            spacing=length,
            unit=not panel.whole,
            whole=panel.whole,
            wide=panel.wide,
        )
        empty = not any(m for s in plot["series"] for m in s["marks"])
        out.append(
            {
                "panel": panel,
                "plot": plot,
                "empty": empty,
                "breaks": _assumption_breaks(windows, length) if panel.key == "accuracy" else [],
            }
        )
    return out


def _worst(results: list[dict]) -> dict:
    """The result that decides a feature's severity: the worst, then the furthest past its
    drift cut-off."""
    return max(
        results,
        key=lambda r: (
            drift.SEVERITIES.index(r["severity"]),
            r["statistic"] / r["threshold"] if r.get("threshold") else 0.0,
        ),
    )


def drift_rows(windows: list[MonitorWindow]) -> tuple[MonitorWindow | None, list[dict]]:
    """The newest window with a drift comparison, and one row per feature of it: the method
    that decides its severity, its statistic and cut-offs, and that statistic over the
    windows."""
    latest = next((w for w in reversed(windows) if w.drift), None)
    if latest is None:
        return None, []
    grouped: dict[str, list[dict]] = defaultdict(list)
    for r in latest.drift.get("results", []):
        grouped[r["feature"]].append(r)
    rows = []
    for order, (feature, results) in enumerate(grouped.items()):
        chosen = _worst(results)
        history = []
        for w in windows:
            found = [
                r["statistic"]
                for r in (w.drift or {}).get("results", [])
                if r["feature"] == feature and r["method"] == chosen["method"]
            ]
            history.append(found[0] if found else None)
        rows.append(
            {
                "feature": feature,
                "result": chosen,
                "methods": [r["method"] for r in results],
                "spark": charts.sparkline(history, chosen.get("threshold")),
                "order": (-drift.SEVERITIES.index(chosen["severity"]), order),
            }
        )
    rows.sort(key=lambda row: row["order"])
    return latest, rows


def recent_alerts(project: Project, limit: int = RECENT_ALERTS) -> list[Alert]:
    """The project's newest alerts (the (project_id, id) index, read backwards)."""
    return db.session.scalars(
        select(Alert).where(Alert.project_id == project.id).order_by(Alert.id.desc()).limit(limit)
    ).all()


def audit_boost(project: Project, now: datetime | None = None) -> dict | None:
    """The raised audit share while an alert's action holds it up, else None."""
    until, share = project.audit_boost_until, project.audit_boost_share
    if until is None or not share or until <= (now or utcnow()):
        return None
    return {"share": share, "until": until}


def board(project: Project, model: str | None, count: int) -> dict:
    """Everything the monitor page shows for one model over its newest `count` windows."""
    default = monitored_key(project)
    # The monitored model first, then the others by their newest window.
    keys = sorted(monitoring.model_keys(project), key=lambda k: k != default)
    key = model if model in keys else default
    windows = monitoring.read_windows(project, model=key, limit=count) if key else []
    length = int(project.setting("monitor_window"))
    rules = rules_of(project)
    drift_window, drift = drift_rows(windows)
    return {
        "keys": keys,
        "key": key,
        "monitored": default,
        "count": count,
        "ranges": RANGES,
        "windows": windows,
        "length": length,
        "panels": panels(windows, rules, length) if windows else [],
        "drift_window": drift_window,
        "drift": drift,
        "alerts": recent_alerts(project),
        "boost": audit_boost(project),
    }


def firing_count(project_id: int) -> int:
    """How many of the project's alerts fire unacknowledged (the banner's one query)."""
    return db.session.scalar(
        select(func.count(Alert.id)).where(
            Alert.project_id == project_id, Alert.state == AlertState.FIRING
        )
    )


def who(alerts: list[Alert]) -> dict[str, str]:
    """The people who acknowledged these alerts, by the identity stored (`user:<id>`, as
    annotations record people; an API key stays `key:<id>`), as their emails: one query."""
    ids = {
        int(a.acknowledged_by[5:])
        for a in alerts
        if a.acknowledged_by and re.fullmatch(r"user:\d{1,18}", a.acknowledged_by)
    }
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.email).where(User.id.in_(ids))).all()
    return {f"user:{uid}": email for uid, email in rows}


def state_counts(project: Project) -> dict[str, int]:
    """The project's alerts per state."""
    rows = db.session.execute(
        select(Alert.state, func.count(Alert.id))
        .where(Alert.project_id == project.id)
        .group_by(Alert.state)
    ).all()
    return {state: count for state, count in rows}


def has_predictions(project: Project) -> bool:
    """Whether the project has any prediction (one row of its (project_id, created_at) index)."""
    found = db.session.scalar(
        select(Prediction.id).where(Prediction.project_id == project.id).limit(1)
    )
    return found is not None
