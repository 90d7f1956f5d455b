"""View: one item, read-only, for reviewers and engineers: its text or features, its label, which
split it belongs to, and its history (every label given, production predictions and feedback).
The run pages link here from the items a candidate fixed or broke and the labels that changed."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import select

from ..auth.routes import role_required
from ..enums import Kind, Role
from ..extensions import db
from ..models import Annotation, Feedback, ModelVersion, Prediction
from ..monitor.routes import project_or_404
from ..training import heldout_of
from . import bp
from .routes import _item_or_404, _paragraphs

HISTORY_LIMIT = 50


@bp.get("/projects/<slug>/items/<int:item_id>")
@role_required(Role.REVIEWER, Role.ENGINEER)
def show_item(slug: str, item_id: int):
    """Show one item with its label, its split and its history."""
    project = project_or_404(slug)
    item = _item_or_404(project, item_id)
    labels = db.session.scalars(
        select(Annotation).where(Annotation.item_id == item.id).order_by(Annotation.id.desc())
    ).all()
    predictions = db.session.execute(
        select(Prediction, Feedback, ModelVersion.version)
        .outerjoin(Feedback, Feedback.prediction_id == Prediction.id)
        .outerjoin(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.item_id == item.id)
        .order_by(Prediction.id.desc(), Feedback.id.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    split = None
    if item.label is not None:
        first_lane = labels[-1].reason if labels else None
        split = "held-out" if heldout_of(project, [item.id], [first_lane])[0] else "training"
    return render_template(
        "annotate/item.html",
        project=project,
        item=item,
        labels=labels[:HISTORY_LIMIT],
        more_labels=max(len(labels) - HISTORY_LIMIT, 0),
        predictions=predictions,
        split=split,
        paragraphs=_paragraphs(item.data.get("text", "")) if project.kind == Kind.TEXT else [],
    )
