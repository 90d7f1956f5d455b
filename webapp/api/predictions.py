"""Predictions and end-user feedback: predict with the champion, log the app's own
predictions, and give feedback on either."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .. import fields as f
from .. import serving, validation
from ..extensions import db
from ..models import Prediction, Project
from .common import (
    BODY_ERRORS,
    Blueprint,
    check_rows,
    created,
    retrying,
    scoped,
    with_project,
    with_row,
)
from .items import IdList

blp = Blueprint("predictions", __name__, description="Predictions and end-user feedback.")


class PredictRequest(Schema):
    """The input to classify."""

    data = f.item_data(required=True)
    external_id = f.external_id()
    unit = f.identifier("The end user or session the prediction serves.")


class Exposure(Schema):
    """The experiment a prediction was served in, and the unit's arm (sticky for the unit)."""

    id = fields.Integer(required=True)
    arm = fields.String(required=True, validate=validate.OneOf(("champion", "challenger")))


class PredictResponse(Schema):
    """The champion's prediction, logged so that feedback can refer to it."""

    prediction_id = fields.Integer(required=True)
    item_id = fields.Integer(required=True)
    label = f.label(required=True)
    probabilities = f.NumberMap(required=True, metadata={"description": "Probability per label."})
    model_version = fields.Integer(
        required=True,
        validate=validate.Range(min=1),
        metadata={"description": "The model version that served it (an experiment's arm's)."},
    )
    experiment = fields.Nested(
        Exposure,
        required=True,
        allow_none=True,
        metadata={"description": "The running experiment and the unit's arm in it, or null."},
    )


class LoggedPrediction(Schema):
    """One prediction made by the app's own model."""

    data = f.item_data(required=True)
    label = f.label(required=True)
    probabilities = f.NumberMap(
        load_default=None, allow_none=True, metadata={"description": "Probability per label."}
    )
    external_id = f.external_id()
    model = f.identifier("Name of your model that made the prediction.")
    unit = f.identifier("The end user or session the prediction serves.")
    timestamp = f.Timestamp(
        load_default=None,
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": (
                "When your model made it (ISO 8601; UTC when no offset is given; not in the "
                "future), so history can be backfilled and monitored. Default: now."
            ),
        },
    )


class PredictionLogRequest(Schema):
    """Up to 1,000 predictions, logged whole or not at all."""

    predictions = f.Rows(
        LoggedPrediction,
        required=True,
        validate=validate.Length(
            1, f.MAX_ROWS, error="must hold 1 to {max} rows (split larger batches)"
        ),
    )


class FeedbackRequest(Schema):
    """Give `correct`, a suggested `label`, or both. Feedback saying the prediction was wrong
    marks the item disputed, which puts it first in the experts' queue."""

    correct = f.StrictBoolean(
        load_default=None,
        allow_none=True,
        metadata={"description": "Whether the prediction was right."},
    )
    label = f.label(load_default=None, allow_none=True)
    comment = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=f.MAX_COMMENT_LENGTH),
        metadata={"description": f"Free text from the end user, up to {f.MAX_COMMENT_LENGTH:,}."},
    )

    @validates_schema
    def _verdict(self, data: dict, **kwargs) -> None:
        """Feedback must say something about the prediction."""
        if data.get("correct") is None and data.get("label") is None:
            raise ValidationError("give `correct`, a suggested `label`, or both", "correct")


class FeedbackHeaders(Schema):
    """The optional Idempotency-Key header."""

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=validate.Length(1, f.MAX_ID_LENGTH),
        metadata={
            "description": (
                "Any unique string (1 to 200 characters). A retry with the same key and body "
                "returns the first answer and creates nothing; the same key with another body "
                "is a 422."
            )
        },
    )


class FeedbackCreated(Schema):
    """The feedback's id (also the answer to a replayed Idempotency-Key)."""

    feedback_id = fields.Integer(required=True)


@blp.route("/projects/<slug>/predict", methods=["POST"])
@scoped(
    "predict",
    "Predict with the project's current champion and log the prediction, so that feedback can "
    "refer to it. While an A/B experiment runs, a request with a `unit` is served by that "
    "unit's arm (the same one every time); the answer names the version and the arm.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(PredictRequest, arg_name="payload", description="The input to classify.")
@blp.response(200, PredictResponse, description="The prediction.")
def predict(project: Project, payload: dict):
    """Predict with the champion."""
    data = validation.validate_data(project, payload["data"])
    answer = retrying(serving.predict, project, data, payload["external_id"], payload["unit"])
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return answer


@blp.route("/projects/<slug>/predictions", methods=["POST"])
@scoped(
    "predict",
    f"Record up to {f.MAX_ROWS} predictions made by the app's own model, so that feedback can "
    "refer to them. All rows are validated before any is written.",
    errors=(404, *BODY_ERRORS),
)
@with_project
@blp.arguments(PredictionLogRequest, arg_name="payload", description="The predictions to log.")
@blp.response(201, IdList, description="The prediction ids, in the order of the rows.")
def log_predictions(project: Project, payload: dict):
    """Log your own model's predictions."""

    def check(one: dict, prefix: str) -> dict:
        """Check one logged prediction against the project, naming each field under `prefix`."""
        validation.validate_data(project, one["data"], f"{prefix}.data")
        validation.validate_label(project, one["label"], f"{prefix}.label")
        validation.validate_probabilities(project, one["probabilities"], f"{prefix}.probabilities")
        return one

    rows = check_rows(payload["predictions"], "predictions", check)
    ids = retrying(serving.log_predictions, project, rows)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return {"ids": ids}


@blp.route("/predictions/<id64:prediction_id>/feedback", methods=["POST"])
@scoped(
    "feedback",
    "Record an end user's verdict on a prediction. Send an `Idempotency-Key` to make retries safe.",
    errors=(404, *BODY_ERRORS),
)
@with_row(Prediction, "prediction", "prediction_id")
@blp.arguments(FeedbackHeaders, location="headers", arg_name="headers")
@blp.arguments(FeedbackRequest, arg_name="payload", description="The verdict.")
@blp.response(
    201,
    FeedbackCreated,
    description="The feedback (also the answer to a replayed Idempotency-Key).",
    headers={
        "Idempotent-Replayed": {
            "description": "`true` when this answers a retry.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
)
def add_feedback(prediction: Prediction, headers: dict, payload: dict):
    """Give feedback on a prediction."""
    if payload["label"] is not None:
        validation.validate_label(db.session.get(Project, prediction.project_id), payload["label"])
    feedback, was_created = serving.add_feedback(
        prediction,
        correct=payload["correct"],
        label=payload["label"],
        comment=payload["comment"],
        idempotency_key=headers["idempotency_key"],
    )
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    resp = created({"feedback_id": feedback.id})
    if not was_created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp
