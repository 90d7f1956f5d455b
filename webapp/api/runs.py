"""Retrains: queue one, and read a run's status and the gate's decision."""

from __future__ import annotations

from flask import url_for
from marshmallow import Schema, fields
from sqlalchemy import select

from .. import fields as f
from .. import training
from ..auth.keys import project_for_key
from ..enums import Decision, RunStatus, Trigger
from ..errors import Conflict
from ..extensions import db
from ..models import ModelVersion, RetrainRun
from .common import DATE_TIME, Blueprint, created, row, scoped, timestamp

blp = Blueprint("runs", __name__, description="Retrains and the gate's decisions.")


class RunAccepted(Schema):
    """The queued run."""

    run_id = fields.Integer(required=True)


class GateReason(Schema):
    """The gate's verdict on one rule."""

    rule = fields.String(required=True, metadata={"examples": ["heldout_size", "beats_baseline"]})
    passed = fields.Boolean(required=True)
    detail = fields.String(required=True)
    numbers = fields.Dict(
        load_default=dict,
        metadata={
            "description": (
                "The rule's figures, machine-readable (sizes, metrics, gains, p-values, "
                "confidence bounds); empty for runs recorded before the statistical gate."
            )
        },
    )


class Run(Schema):
    """A retrain run: its status and, once finished, the gate's decision and metrics."""

    run_id = fields.Integer(required=True)
    status = f.enum(RunStatus, required=True)
    trigger = f.enum(
        Trigger,
        required=True,
        metadata={
            "description": (
                "What started the run: `manual` (the API), `ui` (the runs page), `cli` "
                "(`corrigo retrain`), `demo`, or `auto` (every `retrain_every` labels)."
            )
        },
    )
    decision = f.enum(Decision, required=True, allow_none=True)
    reasons = fields.List(
        fields.Nested(GateReason),
        required=True,
        metadata={"description": "The gate's verdict on each rule, passed or failed."},
    )
    metrics = fields.Dict(
        required=True,
        metadata={
            "description": (
                "Held-out metrics of the `candidate`, the `champion` it was compared with "
                "(null for the first model) and the majority `baseline`. The items the "
                "decision was made on, and which of them the candidate fixed and broke, are in "
                "`GET …/models/{version}/review`."
            )
        },
    )
    model_version = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    finished_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)


@blp.route("/projects/<slug>/retrain", methods=["POST"])
@scoped(
    "admin",
    "Queue a retrain; while one is already queued, its run is returned instead (triggers "
    "coalesce). A project that cannot be trained yet (no labels, or a single label in the "
    "training split) answers 409 saying why.",
    errors=(404, 409),
)
@blp.response(
    202,
    RunAccepted,
    description="The queued run.",
    headers={"Location": {"description": "Where to poll the run.", "schema": {"type": "string"}}},
)
def retrain(slug: str):
    """Queue a retrain."""
    project = project_for_key(slug)
    try:
        training.check_trainable(project)
    except training.NotTrainable as exc:
        raise Conflict(str(exc)) from None
    run = training.trigger_retrain(project, trigger=Trigger.MANUAL)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    location = url_for("api.runs.show_run", slug=project.slug, run_id=run.id)
    return created({"run_id": run.id}, status=202, location=location)


@blp.route("/projects/<slug>/runs/<id32:run_id>")
@scoped(
    "admin",
    "The run's status and, once finished, the gate's decision with a reason per rule.",
    errors=(404,),
)
@blp.response(200, Run, description="The run.")
def show_run(slug: str, run_id: int):
    """A retrain run."""
    project_for_key(slug)
    run = row(RetrainRun, run_id, "run")
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
        # The per-item predictions stay out: `…/models/{version}/review` reads them.
        "metrics": {k: v for k, v in (run.metrics or {}).items() if k != "items"},
        "model_version": version,
        "error": run.error,
        "created_at": timestamp(run.created_at),
        "finished_at": timestamp(run.finished_at),
    }
