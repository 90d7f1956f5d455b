"""Serving: predictions from the champion (cached per process), logged predictions, feedback."""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from labeling import sampling, training

from .errors import Conflict, ValidationError
from .extensions import db
from .models import Feedback, Item, ModelVersion, Prediction, Project, utcnow
from .pool import find_or_create_item
from .training import champion_version, load_model, request_rescore
from .validation import validate_label

# (database, project id) -> (model version id, created_at, version number, fitted model);
# refreshed when the champion changes, which costs one indexed query per prediction to notice.
# The database is part of the key, and created_at of the check, because two databases (or one
# rebuilt) can both have "project 1, model version 1" with different models.
_cache: dict[tuple[str, int], tuple[int, object, int, object]] = {}
_cache_lock = threading.Lock()


def champion_model(project: Project) -> tuple[int, int, object] | None:
    """The champion row and its fitted model, loaded once per process per promotion."""
    row = db.session.execute(
        select(ModelVersion.id, ModelVersion.created_at).where(
            ModelVersion.project_id == project.id, ModelVersion.status == "champion"
        )
    ).first()
    if row is None:
        return None
    key = (db.engine.url.render_as_string(hide_password=True), project.id)
    cached = _cache.get(key)
    if cached is None or cached[:2] != (row.id, row.created_at):
        with _cache_lock:
            cached = _cache.get(key)
            if cached is None or cached[:2] != (row.id, row.created_at):
                version = champion_version(project.id)
                if version is None:
                    return None
                cached = (version.id, version.created_at, version.version, load_model(version))
                _cache[key] = cached
    return cached[0], cached[2], cached[3]


def suggest(project: Project, data: dict) -> tuple[int, dict[str, float]] | None:
    """The champion's version and class probabilities for an item's data; None before any model.

    Raises ValueError for data the model cannot read. Nothing is logged: this is what an expert
    sees, not a production prediction.
    """
    champion = champion_model(project)
    if champion is None:
        return None
    _version_id, version_no, model = champion
    labels = list(project.labels)
    X = training.to_matrix(project.kind, [data], project.features)
    proba = training.predict_proba_for(model, X, labels)[0]
    return version_no, {lab: round(float(p), 6) for lab, p in zip(labels, proba, strict=True)}


def predict(
    project: Project, data: object, external_id: str | None = None, unit: str | None = None
) -> dict:
    """Predict with the champion, log the prediction, and return the API's response body.

    `data` must already be checked (the API's schema, then `validation.validate_data`).
    """
    champion = champion_model(project)
    if champion is None:
        raise Conflict(
            "This project has no model yet: label items and retrain to promote a first champion."
        )
    version_id, version_no, model = champion
    labels = list(project.labels)
    X = training.to_matrix(project.kind, [data], project.features)
    proba = training.predict_proba_for(model, X, labels)
    best = int(proba[0].argmax())
    score = float(sampling.informativeness_from_proba(proba, project.setting("query_strategy"))[0])
    item = find_or_create_item(project, data, external_id, source="production")
    if item.label is None:
        item.score, item.scored_by = score, version_no
    prediction = Prediction(
        project_id=project.id,
        item_id=item.id,
        model_version_id=version_id,
        label=labels[best],
        probabilities={lab: round(float(p), 6) for lab, p in zip(labels, proba[0], strict=True)},
        unit=unit,
    )
    db.session.add(prediction)
    db.session.commit()
    return {
        "prediction_id": prediction.id,
        "item_id": item.id,
        "label": prediction.label,
        "probabilities": prediction.probabilities,
        "model_version": version_no,
    }


def log_predictions(project: Project, rows: list[dict]) -> list[int]:
    """Record predictions the app's own model made; the rows must already be checked (the
    API's schema, then `webapp.validation`), so a batch is written whole or not at all."""
    checked = [
        (
            row["data"],
            row["label"],
            row.get("probabilities"),
            row.get("external_id"),
            row.get("model"),
            row.get("unit"),
        )
        for row in rows
    ]
    ids = []
    for data, label, probs, ext, model_name, unit in checked:
        item = find_or_create_item(project, data, ext, source="production")
        prediction = Prediction(
            project_id=project.id,
            item_id=item.id,
            model_name=model_name,
            label=label,
            probabilities=probs,
            unit=unit,
        )
        db.session.add(prediction)
        db.session.flush()
        ids.append(prediction.id)
    db.session.commit()
    request_rescore(project)
    return ids


def add_feedback(
    prediction: Prediction,
    correct: object = None,
    label: object = None,
    comment: object = None,
    idempotency_key: str | None = None,
) -> tuple[Feedback, bool]:
    """Record end-user feedback on a prediction; return (feedback, created).

    Feedback that says the model was wrong marks the item disputed, which puts it first in the
    experts' queue. A retry with the same idempotency key returns the first feedback unchanged.
    """
    project = db.session.get(Project, prediction.project_id)
    if correct is not None and not isinstance(correct, bool):
        raise ValidationError({"correct": "must be true or false"})
    if label is not None:
        validate_label(project, label)
    if comment is not None and not isinstance(comment, str):
        raise ValidationError({"comment": "must be a string"})
    if correct is None and label is None:
        raise ValidationError({"correct": "give `correct`, a suggested `label`, or both"})
    if idempotency_key is not None:
        existing = _by_idempotency_key(project.id, idempotency_key)
        if existing is not None:
            _check_replay(existing, prediction, correct, label, comment)
            return existing, False
    feedback = Feedback(
        prediction_id=prediction.id,
        project_id=project.id,
        correct=correct,
        label=label,
        comment=comment,
        idempotency_key=idempotency_key,
    )
    db.session.add(feedback)
    says_wrong = correct is False or (label is not None and label != prediction.label)
    if says_wrong:
        item = db.session.get(Item, prediction.item_id)
        # Already settled by an expert the same way: nothing left to dispute.
        settled = item.label is not None and item.label == (label or item.label) != prediction.label
        if not settled and item.disputed_at is None:
            item.disputed_at = utcnow()
    try:
        db.session.commit()
    except IntegrityError:
        # The same key raced us; the first write wins and this call replays it.
        db.session.rollback()
        existing = _by_idempotency_key(project.id, idempotency_key)
        if existing is None:
            raise
        _check_replay(existing, prediction, correct, label, comment)
        return existing, False
    return feedback, True


def _by_idempotency_key(project_id: int, key: str) -> Feedback | None:
    return db.session.scalar(
        select(Feedback).where(Feedback.project_id == project_id, Feedback.idempotency_key == key)
    )


def _check_replay(existing: Feedback, prediction: Prediction, correct, label, comment) -> None:
    """A reused key must carry the same request; anything else is a client bug worth naming."""
    if (existing.prediction_id, existing.correct, existing.label, existing.comment) != (
        prediction.id,
        correct,
        label,
        comment,
    ):
        raise ValidationError(
            {"Idempotency-Key": "was already used for a different feedback request"}
        )
