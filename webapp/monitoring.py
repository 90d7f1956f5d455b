"""Production monitoring: stored windows of every model's traffic, and reading them.

- **References.** What each version is compared with was summarised once, when it was trained
  (`webapp.references`). Apps that log their own model's predictions get a reference from
  their first logged predictions instead, or from a window the engineer picks (prediction
  drift only).
- **Windows.** `update_windows` (the monitoring job runs it for every project) recomputes exactly
  the windows that changed since its last pass: those that received predictions (a backfilled
  one lands in an old window), or labels or feedback on their predictions. A window is one
  `monitor_window` slice of one model's traffic; its row holds the figures with intervals
  (with their sufficient statistics, so longer periods merge without raw rows), the drift
  against the model's reference, and the CBPE estimate. Reading 90 windows reads 90 rows.
- **Alerts.** The rules are stepped on the windows afterwards (`webapp.alerts`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select

from labeling import drift, training
from labeling import monitoring as stats

from .extensions import db
from .models import (
    Annotation,
    Feedback,
    Item,
    ModelVersion,
    MonitorState,
    MonitorWindow,
    Prediction,
    Project,
    utcnow,
)
from .references import model_features
from .training import first_lane, load_model
from .transaction import unit_of_work

log = logging.getLogger(__name__)

# Logged predictions an app's own model is referenced on.
APP_REFERENCE_ROWS = 1000


# ---------------------------------------------------------------------------------------------
# Windows


def window_start(when: datetime, length: int) -> datetime:
    """The start of the `length`-second window holding `when` (aligned on the Unix epoch)."""
    epoch = datetime(1970, 1, 1)
    seconds = int((when - epoch).total_seconds())
    return epoch + timedelta(seconds=seconds - seconds % length)


def _model_key(version: int | None, name: str | None) -> str:
    if version is not None:
        return f"v{version}"
    return f"app:{name}" if name else "app"


def _state(project_id: int) -> MonitorState:
    state = db.session.get(MonitorState, project_id)
    if state is None:
        state = MonitorState(
            project_id=project_id, prediction_id=0, annotation_id=0, feedback_id=0, references={}
        )
        db.session.add(state)
        db.session.flush()
    return state


def _changed_windows(project_id: int, state: MonitorState, length: int) -> tuple[set, dict]:
    """Starts of the windows that changed since the last pass, and the new high-water ids."""
    marks = {}
    times: set[datetime] = set()
    new_predictions = db.session.execute(
        select(Prediction.id, Prediction.created_at).where(
            Prediction.project_id == project_id, Prediction.id > state.prediction_id
        )
    ).all()
    if new_predictions:
        marks["prediction_id"] = max(r[0] for r in new_predictions)
        times.update(r[1] for r in new_predictions)
    new_labels = db.session.execute(
        select(Annotation.id, Prediction.created_at)
        .join(Prediction, Prediction.item_id == Annotation.item_id)
        .where(Annotation.project_id == project_id, Annotation.id > state.annotation_id)
    ).all()
    last_annotation = db.session.scalar(
        select(func.max(Annotation.id)).where(Annotation.project_id == project_id)
    )
    if last_annotation and last_annotation > state.annotation_id:
        marks["annotation_id"] = last_annotation
    times.update(r[1] for r in new_labels)
    new_feedback = db.session.execute(
        select(Feedback.id, Prediction.created_at)
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .where(Feedback.project_id == project_id, Feedback.id > state.feedback_id)
    ).all()
    if new_feedback:
        marks["feedback_id"] = max(r[0] for r in new_feedback)
        times.update(r[1] for r in new_feedback)
    return {window_start(t, length) for t in times}, marks


def _window_rows(project_id: int, start: datetime, end: datetime):
    """Every prediction of the window with its model, item data, resolved label and lane."""
    return db.session.execute(
        select(
            Prediction.id,
            Prediction.label,
            Prediction.probabilities,
            ModelVersion.version,
            Prediction.model_name,
            Prediction.model_version_id,
            Item.data,
            Item.label,
            first_lane(),
        )
        .join(Item, Item.id == Prediction.item_id)
        .outerjoin(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(
            Prediction.project_id == project_id,
            Prediction.created_at >= start,
            Prediction.created_at < end,
        )
        .order_by(Prediction.id)
    ).all()


def _feedback_of(prediction_ids: list[int]) -> dict[int, list]:
    out: dict[int, list] = defaultdict(list)
    for chunk in range(0, len(prediction_ids), 5000):
        ids = prediction_ids[chunk : chunk + 5000]
        for pid, correct, label in db.session.execute(
            select(Feedback.prediction_id, Feedback.correct, Feedback.label).where(
                Feedback.prediction_id.in_(ids)
            )
        ):
            out[pid].append((correct, label))
    return out


def _app_reference(state: MonitorState, project: Project, key: str, name: str | None) -> dict:
    """The reference of an app's own model: its first logged predictions (built once)."""
    references = dict(state.references or {})
    if key not in references:
        rows = db.session.execute(
            select(Prediction.label, Prediction.probabilities)
            .where(
                Prediction.project_id == project.id,
                Prediction.model_version_id.is_(None),
                Prediction.model_name.is_(None) if name is None else Prediction.model_name == name,
            )
            .order_by(Prediction.created_at, Prediction.id)
            .limit(APP_REFERENCE_ROWS)
        ).all()
        with_proba = all(r[1] for r in rows)
        references[key] = drift.reference_from_predictions(
            [r[0] for r in rows],
            [r[1] for r in rows] if with_proba else None,
            first=APP_REFERENCE_ROWS,
            bins=int(project.setting("drift_bins")),
        )
        references[key]["until"] = len(rows)
        state.references = references
    return references[key]


def set_app_reference(
    project: Project, key: str, since: datetime | None, until: datetime | None
) -> dict:
    """Make the app model `key`'s predictions in [since, until) its drift reference, and
    recompute its windows against it. Flushed, not committed. Raises ValueError when the
    range holds no prediction of that model."""
    if not key.startswith("app"):
        raise ValueError("only an app's own model (app or app:<name>) takes a chosen reference")
    name = key.partition(":")[2] or None
    query = select(Prediction.label, Prediction.probabilities).where(
        Prediction.project_id == project.id,
        Prediction.model_version_id.is_(None),
        Prediction.model_name.is_(None) if name is None else Prediction.model_name == name,
    )
    if since is not None:
        query = query.where(Prediction.created_at >= since)
    if until is not None:
        query = query.where(Prediction.created_at < until)
    rows = db.session.execute(query.order_by(Prediction.created_at, Prediction.id)).all()
    if not rows:
        raise ValueError("no prediction of this model in that range")
    with_proba = all(r[1] for r in rows)
    reference = drift.reference_from_predictions(
        [r[0] for r in rows],
        [r[1] for r in rows] if with_proba else None,
        first=len(rows),
        bins=int(project.setting("drift_bins")),
    )
    reference["source"] = (
        f"{len(rows)} predictions from {since.isoformat() if since else 'the first'} "
        f"to {until.isoformat() if until else 'the last'}"
    )
    state = _state(project.id)
    state.references = {**(state.references or {}), key: reference}
    length = int(project.setting("monitor_window"))
    starts = db.session.scalars(
        select(MonitorWindow.start).where(
            MonitorWindow.project_id == project.id, MonitorWindow.model_key == key
        )
    ).all()
    models: dict = {}
    for start in starts:
        _compute(project, state, start, start + timedelta(seconds=length), models)
    db.session.flush()
    return reference


def _compute(
    project: Project, state: MonitorState, start: datetime, end: datetime, models: dict
) -> int:
    """Recompute every model's window starting at `start`; return how many were written.

    `models` caches the fitted model of each version for the pass (a backfill recomputes many
    windows of one version: its artifact is loaded once, not once per window)."""
    labels = list(project.labels)
    groups: dict[str, list] = defaultdict(list)
    for row in _window_rows(project.id, start, end):
        groups[_model_key(row[3], row[4])].append(row)
    feedback = _feedback_of([r[0] for rows in groups.values() for r in rows])
    existing = {
        w.model_key: w
        for w in db.session.scalars(
            select(MonitorWindow).where(
                MonitorWindow.project_id == project.id, MonitorWindow.start == start
            )
        )
    }
    written = 0
    for key, rows in groups.items():
        predicted = [r[1] for r in rows]
        confidence = [stats.top_confidence(r[2]) for r in rows]
        figures = stats.window_metrics(
            labels,
            predicted,
            confidence,
            feedback=[
                {"predicted": r[1], "correct": c, "label": lab}
                for r in rows
                for c, lab in feedback.get(r[0], ())
            ],
            labeled=[
                {"true": r[7], "predicted": r[1], "proba": r[2], "audit": r[8] == "audit"}
                for r in rows
                if r[7] is not None
            ],
        )
        version_id = rows[0][5]
        drift_result, estimate = _drift_and_estimate(project, state, key, rows, version_id, models)
        window = existing.get(key) or MonitorWindow(
            project_id=project.id, model_key=key, start=start
        )
        window.model_version_id = version_id
        window.end = end
        window.stats, window.drift, window.estimate = figures, drift_result, estimate
        window.computed_at = utcnow()
        db.session.add(window)
        written += 1
    return written


def _drift_and_estimate(project, state, key, rows, version_id, models: dict):
    """Drift against the model's reference and the CBPE estimate, where each can be had."""
    thresholds = None
    predicted = [r[1] for r in rows]
    probabilities = [r[2] for r in rows]
    confidence = drift.confidences_from_probabilities([p if p else None for p in probabilities])
    has_proba = all(p for p in probabilities)
    if version_id is None:
        reference = _app_reference(state, project, key, rows[0][4])
        result = drift.compare(
            reference,
            predicted_labels=predicted,
            confidences=confidence if reference["predictions"]["confidence"] else None,
            thresholds=thresholds,
        )
        estimate = None
        if has_proba:
            # An app's own model has no held-out audits of Corrigo's to calibrate on: its
            # probabilities are taken as they are (CBPE's assumption, stated on the page).
            cbpe = stats.CBPE(list(project.labels))
            raw = cbpe.estimate_stats(stats.proba_matrix(probabilities, cbpe.labels), predicted)
            estimate = {**stats.summarize_estimate(raw), "stats": raw}
        return result, estimate
    version = db.session.get(ModelVersion, version_id)
    reference, calibrator = version.reference, version.calibrator
    result = estimate = None
    if reference:
        X = training.to_matrix(project.kind, [r[6] for r in rows], project.features)
        if version_id not in models:
            models[version_id] = load_model(version)
        model = models[version_id]
        common = {
            "predicted_labels": predicted,
            "confidences": confidence if has_proba else None,
            "features": model_features(model, X) if reference.get("sample") else None,
        }
        if project.kind == "text":
            result = drift.compare(
                reference, texts=X, vocabulary=reference.get("vocabulary"), **common
            )
        else:
            result = drift.compare(reference, X_current=X, **common)
    if calibrator and has_proba:
        cbpe = stats.CBPE.from_dict(calibrator)
        raw = cbpe.estimate_stats(stats.proba_matrix(probabilities, cbpe.labels), predicted)
        estimate = {**stats.summarize_estimate(raw), "stats": raw}
    return result, estimate


@unit_of_work
def update_windows(project_id: int) -> int:
    """Bring a project's stored windows up to date; return how many were written (a unit of
    work: one commit at the end). `alerts.run_monitoring` runs it, then the alert rules."""
    project = db.session.get(Project, project_id)
    if project is None:
        return 0
    length = int(project.setting("monitor_window"))
    state = _state(project_id)
    starts, marks = _changed_windows(project_id, state, length)
    written, models = 0, {}
    for start in sorted(starts):
        written += _compute(project, state, start, start + timedelta(seconds=length), models)
        db.session.flush()
    for name, value in marks.items():
        setattr(state, name, value)
    state.computed_at = utcnow()
    db.session.commit()
    return written


# ---------------------------------------------------------------------------------------------
# Reading


def read_windows(
    project: Project,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    limit: int = 1000,
) -> list[MonitorWindow]:
    """Stored windows of the project, oldest first: those starting in [since, until), of one
    model key (`v3`, `app:name`) or all; at most the newest `limit`. One indexed range read."""
    query = select(MonitorWindow).where(MonitorWindow.project_id == project.id)
    if since is not None:
        query = query.where(MonitorWindow.start >= since)
    if until is not None:
        query = query.where(MonitorWindow.start < until)
    if model is not None:
        query = query.where(MonitorWindow.model_key == model)
    rows = db.session.scalars(query.order_by(MonitorWindow.start.desc()).limit(limit)).all()
    return rows[::-1]


def model_keys(project: Project) -> list[str]:
    """Every model key with stored windows, newest first."""
    rows = db.session.execute(
        select(MonitorWindow.model_key, func.max(MonitorWindow.start))
        .where(MonitorWindow.project_id == project.id)
        .group_by(MonitorWindow.model_key)
        .order_by(func.max(MonitorWindow.start).desc())
    ).all()
    return [r[0] for r in rows]
