"""The project's learning curve: every model version's held-out metric, with its interval,
against the number of labels it trained on; and the geometry of its plot (an inline SVG).

Audits are never trained on by any version, so every version can be measured on the project's
*current* held-out set, which makes the points comparable (the metrics stored with each
version were measured on the held-out set of its day). The measurements are computed on
request and kept in a small per-process cache keyed by the project, the version and the
held-out snapshot's digest, so a new version or a new audit label costs one evaluation, not
one per version. Without a held-out set yet, each version's stored metrics are shown instead,
and say so.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from sqlalchemy import func, select

from labeling import evaluation, split
from labeling import training as models

from ..axes import nice_step, ticks
from ..extensions import db
from ..models import Item, ModelVersion, Project
from ..training import first_lane, heldout_of, load_model

log = logging.getLogger(__name__)

# The latest versions the curve shows (each may cost a model load on a cold cache).
CURVE_LIMIT = 100
CURRENT = "current_heldout"  # a point measured now, on the project's current held-out set
STORED = "stored"  # a point read from the metrics the version was recorded with
SOURCES = (CURRENT, STORED)
_CHUNK = 2000  # item ids per query when loading the held-out items' data

# (database, project, version id, version created_at, held-out digest, metric, labels) -> point
_cache: OrderedDict[tuple, dict] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 4096


def _heldout_now(project: Project) -> tuple[np.ndarray, list[str]]:
    """The ids and labels of the project's current held-out set, by id."""
    rows = db.session.execute(
        select(Item.id, Item.label, first_lane())
        .where(Item.project_id == project.id, Item.label.is_not(None), Item.excluded_at.is_(None))
        .order_by(Item.id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    held = heldout_of(project, ids, [r[2] for r in rows])
    return ids[held], [r[1] for r, keep in zip(rows, held, strict=True) if keep]


def _inputs(project: Project, ids: np.ndarray):
    """The model input of the items `ids` (in that order)."""
    data: dict[int, dict] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = [int(i) for i in ids[start : start + _CHUNK]]
        data.update(db.session.execute(select(Item.id, Item.data).where(Item.id.in_(chunk))).all())
    return models.to_matrix(project.kind, [data[int(i)] for i in ids], project.features)


def _stored_point(version: ModelVersion, metric: str) -> dict:
    """A point from the metrics the version was recorded with."""
    metrics = version.metrics or {}
    bounds = (metrics.get("intervals") or {}).get(metric) or {}
    return {
        "value": metrics.get(metric),
        "lo": bounds.get("lo"),
        "hi": bounds.get("hi"),
        "n": metrics.get("n"),
        "source": STORED,
        "judged_by": metrics.get("judged_by"),
    }


def _measured_point(version: ModelVersion, X, y: list[str], labels: list[str], metric: str):
    """A point measured now on the held-out items (X, y); the stored one if the model fails."""
    try:
        proba = models.predict_proba_for(load_model(version), X, labels)
    except Exception:
        # Whatever an unreadable artifact raises (skops, zip, pickle-free types, a feature
        # mismatch), it costs that version its fresh point, never the page.
        log.warning("learning curve: v%s could not predict", version.version, exc_info=True)
        return _stored_point(version, metric)
    predicted = [labels[i] for i in proba.argmax(axis=1)]
    measured = evaluation.evaluate(y, predicted, labels)
    bounds = measured["intervals"][metric]
    return {
        "value": measured[metric],
        "lo": bounds["lo"],
        "hi": bounds["hi"],
        "n": measured["n"],
        "source": CURRENT,
        "judged_by": None,
    }


def _measure(project: Project, versions, keys: dict, held_ids, held_labels) -> dict[int, dict]:
    """Version id -> its point on the held-out set, from the cache or measured now."""
    metric, labels = project.gate_config.metric, list(project.labels)
    measured: dict[int, dict] = {}
    with _cache_lock:
        for v in versions:
            if keys[v.id] in _cache:
                _cache.move_to_end(keys[v.id])
                measured[v.id] = _cache[keys[v.id]]
    missing = [v for v in versions if v.id not in measured]
    if not missing:
        return measured
    try:
        X = _inputs(project, held_ids)
    except ValueError:
        # A held-out row no model can read (a non-numeric feature): the retrain fails on it
        # too, and says why; here every point falls back to the stored metrics.
        log.warning("learning curve: the held-out items cannot be read", exc_info=True)
        return measured
    for v in missing:
        measured[v.id] = _measured_point(v, X, held_labels, labels, metric)
    with _cache_lock:
        for v in missing:
            _cache[keys[v.id]] = measured[v.id]
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return measured


def learning_curve(project: Project) -> dict:
    """The project's learning curve, oldest version first.

    Returns `metric` (the gate's), `heldout_size` and `heldout_digest` of the current held-out
    set, `versions` (how many the project has), `limit`, and `points`: per version `version`,
    `status`, `promoted` (it was the champion at some time), `train_size`, `value`, `lo`, `hi`,
    `n` and `source` (`current_heldout`, or `stored` when there is no held-out set yet or the
    version's model could not be loaded), and `judged_by` (how a stored value was measured,
    None for a value measured now).
    """
    metric = project.gate_config.metric
    labels = list(project.labels)
    total = db.session.scalar(
        select(func.count(ModelVersion.id)).where(ModelVersion.project_id == project.id)
    )
    versions = list(
        reversed(
            db.session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project.id)
                .order_by(ModelVersion.version.desc())
                .limit(CURVE_LIMIT)
            ).all()
        )
    )
    held_ids, held_labels = _heldout_now(project)
    digest = split.snapshot_digest(held_ids, held_labels) if len(held_ids) else None
    where = db.engine.url.render_as_string(hide_password=True)
    keys = {
        v.id: (where, project.id, v.id, v.created_at, digest, metric, tuple(labels))
        for v in versions
    }
    measured = _measure(project, versions, keys, held_ids, held_labels) if digest else {}
    points = []
    for v in versions:
        point = measured.get(v.id) or _stored_point(v, metric)
        points.append(
            {
                "version": v.version,
                "status": v.status,
                "promoted": v.promoted_at is not None,
                "train_size": v.train_size,
                **point,
            }
        )
    return {
        "metric": metric,
        "heldout_size": len(held_ids),
        "heldout_digest": digest,
        "versions": total,
        "limit": CURVE_LIMIT,
        "points": points,
    }


# ---------------------------------------------------------------------------------------------
# The plot


WIDTH, HEIGHT = 760, 320
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 26, 46  # TOP leaves room for the champion's label


def plot(curve: dict) -> dict | None:
    """The SVG geometry of a learning curve: axes with round ticks, one marker with its
    interval per version, and the line through them in version order; None without points."""
    points = [p for p in curve["points"] if p["value"] is not None]
    if not points:
        return None
    xs = [p["train_size"] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi - x_lo < 4:
        x_lo, x_hi = max(x_lo - 2, 0), x_hi + 2
    x_step = nice_step(x_hi - x_lo, 6, whole=True)
    # A margin around the points, so no marker sits on an axis.
    x_pad = (x_hi - x_lo) * 0.05
    x_lo, x_hi = max(x_lo - x_pad, 0), x_hi + x_pad
    ys = [v for p in points for v in (p["value"], p["lo"], p["hi"]) if v is not None]
    y_lo, y_hi = max(min(ys), 0.0), min(max(ys), 1.0)
    if y_hi - y_lo < 0.1:
        # At least a tenth of the scale, kept within [0, 1] (a perfect score sits at the top).
        middle = min(max((y_hi + y_lo) / 2, 0.05), 0.95)
        y_lo, y_hi = middle - 0.05, middle + 0.05
    y_step = nice_step(y_hi - y_lo, 5)
    y_pad = (y_hi - y_lo) * 0.08
    y_lo, y_hi = max(y_lo - y_pad, 0.0), min(y_hi + y_pad, 1.0)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(value: float) -> float:
        return round(LEFT + (value - x_lo) / (x_hi - x_lo) * inner_w, 1)

    def y_of(value: float) -> float:
        return round(TOP + (y_hi - value) / (y_hi - y_lo) * inner_h, 1)

    marks = []
    for p in points:
        kind = (
            "champion"
            if p["status"] == "champion"
            else ("promoted" if p["promoted"] else "not-promoted")
        )
        marks.append(
            {
                **p,
                "kind": kind,
                "x": x_of(p["train_size"]),
                "y": y_of(p["value"]),
                "y_lo": y_of(p["lo"]) if p["lo"] is not None else None,
                "y_hi": y_of(p["hi"]) if p["hi"] is not None else None,
            }
        )
    line = " ".join(f"{'M' if i == 0 else 'L'}{m['x']},{m['y']}" for i, m in enumerate(marks))
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "x_ticks": [(x_of(t), f"{t:g}") for t in ticks(x_lo, x_hi, x_step)],
        "y_ticks": [(y_of(t), f"{t:.2f}") for t in ticks(y_lo, y_hi, y_step)],
        "marks": marks,
        "line": line,
    }
