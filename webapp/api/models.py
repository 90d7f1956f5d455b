"""The model registry: every version of a project's model with its status and metrics."""

from __future__ import annotations

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from .. import fields as f
from ..auth.keys import project_for_key
from ..enums import ModelStatus
from ..extensions import db
from ..models import ModelVersion as ModelVersionRow
from .common import DATE_TIME, Blueprint, scoped, timestamp

blp = Blueprint("models", __name__, description="Model versions.")


class ModelVersion(Schema):
    """One model version."""

    version = fields.Integer(required=True, validate=validate.Range(min=1))
    status = f.enum(ModelStatus, required=True)
    metrics = fields.Dict(
        required=True, metadata={"description": "Held-out metrics when it was trained."}
    )
    created_at = fields.String(required=True, metadata=DATE_TIME)
    promoted_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    snapshot_digest = fields.String(
        required=True,
        metadata={"description": "SHA-256 of the (item id, label) pairs it was trained on."},
    )
    train_size = fields.Integer(required=True, validate=validate.Range(min=0))


class ModelList(Schema):
    """The project's model versions."""

    models = fields.List(
        fields.Nested(ModelVersion), required=True, metadata={"description": "Newest first."}
    )


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
    return {
        "models": [
            {
                "version": v.version,
                "status": v.status,
                "metrics": v.metrics or {},
                "created_at": timestamp(v.created_at),
                "promoted_at": timestamp(v.promoted_at),
                "snapshot_digest": v.snapshot_digest,
                "train_size": v.train_size,
            }
            for v in versions
        ]
    }
