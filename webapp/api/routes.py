"""The REST API, v1: imports, predictions, feedback, the labeling queue, retrains and exports.

Each view names the scope it needs with `require_scope`; the OpenAPI document in `openapi.py`
describes the same endpoints and is checked against these views by the tests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from itertools import islice

from flask import Response, g, jsonify, request, stream_with_context, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from labeling.split import heldout_mask

from .. import pool, serving, training, validation
from ..auth.keys import owned, project_for_key, require_scope
from ..errors import Conflict, ValidationError
from ..extensions import db
from ..models import Item, ModelVersion, Prediction, Project, RetrainRun
from . import body, bp
from .openapi import SPEC

EXPORT_CHUNK = 1000
# Ids arrive as unbounded path integers; past 64 bits no row can match (and SQLite overflows).
MAX_ROW_ID = 2**63 - 1


def _row(model, row_id: int, what: str):
    """Load a row of the key's project by id, or 404."""
    row = db.session.get(model, row_id) if row_id <= MAX_ROW_ID else None
    return owned(row, what, row_id)


def _retrying(write, *args):
    """Run a write once more if a concurrent request inserted the same external id first."""
    try:
        return write(*args)
    except IntegrityError:
        db.session.rollback()
        return write(*args)


def _timestamp(value: datetime | None) -> str | None:
    """Format a stored (naive UTC) time as ISO 8601 with a Z."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def _created(payload: dict, status: int = 201, location: str | None = None) -> Response:
    """A JSON response with a status other than 200 (and a Location when there is one)."""
    resp = jsonify(payload)
    resp.status_code = status
    if location:
        resp.headers["Location"] = location
    return resp


# ---------------------------------------------------------------------------------------------
# Items and predictions


@bp.post("/projects/<slug>/items")
@require_scope("admin")
def import_items(slug: str):
    """Import up to 1000 items; known external ids return their existing item id."""
    project = project_for_key(slug)
    payload = body.json_object()
    body.only(payload, {"items"})

    def check(row: dict, prefix: str) -> dict:
        """Validate one item row; return it as `pool.import_items` takes it."""
        body.only(row, {"external_id", "data"}, prefix)
        data = validation.validate_data(
            project, body.required(row, "data", prefix), f"{prefix}.data"
        )
        return {"external_id": body.optional_id(row, "external_id", prefix), "data": data}

    rows = body.each_row(body.rows(payload, "items", body.MAX_ROWS), "items", check)
    # One batch, so one transaction: a request is imported whole or not at all.
    batches = pool.import_items(project, rows, source="import", batch_size=body.MAX_ROWS)
    ids = [item_id for batch in batches for item_id in batch]
    training.request_rescore(project)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return _created({"ids": ids})


@bp.post("/projects/<slug>/predict")
@require_scope("predict")
def predict(slug: str):
    """Predict with the champion and log the prediction; 409 before the first promotion."""
    project = project_for_key(slug)
    payload = body.json_object()
    body.only(payload, {"data", "external_id", "unit"})
    data = body.required(payload, "data")
    external_id = body.optional_id(payload, "external_id")
    unit = body.optional_id(payload, "unit")
    answer = _retrying(serving.predict, project, data, external_id, unit)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return answer


@bp.post("/projects/<slug>/predictions")
@require_scope("predict")
def log_predictions(slug: str):
    """Log up to 1000 predictions made by the app's own model; all rows or none are written."""
    project = project_for_key(slug)
    payload = body.json_object()
    body.only(payload, {"predictions"})
    fields = {"data", "label", "probabilities", "external_id", "model", "unit"}

    def check(row: dict, prefix: str) -> dict:
        """Validate one logged prediction, naming each bad field under `prefix`."""
        body.only(row, fields, prefix)
        validation.validate_data(project, body.required(row, "data", prefix), f"{prefix}.data")
        validation.validate_label(project, body.required(row, "label", prefix), f"{prefix}.label")
        validation.validate_probabilities(
            project, row.get("probabilities"), f"{prefix}.probabilities"
        )
        for key in ("external_id", "model", "unit"):
            body.optional_id(row, key, prefix)
        return row

    rows = body.each_row(body.rows(payload, "predictions", body.MAX_ROWS), "predictions", check)
    ids = _retrying(serving.log_predictions, project, rows)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return _created({"ids": ids})


@bp.post("/predictions/<int:prediction_id>/feedback")
@require_scope("feedback")
def add_feedback(prediction_id: int):
    """Record end-user feedback on a prediction; a retried Idempotency-Key creates nothing."""
    prediction = _row(Prediction, prediction_id, "prediction")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= body.MAX_ID_LENGTH:
        raise ValidationError({"Idempotency-Key": "must be 1 to 200 characters"})
    payload = body.json_object()
    body.only(payload, {"correct", "label", "comment"})
    feedback, created = serving.add_feedback(
        prediction,
        correct=payload.get("correct"),
        label=payload.get("label"),
        comment=payload.get("comment"),
        idempotency_key=key,
    )
    resp = _created({"feedback_id": feedback.id})
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


# ---------------------------------------------------------------------------------------------
# The labeling queue


@bp.get("/projects/<slug>/queue/next")
@require_scope("label")
def next_item(slug: str):
    """Lease the next item to this key's annotator, with the champion's suggestion; 204 if none."""
    project = project_for_key(slug)
    found = pool.next_item(project, g.api_key.annotator)
    if found is None:
        return Response(status=204)
    item, reason = found
    return {
        "item_id": item.id,
        "data": item.data,
        "reason": reason,
        "suggestion": _suggestion(project, item),
    }


def _suggestion(project: Project, item: Item) -> dict | None:
    """The champion's label and probabilities for an item, or None before any model."""
    suggested = serving.suggest(project, item.data)
    if suggested is None:
        return None
    _version, probabilities = suggested
    return {"label": max(probabilities, key=probabilities.get), "probabilities": probabilities}


@bp.post("/items/<int:item_id>/annotations")
@require_scope("label")
def annotate(item_id: int):
    """Label an item as this key's annotator; 409 while another annotator holds its lease."""
    item = _row(Item, item_id, "item")
    project = db.session.get(Project, item.project_id)
    payload = body.json_object()
    body.only(payload, {"label"})
    label = validation.validate_label(project, body.required(payload, "label"))
    annotator = g.api_key.annotator
    if pool.leased_to_other(item, annotator):
        raise Conflict(f"Item {item.id} is leased to another annotator; fetch queue/next instead.")
    annotation = pool.annotate(project, item, annotator, label)
    return _created({"annotation_id": annotation.id, "item_id": item.id, "label": annotation.label})


@bp.post("/items/<int:item_id>/skip")
@require_scope("label")
def skip(item_id: int):
    """Hide an item from this key's annotator and release their lease on it."""
    item = _row(Item, item_id, "item")
    pool.skip(db.session.get(Project, item.project_id), item, g.api_key.annotator)
    return Response(status=204)


# ---------------------------------------------------------------------------------------------
# Retrains and models


@bp.post("/projects/<slug>/retrain")
@require_scope("admin")
def retrain(slug: str):
    """Queue a retrain (or join the one already queued) and point at its run."""
    project = project_for_key(slug)
    try:
        training.check_trainable(project)
    except training.NotTrainable as exc:
        raise Conflict(str(exc)) from None
    run = training.trigger_retrain(project, trigger="manual")
    location = url_for("api.show_run", slug=project.slug, run_id=run.id)
    return _created({"run_id": run.id}, status=202, location=location)


@bp.get("/projects/<slug>/runs/<int:run_id>")
@require_scope("admin")
def show_run(slug: str, run_id: int):
    """A retrain run's status, gate decision with a reason per rule, and metrics."""
    project_for_key(slug)
    run = _row(RetrainRun, run_id, "run")
    version = None
    if run.model_version_id is not None:
        version = db.session.scalar(
            select(ModelVersion.version).where(ModelVersion.id == run.model_version_id)
        )
    return {
        "run_id": run.id,
        "status": run.status,
        "trigger": run.trigger,
        "decision": run.decision,
        "reasons": run.reasons or [],
        "metrics": run.metrics or {},
        "model_version": version,
        "error": run.error,
        "created_at": _timestamp(run.created_at),
        "finished_at": _timestamp(run.finished_at),
    }


@bp.get("/projects/<slug>/models")
@require_scope("admin")
def list_models(slug: str):
    """The project's model versions, newest first, with status and held-out metrics."""
    project = project_for_key(slug)
    versions = db.session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project.id)
        .order_by(ModelVersion.version.desc())
    )
    return {
        "models": [
            {
                "version": v.version,
                "status": v.status,
                "metrics": v.metrics or {},
                "created_at": _timestamp(v.created_at),
                "promoted_at": _timestamp(v.promoted_at),
                "snapshot_digest": v.snapshot_digest,
                "train_size": v.train_size,
            }
            for v in versions
        ]
    }


# ---------------------------------------------------------------------------------------------
# Export

EXPORT_FORMATS = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
CSV_COLUMNS = ["item_id", "external_id", "data", "label", "split"]


@bp.get("/projects/<slug>/labels")
@require_scope("admin")
def export_labels(slug: str):
    """Stream every resolved label with its split, as JSON Lines or CSV, in constant memory."""
    project = project_for_key(slug)
    fmt = request.args.get("format", "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"format": f"must be one of {', '.join(EXPORT_FORMATS)}"})
    rows = _label_rows(project)
    chunks = _jsonl(rows) if fmt == "jsonl" else _csv(rows)
    return Response(
        stream_with_context(chunks),
        mimetype=EXPORT_FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{project.slug}-labels.{fmt}"'},
    )


def _label_rows(project: Project) -> Iterator[list[dict]]:
    """Yield resolved labels in chunks, each row with its train/held-out split."""
    share = project.setting("heldout_share")
    items = pool.labeled_items(project, chunk=EXPORT_CHUNK)
    while chunk := list(islice(items, EXPORT_CHUNK)):
        held = heldout_mask([r[0] for r in chunk], share)
        yield [
            {
                "item_id": item_id,
                "external_id": external_id,
                "data": data,
                "label": label,
                "split": "heldout" if is_held else "train",
            }
            for (item_id, external_id, data, label), is_held in zip(chunk, held, strict=True)
        ]


def _jsonl(chunks: Iterator[list[dict]]) -> Iterator[str]:
    """One JSON object per line."""
    for chunk in chunks:
        yield "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk)


def _csv(chunks: Iterator[list[dict]]) -> Iterator[str]:
    """A header, then one CSV row per label; `data` is a JSON string column."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for chunk in chunks:
        for row in chunk:
            writer.writerow(
                [
                    row["item_id"],
                    row["external_id"] or "",
                    json.dumps(row["data"], ensure_ascii=False),
                    row["label"],
                    row["split"],
                ]
            )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.getvalue():
        yield buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The contract


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document for this API (public: no key needed)."""
    return SPEC
