"""The model registry: every version of a project's model with its status, metrics and lineage,
the review of the gate decision that made it, the project's learning curve, and the changes a
person makes to it (promote, reject, challenger, rollback)."""

from __future__ import annotations

from flask import g
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from labeling import evaluation
from labeling import review as paired

from .. import fields as f
from .. import registry
from ..auth.keys import project_for_key
from ..enums import Decision, ModelAction, ModelStatus
from ..errors import ValidationError
from ..extensions import db
from ..models import ModelEvent, Project
from ..models import ModelVersion as ModelVersionRow
from ..runs import curve, review
from .common import BODY_ERRORS, DATE_TIME, Blueprint, scoped, timestamp, with_project
from .runs import GateReason

blp = Blueprint("models", __name__, description="Model versions and the registry's changes.")

VERSION = [
    {
        "in": "path",
        "name": "version",
        "description": "A model version number of the API key's project (1, 2, …).",
    }
]


class ModelVersion(Schema):
    """One model version."""

    version = fields.Integer(required=True, validate=validate.Range(min=1))
    status = f.enum(
        ModelStatus,
        required=True,
        metadata={
            "description": (
                "`champion` serves predictions and `challenger` waits to be compared with it "
                "(at most one of each); `candidate`, `retired` (a former champion) or `rejected`."
            )
        },
    )
    metrics = fields.Dict(
        required=True, metadata={"description": "Held-out metrics when it was trained."}
    )
    created_at = fields.String(required=True, metadata=DATE_TIME)
    promoted_at = fields.String(
        required=True,
        allow_none=True,
        metadata={**DATE_TIME, "description": "When it last became the champion."},
    )
    snapshot_digest = fields.String(
        required=True,
        metadata={"description": "SHA-256 of the (item id, label) pairs it was trained on."},
    )
    train_size = fields.Integer(required=True, validate=validate.Range(min=0))
    template = fields.String(required=True, metadata={"description": "The model template."})
    run_id = fields.Integer(
        required=True, allow_none=True, metadata={"description": "The retrain run that made it."}
    )
    params = fields.Dict(
        required=True,
        metadata={"description": "The template's hyper-parameters (empty for older versions)."},
    )
    library_versions = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Python and library versions it was trained with."},
    )
    heldout_size = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"description": "Held-out items it was measured on."},
    )
    heldout_digest = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "SHA-256 of the held-out (item id, label) pairs."},
    )
    training_seconds = fields.Float(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"description": "Seconds the fit took."},
    )


class ModelList(Schema):
    """The project's model versions."""

    models = fields.List(
        fields.Nested(ModelVersion), required=True, metadata={"description": "Newest first."}
    )


class Event(Schema):
    """One registry change: who did what to which version, when and why."""

    action = f.enum(
        ModelAction,
        required=True,
        metadata={
            "description": (
                "`promote`, `reject`, `rollback` and `challenger` are a person's; "
                "`auto_promote` and `auto_challenger` the retrain gate's."
            )
        },
    )
    version = fields.Integer(required=True, metadata={"description": "The version acted on."})
    from_version = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": (
                "The version it displaced: the former champion of a promotion or rollback, the "
                "former challenger of a new one."
            )
        },
    )
    actor = fields.String(
        required=True,
        metadata={
            "description": "`key:<id>`, `user:<id>`, `cli` or `gate`.",
            "examples": ["key:5"],
        },
    )
    reason = fields.String(required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)


class ModelVersionDetail(ModelVersion):
    """One model version with its registry history."""

    events = fields.List(
        fields.Nested(Event),
        required=True,
        metadata={"description": "Registry changes that involved it, newest first."},
    )


class Estimate(Schema):
    """A metric with its 95% interval."""

    value = fields.Float(required=True, allow_none=True)
    lo = fields.Float(required=True, allow_none=True)
    hi = fields.Float(required=True, allow_none=True)
    method = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": (
                "`wilson` (accuracy) or `bootstrap` (percentile, over the items); null for "
                "metrics recorded without intervals."
            )
        },
    )


class Confusion(Schema):
    """A confusion matrix: rows are true labels, columns predicted ones, in `labels` order."""

    labels = fields.List(fields.String(), required=True)
    matrix = fields.List(fields.List(fields.Integer()), required=True)


class ModelSummary(Schema):
    """One model's metrics on the items the decision was made on."""

    n = fields.Integer(required=True, metadata={"description": "Items measured."})
    accuracy = fields.Nested(Estimate, required=True, metadata={"description": "Wilson interval."})
    macro_f1 = fields.Nested(Estimate, required=True)
    balanced_accuracy = fields.Nested(Estimate, required=True)
    brier = fields.Float(
        required=True, allow_none=True, metadata={"description": "Brier score; lower is better."}
    )
    ece = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "Expected calibration error; lower is better."},
    )
    confusion = fields.Nested(Confusion, required=True, allow_none=True)


class ClassScores(Schema):
    """One model's scores on one class."""

    precision = fields.Float(required=True)
    recall = fields.Float(required=True)
    f1 = fields.Float(required=True)
    recall_lo = fields.Float(required=True, allow_none=True)
    recall_hi = fields.Float(required=True, allow_none=True)


class ClassDifference(Schema):
    """Candidate minus champion on one class."""

    precision = fields.Float(required=True)
    recall = fields.Float(required=True)
    f1 = fields.Float(required=True)


class ClassDelta(Schema):
    """One class: the champion's scores, the candidate's, the difference, the class rule."""

    label = fields.String(required=True)
    support = fields.Integer(required=True, metadata={"description": "Items of the class."})
    candidate = fields.Nested(ClassScores, required=True)
    champion = fields.Nested(ClassScores, required=True, allow_none=True)
    delta = fields.Nested(ClassDifference, required=True, allow_none=True)
    gate = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(paired.CLASS_VERDICTS),
        metadata={
            "description": (
                "The class rule's verdict: `failed` (recall dropped by more than "
                "`max_class_drop`, significantly), `not_significant` (dropped that much, not "
                "significantly), `passed`, `unchecked` (too few items); null without a champion."
            )
        },
    )
    p_worse = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "Exact McNemar p-value that the candidate is worse on it."},
    )
    flagged = fields.Boolean(required=True, metadata={"description": "The class rule failed."})


class PairedItem(Schema):
    """An item both models predicted."""

    item_id = fields.Integer(required=True)
    label = fields.String(required=True, metadata={"description": "Its true label."})
    candidate = fields.String(required=True, metadata={"description": "The candidate's label."})
    champion = fields.String(required=True, metadata={"description": "The champion's label."})


class Agreement(Schema):
    """How the paired items split by who got them right."""

    fixed = fields.Integer(required=True)
    broken = fields.Integer(required=True)
    both_right = fields.Integer(required=True)
    both_wrong = fields.Integer(required=True)


class LabeledItem(Schema):
    """An item of a training snapshot."""

    item_id = fields.Integer(required=True)
    label = fields.String(required=True)


class CorrectedItem(Schema):
    """An item whose training label changed."""

    item_id = fields.Integer(required=True)
    old = fields.String(required=True, metadata={"description": "In the champion's snapshot."})
    new = fields.String(required=True, metadata={"description": "In the candidate's snapshot."})


class SnapshotChanges(Schema):
    """The candidate's training labels against those of the champion it was judged against."""

    against = fields.Integer(
        required=True, allow_none=True, metadata={"description": "That champion's version."}
    )
    why = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Why there is nothing to compare (then the counts are null)."},
    )
    added = fields.Integer(required=True, allow_none=True)
    corrected = fields.Integer(required=True, allow_none=True)
    removed = fields.Integer(
        required=True, allow_none=True, metadata={"description": "Items no longer trained on."}
    )
    added_items = fields.List(fields.Nested(LabeledItem), required=True)
    corrected_items = fields.List(fields.Nested(CorrectedItem), required=True)
    removed_items = fields.List(fields.Nested(LabeledItem), required=True)


class ModelReview(Schema):
    """The gate's decision on a version, beside the champion it was judged against."""

    version = fields.Integer(required=True)
    run_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The retrain that made it; null (and all else empty) if none."},
    )
    decision = f.enum(Decision, required=True, allow_none=True)
    judged_by = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(review.JUDGED_BY),
        metadata={
            "description": (
                "`cross_validation` (a first model before any held-out audit), `heldout` (all "
                "held-out audits), `heldout_unseen` (the audits the champion was not judged on) "
                "or `heldout_since_promotion` (older runs: the audits labeled since the "
                "champion's promotion)."
            )
        },
    )
    judged_n = fields.Integer(required=True, allow_none=True)
    champion_version = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The champion it was judged against (null for a first model)."},
    )
    candidate = fields.Nested(ModelSummary, required=True, allow_none=True)
    champion = fields.Nested(ModelSummary, required=True, allow_none=True)
    baseline = fields.Nested(
        ModelSummary,
        required=True,
        allow_none=True,
        metadata={"description": "Always predicting the majority training label."},
    )
    class_deltas = fields.List(fields.Nested(ClassDelta), required=True)
    paired_items = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "Items with stored predictions (null for runs before they were kept)."
        },
    )
    agreement = fields.Nested(
        Agreement,
        required=True,
        allow_none=True,
        metadata={"description": "Null without a champion or stored predictions."},
    )
    fixed = fields.List(
        fields.Nested(PairedItem),
        required=True,
        metadata={"description": "Every item the champion got wrong and the candidate right."},
    )
    broken = fields.List(
        fields.Nested(PairedItem),
        required=True,
        metadata={"description": "Every item the champion got right and the candidate wrong."},
    )
    changes = fields.Nested(
        SnapshotChanges,
        required=True,
        allow_none=True,
        metadata={
            "description": (
                f"Labels added, corrected and removed (the first {review.CHANGE_LIMIT} of each "
                "by item id; the counts are complete)."
            )
        },
    )
    gate = fields.List(
        fields.Nested(GateReason),
        required=True,
        metadata={"description": "The gate's rules, passed or failed, with their numbers."},
    )


class CurvePoint(Schema):
    """One version on the learning curve."""

    version = fields.Integer(required=True)
    status = f.enum(ModelStatus, required=True)
    promoted = fields.Boolean(
        required=True, metadata={"description": "It was the champion at some time."}
    )
    train_size = fields.Integer(required=True, metadata={"description": "Labels it trained on."})
    value = fields.Float(required=True, allow_none=True)
    lo = fields.Float(required=True, allow_none=True)
    hi = fields.Float(required=True, allow_none=True)
    n = fields.Integer(required=True, allow_none=True, metadata={"description": "Items measured."})
    source = fields.String(
        required=True,
        validate=validate.OneOf(curve.SOURCES),
        metadata={
            "description": (
                "`current_heldout`: measured now on the current held-out set (the points "
                "compare); `stored`: as recorded when it was judged (no held-out set yet, or "
                "its model could not be loaded)."
            )
        },
    )
    judged_by = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "How a `stored` value was measured (see `judged_by`)."},
    )


class LearningCurve(Schema):
    """The gate's metric of every version, with its 95% interval, against its training labels."""

    metric = fields.String(required=True, validate=validate.OneOf(evaluation.METRIC_NAMES))
    heldout_size = fields.Integer(required=True)
    heldout_digest = fields.String(required=True, allow_none=True)
    versions = fields.Integer(required=True, metadata={"description": "Versions in the project."})
    limit = fields.Integer(required=True, metadata={"description": "The latest shown."})
    points = fields.List(
        fields.Nested(CurvePoint), required=True, metadata={"description": "Oldest first."}
    )


class ChangeRequest(Schema):
    """Why the change is made (kept with the event)."""

    reason = fields.String(
        required=True,
        validate=validate.Length(1, registry.MAX_REASON),
        metadata={"description": f"Why (1 to {registry.MAX_REASON} characters)."},
    )


class RollbackRequest(ChangeRequest):
    """Why, and optionally which earlier champion to go back to."""

    to_version = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={
            "description": (
                "A retired version (a former champion) to bring back; by default the champion "
                "before the current one."
            )
        },
    )


class Change(Schema):
    """The recorded change and the project's champion and challenger after it."""

    event = fields.Nested(Event, required=True)
    champion = fields.Integer(required=True, allow_none=True)
    challenger = fields.Integer(required=True, allow_none=True)


def _version_body(v: ModelVersionRow) -> dict:
    """A version as the API shows it."""
    return {
        "version": v.version,
        "status": v.status,
        "metrics": v.metrics or {},
        "created_at": timestamp(v.created_at),
        "promoted_at": timestamp(v.promoted_at),
        "snapshot_digest": v.snapshot_digest,
        "train_size": v.train_size,
        "template": v.template,
        "run_id": v.run_id,
        "params": v.params or {},
        "library_versions": {k: str(val) for k, val in (v.library_versions or {}).items()},
        "heldout_size": v.heldout_size,
        "heldout_digest": v.heldout_digest,
        "training_seconds": v.training_seconds,
    }


def _numbers(project: Project) -> dict[int, int]:
    """Version id -> version number, for the project."""
    rows = db.session.execute(
        select(ModelVersionRow.id, ModelVersionRow.version).where(
            ModelVersionRow.project_id == project.id
        )
    )
    return {row_id: number for row_id, number in rows}


def _event_body(event: ModelEvent, numbers: dict[int, int]) -> dict:
    """An event as the API shows it."""
    return {
        "action": event.action,
        "version": numbers[event.model_version_id],
        "from_version": numbers.get(event.from_version_id),
        "actor": event.actor,
        "reason": event.reason,
        "created_at": timestamp(event.created_at),
    }


def _changed(project: Project, event: ModelEvent) -> dict:
    """Commit the change (services flush, the view commits) and describe it."""
    db.session.commit()
    champion, challenger = registry.champion(project), registry.challenger(project)
    return {
        "event": _event_body(event, _numbers(project)),
        "champion": champion.version if champion else None,
        "challenger": challenger.version if challenger else None,
    }


@blp.route("/projects/<slug>/models")
@scoped("admin", "Every model version of the project, newest first.", errors=(404,))
@blp.response(200, ModelList, description="The versions.")
def list_models(slug: str):
    """Model versions."""
    project = project_for_key(slug)
    versions = db.session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.project_id == project.id)
        .order_by(ModelVersionRow.version.desc())
    )
    return {"models": [_version_body(v) for v in versions]}


@blp.route("/projects/<slug>/models/<id32:version>", parameters=VERSION)
@scoped(
    "admin",
    "One model version: its status, held-out metrics, hyper-parameters, lineage and the "
    "registry changes that involved it.",
    errors=(404,),
)
@with_project
@blp.response(200, ModelVersionDetail, description="The version.")
def show_model(project: Project, version: int):
    """A model version."""
    row = registry.find_version(project, version)
    numbers = _numbers(project)
    events = [_event_body(e, numbers) for e in registry.history(project, row)]
    return {**_version_body(row), "events": events}


@blp.route("/projects/<slug>/models/<id32:version>/review", parameters=VERSION)
@scoped(
    "admin",
    "The review of the gate's decision that made this version: its metrics beside those of the "
    "champion it was judged against (with intervals), per-class deltas, the items it fixed and "
    "broke, what changed in its training labels since the champion's snapshot, and the gate's "
    "rules with their numbers. Empty (null fields) for a version no retrain made.",
    errors=(404,),
)
@with_project
@blp.response(200, ModelReview, description="The review.")
def review_model(project: Project, version: int):
    """Review a version's gate decision."""
    return review.of_version(project, registry.find_version(project, version))


@blp.route("/projects/<slug>/models/learning-curve")
@scoped(
    "admin",
    f"The learning curve: the gate's metric of each of the latest {curve.CURVE_LIMIT} versions, "
    "with its 95% interval, against the labels it trained on. Each is measured on the project's "
    "current held-out set (no version trains on it, so the points compare); before there is "
    "one, each version's stored metrics are given instead (`source`).",
    errors=(404,),
)
@with_project
@blp.response(200, LearningCurve, description="The curve, oldest version first.")
def learning_curve(project: Project):
    """The learning curve."""
    return curve.learning_curve(project)


@blp.route("/projects/<slug>/models/<id32:version>/promote", methods=["POST"], parameters=VERSION)
@scoped(
    "admin",
    "Make this version the champion: every prediction uses it from the next request on, the "
    "current champion becomes `retired`, a challenger loses its alias, and the pool is rescored. "
    "Any version but the champion may be promoted (a rejected one too, overruling the gate). "
    "409 if it is the champion already.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(ChangeRequest, arg_name="payload", description="Why.")
@blp.response(200, Change, description="The change, and the champion and challenger now.")
def promote_model(project: Project, version: int, payload: dict):
    """Promote a version."""
    row = registry.find_version(project, version)
    event = registry.promote(row, g.api_key.annotator, payload["reason"])
    return _changed(project, event)


@blp.route("/projects/<slug>/models/<id32:version>/reject", methods=["POST"], parameters=VERSION)
@scoped(
    "admin",
    "Reject a candidate or the challenger. The champion cannot be rejected (409): promote "
    "another version or roll back first.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(ChangeRequest, arg_name="payload", description="Why.")
@blp.response(200, Change, description="The change, and the champion and challenger now.")
def reject_model(project: Project, version: int, payload: dict):
    """Reject a version."""
    row = registry.find_version(project, version)
    event = registry.reject(row, g.api_key.annotator, payload["reason"])
    return _changed(project, event)


@blp.route(
    "/projects/<slug>/models/<id32:version>/challenger", methods=["POST"], parameters=VERSION
)
@scoped(
    "admin",
    "Make a candidate (or a rejected version) the project's challenger; the previous challenger "
    "becomes a candidate again. 409 for the champion, a retired version, or the challenger.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(ChangeRequest, arg_name="payload", description="Why.")
@blp.response(200, Change, description="The change, and the champion and challenger now.")
def challenge_model(project: Project, version: int, payload: dict):
    """Make a version the challenger."""
    row = registry.find_version(project, version)
    event = registry.set_challenger(row, g.api_key.annotator, payload["reason"])
    return _changed(project, event)


@blp.route("/projects/<slug>/models/rollback", methods=["POST"])
@scoped(
    "admin",
    "Bring back an earlier champion: `to_version` (a retired version), or by default the "
    "champion before the current one, which becomes `retired`. 409 when there is no champion or "
    "nothing to roll back to, or `to_version` is not retired; 422 if `to_version` does not exist.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(RollbackRequest, arg_name="payload", description="Why, and where to go back to.")
@blp.response(200, Change, description="The change, and the champion and challenger now.")
def rollback_model(project: Project, payload: dict):
    """Roll back to an earlier champion."""
    target = None
    if payload["to_version"] is not None:
        target = db.session.scalar(
            select(ModelVersionRow).where(
                ModelVersionRow.project_id == project.id,
                ModelVersionRow.version == payload["to_version"],
            )
        )
        if target is None:
            raise ValidationError(
                {"to_version": f"there is no version {payload['to_version']} in this project"}
            )
    event = registry.rollback(project, g.api_key.annotator, payload["reason"], to_version=target)
    return _changed(project, event)
