"""Excluding an item: an engineer takes a bad row out of the queue, training and held-out
evaluation (one labeled row must not stop a project from learning), keeping the row and its
annotations for the record; restoring puts it back as it was.

The functions flush; the caller (view, command) commits.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import func, select

from ..errors import ValidationError
from ..extensions import db
from ..models import MAX_EXCLUSION_REASON, Item, Project, utcnow


def validate_reason(reason: object, field: str = "reason") -> str:
    """A non-empty reason of at most MAX_EXCLUSION_REASON characters, without control characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError({field: "must say why the item is excluded (a non-empty string)"})
    reason = reason.strip()
    if len(reason) > MAX_EXCLUSION_REASON:
        raise ValidationError({field: f"must be at most {MAX_EXCLUSION_REASON} characters"})
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in reason):
        raise ValidationError({field: "must not contain control characters"})
    return reason


def exclude(item: Item, by: str, reason: str) -> bool:
    """Exclude the item and release any lease on it; False if it already was (then unchanged)."""
    reason = validate_reason(reason)
    if item.excluded_at is not None:
        return False
    item.excluded_at, item.excluded_by, item.excluded_reason = utcnow(), by[:64], reason
    item.lease_owner = item.lease_until = item.lease_reason = None
    db.session.flush()
    return True


def restore(item: Item) -> bool:
    """Put an excluded item back in the queue and the training data; False if it was not out."""
    if item.excluded_at is None:
        return False
    item.excluded_at = item.excluded_by = item.excluded_reason = None
    db.session.flush()
    return True


def excluded_items(project: Project, limit: int | None = 100) -> list[Item]:
    """The project's excluded items, most recently excluded first (all of them if no limit)."""
    return list(
        db.session.scalars(
            select(Item)
            .where(Item.project_id == project.id, Item.excluded_at.is_not(None))
            .order_by(Item.excluded_at.desc(), Item.id.desc())
            .limit(limit)
        )
    )


def excluded_count(project: Project) -> int:
    """How many of the project's items are excluded."""
    return db.session.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project.id, Item.excluded_at.is_not(None)
        )
    )
