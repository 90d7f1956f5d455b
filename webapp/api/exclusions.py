"""The REST API: excluding an item from the queue, training and held-out evaluation, and
restoring it (`POST`/`DELETE /items/{item_id}/exclusion`, admin scope)."""

from __future__ import annotations

from datetime import datetime

from flask import Response, g, jsonify

from ..auth.keys import owned, require_scope
from ..extensions import db
from ..models import Item
from ..pool import exclusion
from . import body, bp

# Ids arrive as unbounded path integers; past 64 bits no row can match (and SQLite overflows).
MAX_ROW_ID = 2**63 - 1


def _item(item_id: int) -> Item:
    """The key's project's item with this id, or 404."""
    item = db.session.get(Item, item_id) if item_id <= MAX_ROW_ID else None
    return owned(item, "item", item_id)


def _timestamp(value: datetime) -> str:
    """Format a stored (naive UTC) time as ISO 8601 with a Z."""
    return value.isoformat(timespec="seconds") + "Z"


@bp.post("/items/<int:item_id>/exclusion")
@require_scope("admin")
def exclude_item(item_id: int):
    """Exclude an item (201), or show the exclusion it already has (200)."""
    item = _item(item_id)
    payload = body.json_object()
    body.only(payload, {"reason"})
    reason = exclusion.validate_reason(body.required(payload, "reason"))
    created = exclusion.exclude(item, g.api_key.annotator, reason)
    db.session.commit()
    resp = jsonify(
        {
            "item_id": item.id,
            "excluded_at": _timestamp(item.excluded_at),
            "excluded_by": item.excluded_by,
            "reason": item.excluded_reason,
        }
    )
    resp.status_code = 201 if created else 200
    return resp


@bp.delete("/items/<int:item_id>/exclusion")
@require_scope("admin")
def restore_item(item_id: int):
    """Put an excluded item back in the queue and the training data (204 even if it was not out)."""
    exclusion.restore(_item(item_id))
    db.session.commit()
    return Response(status=204)
