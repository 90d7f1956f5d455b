"""The experts' labeling queue: the next item (leased), annotations and skips."""

from __future__ import annotations

from flask import Response, g
from marshmallow import Schema, fields

from .. import fields as f
from .. import pool, serving, validation
from ..enums import QueueReason
from ..errors import Conflict
from ..extensions import db
from ..models import Item, Project
from .common import BODY_ERRORS, Blueprint, created, scoped, with_project, with_row

blp = Blueprint("labeling", __name__, description="The experts' queue and their labels.")


class Suggestion(Schema):
    """The champion's prediction for the item."""

    label = f.label(required=True)
    probabilities = f.NumberMap(required=True, metadata={"description": "Probability per label."})


class QueueItem(Schema):
    """The item, why the queue chose it, and the champion's suggestion (null before a model)."""

    item_id = fields.Integer(required=True)
    data = fields.Dict(required=True, metadata={"description": "The item's data as imported."})
    reason = f.enum(
        QueueReason, required=True, metadata={"description": "Why the queue chose this item."}
    )
    suggestion = fields.Nested(Suggestion, required=True, allow_none=True)


class AnnotationRequest(Schema):
    """The annotator's label."""

    label = f.label(required=True)


class Annotation(Schema):
    """The recorded annotation."""

    annotation_id = fields.Integer(required=True)
    item_id = fields.Integer(required=True)
    label = f.label(required=True)


@blp.route("/projects/<slug>/queue/next")
@scoped(
    "label",
    "Lease the next item to this key's annotator for 10 minutes: disputed items first, then "
    "(with a model) the most uncertain, with a share of random audits; before any model, one "
    "item from each cluster of the pool, then random order. Asking again returns the same "
    "leased item.",
    errors=(404,),
)
@with_project
@blp.response(200, QueueItem, description="The item, why it was chosen, a suggestion.")
@blp.alt_response(204, description="Nothing is left to label for this annotator.", success=True)
def next_item(project: Project):
    """Next item to label."""
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


@blp.route("/items/<id64:item_id>/annotations", methods=["POST"])
@scoped(
    "label",
    "Record this key's annotator's label; it becomes the item's resolved label, and every "
    "`retrain_every` label changes queue an automatic retrain.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_row(Item, "item", "item_id")
@blp.arguments(AnnotationRequest, arg_name="payload", description="The label.")
@blp.response(201, Annotation, description="The annotation.")
def annotate(item: Item, payload: dict):
    """Label an item."""
    project = db.session.get(Project, item.project_id)
    label = validation.validate_label(project, payload["label"])
    annotator = g.api_key.annotator
    if pool.leased_to_other(item, annotator):
        raise Conflict(f"Item {item.id} is leased to another annotator; fetch queue/next instead.")
    annotation = pool.annotate(project, item, annotator, label)
    return created({"annotation_id": annotation.id, "item_id": item.id, "label": annotation.label})


@blp.route("/items/<id64:item_id>/skip", methods=["POST"])
@scoped(
    "label",
    "Hide the item from this key's annotator and release their lease on it.",
    errors=(404,),
)
@with_row(Item, "item", "item_id")
@blp.response(204, description="Skipped.")
def skip(item: Item):
    """Skip an item."""
    pool.skip(db.session.get(Project, item.project_id), item, g.api_key.annotator)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return Response(status=204)
