"""The model registry: every version of a project's model with its status, metrics and lineage,
and the changes a person makes to it (promote, reject, challenger, rollback)."""

from __future__ import annotations

from flask import g
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from .. import fields as f
from .. import registry
from ..auth.keys import project_for_key
from ..enums import ModelAction, ModelStatus
from ..errors import ValidationError
from ..extensions import db
from ..models import ModelEvent, Project
from ..models import ModelVersion as ModelVersionRow
from .common import BODY_ERRORS, DATE_TIME, Blueprint, scoped, timestamp, with_project

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
