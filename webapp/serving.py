"""Serving: predictions from the champion (cached per process), logged predictions, feedback."""

from __future__ import annotations

import json
import threading

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from labeling import sampling, training

from . import abtests
from .enums import ModelStatus
from .errors import Conflict, ValidationError
from .extensions import db
from .models import Feedback, Item, ModelVersion, Prediction, Project, utcnow
from .pool import find_or_create_item
from .pool.items import allocate_ids, insert_items, sqlite_bulk_insert
from .training import champion_version, learner_id, load_model, request_rescore
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
            ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.CHAMPION
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


# (database, model version id) -> the version's monitoring reference (a few KB per feature),
# read once per process: the labeling page marks a tabular item's rare values with it.
_references: dict[tuple[str, int], dict | None] = {}


def champion_reference(project: Project) -> dict | None:
    """The champion's drift reference (labeling.drift's sketches), cached per version."""
    champion = champion_model(project)
    if champion is None:
        return None
    key = (db.engine.url.render_as_string(hide_password=True), champion[0])
    if key not in _references:
        _references[key] = db.session.scalar(
            select(ModelVersion.reference).where(ModelVersion.id == champion[0])
        )
    return _references[key]


def suggested_labels(project: Project, rows: list[dict]) -> list[str | None] | None:
    """The champion's label for each item's data, in one batch; None before any champion.
    Rows the model cannot read get None."""
    champion = champion_model(project)
    if champion is None:
        return None
    labels = list(project.labels)

    def predict(batch: list[dict]) -> list[str]:
        X = training.to_matrix(project.kind, batch, project.features)
        return [labels[i] for i in training.predict_proba_for(champion[2], X, labels).argmax(1)]

    try:
        return predict(rows)
    except ValueError:
        # A row the model cannot read: the others one by one, that one None.
        out: list[str | None] = []
        for row in rows:
            try:
                out.extend(predict([row]))
            except ValueError:
                out.append(None)
        return out


def ranked(version_no: int, probabilities: dict[str, float]) -> dict:
    """A suggestion as pages show it: the label, its confidence, the version, and every
    label's probability most likely first."""
    order = sorted(probabilities.items(), key=lambda kv: (-kv[1], kv[0]))
    best, confidence = order[0]
    return {"label": best, "confidence": confidence, "version": version_no, "ranked": order}


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
    # A running experiment: the unit's sticky arm, served by the challenger on its side.
    exposure = abtests.arm_for(project.id, unit)
    if exposure is not None and exposure[2] is not None:
        version_id = exposure[2]
        version_no, model = abtests.model_of(version_id)
    labels = list(project.labels)
    X = training.to_matrix(project.kind, [data], project.features)
    proba = training.predict_proba_for(model, X, labels)
    best = int(proba[0].argmax())
    strategy = project.setting("query_strategy")
    item = find_or_create_item(project, data, external_id, source="production")
    if item.label is None:
        if learner_id(project.id) == version_id and strategy in sampling.STRATEGIES:
            # The score carries its key, so the queue ranks it only against scores on its scale.
            score = float(sampling.informativeness_from_proba(proba, strategy)[0])
            item.score, item.scored_by, item.score_strategy = score, version_id, strategy
        else:
            # A newer learner steers the queue, or a committee scores for it: the rescore job
            # scores the item (the request coalesces).
            request_rescore(project)
    prediction = Prediction(
        project_id=project.id,
        item_id=item.id,
        model_version_id=version_id,
        label=labels[best],
        probabilities={lab: round(float(p), 6) for lab, p in zip(labels, proba[0], strict=True)},
        unit=unit,
        experiment_id=exposure[0] if exposure else None,
        arm=exposure[1] if exposure else None,
    )
    db.session.add(prediction)
    db.session.flush()  # the caller commits (webapp/transaction.py)
    return {
        "prediction_id": prediction.id,
        "item_id": item.id,
        "label": prediction.label,
        "probabilities": prediction.probabilities,
        "model_version": version_no,
        "experiment": {"id": exposure[0], "arm": exposure[1]} if exposure else None,
    }


def log_predictions(project: Project, rows: list[dict]) -> list[int]:
    """Record predictions the app's own model made, in bulk; return their ids in input order.

    Rows come validated (the API checks each one against the project before calling this):
    `data`, `label`, and optional `probabilities`, `external_id`, `model`, `unit`. One look-up
    of known external ids, one bulk insert of new items, one of predictions (plus id
    allocation on PostgreSQL), whatever the number of rows. Flushed, not committed (see
    `webapp.transaction`); a concurrent insert of the same external id raises IntegrityError
    for the caller to roll back and retry.
    """
    item_ids = insert_items(
        project, [(row.get("external_id"), row["data"]) for row in rows], source="production"
    )
    now = utcnow()
    values = [
        (
            item_id,
            row.get("model"),
            row["label"],
            _probabilities(row.get("probabilities")),
            row.get("unit"),
            row.get("timestamp") or now,
        )
        for item_id, row in zip(item_ids, rows, strict=True)
    ]
    if db.session.get_bind().dialect.name == "postgresql":
        ids = _pg_insert_predictions(project.id, values)
    else:
        ids = sqlite_bulk_insert(
            Prediction.__table__,
            [
                {
                    "project_id": project.id,
                    "item_id": item_id,
                    "model_name": model_name,
                    "label": label,
                    "probabilities": probs,
                    "unit": unit,
                    "created_at": created_at,
                }
                for item_id, model_name, label, probs, unit, created_at in values
            ],
        )
    request_rescore(project)
    return ids


def _probabilities(value: dict | None) -> dict | None:
    """Store probabilities as floats, whatever number type the JSON carried."""
    return None if value is None else {k: float(p) for k, p in value.items()}


def _pg_insert_predictions(project_id: int, values: list[tuple]) -> list[int]:
    """PostgreSQL: ids from the sequence, then one INSERT … SELECT FROM unnest(arrays)."""
    ids = allocate_ids("prediction", len(values))
    db.session.execute(
        text(
            "INSERT INTO prediction (id, project_id, item_id, model_name, label, probabilities, "
            "unit, created_at) "
            "SELECT u.id, :project_id, u.item_id, u.model_name, u.label, "
            "CAST(u.probabilities AS json), u.unit, u.created_at "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:item_ids AS bigint[]), "
            "CAST(:model_names AS text[]), CAST(:labels AS text[]), "
            "CAST(:probabilities AS text[]), CAST(:units AS text[]), "
            "CAST(:created AS timestamp[])) "
            "AS u(id, item_id, model_name, label, probabilities, unit, created_at)"
        ),
        {
            "project_id": project_id,
            "ids": ids,
            "item_ids": [v[0] for v in values],
            "model_names": [v[1] for v in values],
            "labels": [v[2] for v in values],
            "probabilities": [None if v[3] is None else json.dumps(v[3]) for v in values],
            "units": [v[4] for v in values],
            "created": [v[5] for v in values],
        },
    )
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
    experts' queue. A retry with the same idempotency key returns the first feedback unchanged,
    also when it races the first. Flushed, not committed (see `webapp.transaction`).
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
    says_wrong = correct is False or (label is not None and label != prediction.label)
    dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
    # The unique key settles a race of two retries inside the transaction (see
    # `webapp.transaction`): the second insert does nothing and replays the first.
    feedback_id = db.session.scalar(
        dialect.insert(Feedback)
        .values(
            prediction_id=prediction.id,
            project_id=project.id,
            correct=correct,
            label=label,
            comment=comment,
            idempotency_key=idempotency_key,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[Feedback.project_id, Feedback.idempotency_key])
        .returning(Feedback.id)
    )
    if feedback_id is None:
        existing = _by_idempotency_key(project.id, idempotency_key)
        _check_replay(existing, prediction, correct, label, comment)
        return existing, False
    item = db.session.get(Item, prediction.item_id) if says_wrong else None
    if item is not None:
        # Already settled by an expert the same way: nothing left to dispute.
        settled = item.label is not None and item.label == (label or item.label) != prediction.label
        if not settled and item.disputed_at is None:
            # A dispute opens a new round of answers (webapp/pool/rounds.py).
            item.disputed_at = utcnow()
            item.round = (item.round or 0) + 1
            item.pending_since = None
    db.session.flush()
    return db.session.get(Feedback, feedback_id), True


def _by_idempotency_key(project_id: int, key: str) -> Feedback | None:
    """The feedback recorded under this key, read without flushing anything pending."""
    with db.session.no_autoflush:
        return db.session.scalar(
            select(Feedback).where(
                Feedback.project_id == project_id, Feedback.idempotency_key == key
            )
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
