"""The labeling queue: lanes in priority order, leases, and skips."""

from __future__ import annotations

import random
from datetime import timedelta

from flask import current_app
from sqlalchemy import exists, or_, select, update

from ..enums import QueueReason, values
from ..extensions import db
from ..models import Item, ModelVersion, Project, Skip, utcnow
from ..training import current_scores

REASONS = values(QueueReason)


def _free(now):
    """Items nobody else holds a live lease on."""
    return or_(Item.lease_until.is_(None), Item.lease_until < now)


def _not_skipped_by(annotator: str):
    return ~exists().where(Skip.item_id == Item.id, Skip.annotator == annotator)


def has_champion(project: Project) -> bool:
    """Whether the project has a promoted model."""
    return (
        db.session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.project_id == project.id, ModelVersion.status == "champion"
            )
        )
        is not None
    )


def _candidates(project: Project, annotator: str, now, rng: random.Random):
    """Yield (query, reason) lanes in priority order; each is one indexed query for one item."""
    base = [Item.project_id == project.id, _free(now), _not_skipped_by(annotator)]
    yield (
        select(Item).where(Item.disputed_at.is_not(None), *base).order_by(Item.disputed_at),
        "disputed",
    )
    pool = [*base, Item.label.is_(None)]
    champion = has_champion(project)
    if champion and rng.random() >= project.setting("audit_share"):
        yield (
            # Only scores under the current (champion, strategy) key: others are on another scale.
            select(Item)
            .where(*pool, *current_scores(project))
            .order_by(Item.score.desc(), Item.id),
            "uncertain",
        )
    # Uniform random: start at a random point of the `rand` index and wrap around.
    reason = "audit" if champion else "cold-start"
    start = rng.random()
    yield select(Item).where(*pool, Item.rand >= start).order_by(Item.rand), reason
    yield select(Item).where(*pool, Item.rand < start).order_by(Item.rand), reason


def next_item(
    project: Project, annotator: str, rng: random.Random | None = None
) -> tuple[Item, str] | None:
    """Lease the next item to `annotator` and return it with the reason, or None when done.

    An annotator who already holds a live lease gets that item again, so a reload loses nothing.
    """
    rng = rng or random.Random()
    now = utcnow()
    until = now + timedelta(seconds=current_app.config["LEASE_SECONDS"])
    held = db.session.scalar(
        select(Item)
        .where(
            Item.project_id == project.id,
            Item.lease_owner == annotator,
            Item.lease_until >= now,
            or_(Item.label.is_(None), Item.disputed_at.is_not(None)),
        )
        .limit(1)
    )
    if held is not None:
        held.lease_until = until
        db.session.commit()
        return held, held.lease_reason or "audit"
    for query, reason in _candidates(project, annotator, now, rng):
        for _attempt in range(5):
            item = db.session.scalar(query.limit(1))
            if item is None:
                break
            if _claim(item.id, annotator, reason, now, until):
                db.session.refresh(item)
                return item, reason
    return None


def _claim(item_id: int, annotator: str, reason: str, now, until) -> bool:
    """Take the lease on an item unless someone else got it first."""
    result = db.session.execute(
        update(Item)
        .where(Item.id == item_id, _free(now))
        .values(lease_owner=annotator, lease_until=until, lease_reason=reason)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def release(item: Item, annotator: str) -> None:
    """Give back a lease this annotator holds (flushed with the caller's transaction)."""
    if item.lease_owner == annotator:
        item.lease_owner = item.lease_until = item.lease_reason = None


def leased_to_other(item: Item, annotator: str) -> bool:
    """Whether someone else holds a live lease on the item."""
    return (
        item.lease_owner is not None
        and item.lease_owner != annotator
        and item.lease_until is not None
        and item.lease_until >= utcnow()
    )


def skip(project: Project, item: Item, annotator: str) -> None:
    """Hide the item from this annotator and release their lease on it."""
    if db.session.get(Skip, (annotator, item.id)) is None:
        db.session.add(Skip(item_id=item.id, annotator=annotator))
    release(item, annotator)
    db.session.commit()
