"""The pool's items: `POST /projects/{slug}/items` imports them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .. import pool, training, validation
from ..enums import ItemSource
from ..models import Project
from . import fields as f
from .common import BODY_ERRORS, Blueprint, check_rows, scoped, with_project

blp = Blueprint("items", __name__, description="The pool of inputs.")


class ItemRow(Schema):
    """One item to import."""

    external_id = f.external_id()
    data = f.item_data(required=True)


class ImportRequest(Schema):
    """Up to 1,000 items, imported whole or not at all."""

    items = fields.List(
        fields.Nested(ItemRow),
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
    return {"ids": ids}
