"""The pool's items: `POST /projects/{slug}/items` imports them; `…/items/{id}/exclusion`
takes a bad one out of the queue, training and held-out evaluation, and puts it back."""

from __future__ import annotations

from flask import Response, g
from marshmallow import Schema, fields, validate

from .. import fields as f
from .. import pool, training, validation
from ..enums import ItemSource
from ..extensions import db
from ..models import MAX_EXCLUSION_REASON, Item, Project
from ..pool import exclusion
from .common import BODY_ERRORS, Blueprint, check_rows, scoped, timestamp, with_project, with_row

blp = Blueprint("items", __name__, description="The pool of inputs.")


class ItemRow(Schema):
    """One item to import."""

    external_id = f.external_id()
    data = f.item_data(required=True)


class ImportRequest(Schema):
    """Up to 1,000 items, imported whole or not at all."""

    items = f.Rows(
        ItemRow,
        required=True,
        validate=validate.Length(
            1, f.MAX_ROWS, error="must hold 1 to {max} rows (split larger batches)"
        ),
    )


class IdList(Schema):
    """Ids of the rows written, in the order of the request's rows."""

    ids = fields.List(fields.Integer(), required=True)


@blp.route("/projects/<slug>/items", methods=["POST"])
@scoped(
    "admin",
    f"Add up to {f.MAX_ROWS} items to the pool. Every row is validated before any is written, "
    "so a request is imported whole or not at all. A known `external_id` returns the existing "
    "item's id instead of creating a duplicate.",
    errors=(404, *BODY_ERRORS),
)
@with_project
@blp.arguments(ImportRequest, arg_name="payload", description="The items to import.")
@blp.response(201, IdList, description="The item ids, in the order of the rows.")
def import_items(project: Project, payload: dict):
    """Import items."""

    def check(row: dict, prefix: str) -> dict:
        """Check one row's data against the project."""
        validation.validate_data(project, row["data"], f"{prefix}.data")
        return row

    rows = check_rows(payload["items"], "items", check)
    # One batch, so one transaction: a request is imported whole or not at all.
    batches = pool.import_items(project, rows, source=ItemSource.IMPORT, batch_size=f.MAX_ROWS)
    ids = [item_id for batch in batches for item_id in batch]
    training.request_rescore(project)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return {"ids": ids}


class ExclusionRequest(Schema):
    """Why the item is taken out."""

    reason = fields.String(
        required=True,
        validate=validate.Length(1, MAX_EXCLUSION_REASON),
        metadata={"description": "Why the item is excluded (shown to engineers)."},
    )


class Exclusion(Schema):
    """An item's exclusion: when, by whom, why."""

    item_id = fields.Integer(required=True)
    excluded_at = fields.String(required=True, metadata={"format": "date-time"})
    excluded_by = fields.String(required=True)
    reason = fields.String(required=True)


def _exclusion(item: Item) -> dict:
    """The exclusion's answer body."""
    return {
        "item_id": item.id,
        "excluded_at": timestamp(item.excluded_at),
        "excluded_by": item.excluded_by,
        "reason": item.excluded_reason,
    }


@blp.route("/items/<id64:item_id>/exclusion", methods=["POST"])
@scoped(
    "admin",
    "Take an item out of the labeling queue, training and held-out evaluation (its row and "
    "annotations are kept). Excluding an item that already is answers its exclusion with 200.",
    errors=(404, *BODY_ERRORS),
)
@with_row(Item, "item", "item_id")
@blp.arguments(ExclusionRequest, arg_name="payload", description="Why the item is excluded.")
@blp.response(201, Exclusion, description="The item is now excluded.")
@blp.alt_response(200, schema=Exclusion, description="It already was; unchanged.", success=True)
def exclude_item(item: Item, payload: dict):
    """Exclude an item."""
    reason = exclusion.validate_reason(payload["reason"])
    created = exclusion.exclude(item, g.api_key.annotator, reason)
    db.session.commit()
    return _exclusion(item), 201 if created else 200


@blp.route("/items/<id64:item_id>/exclusion", methods=["DELETE"])
@scoped(
    "admin",
    "Put an excluded item back in the queue and the training data (204 even if it was not out).",
    errors=(404,),
)
@with_row(Item, "item", "item_id")
@blp.response(204, description="The item is back.")
def restore_item(item: Item):
    """Restore an excluded item."""
    exclusion.restore(item)
    db.session.commit()
    return Response(status=204)
