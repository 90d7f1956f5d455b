"""Items in a project's pool: import, the labeling queue with leases, skips and annotations."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice

from flask import current_app
from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .errors import ValidationError
from .extensions import db
from .models import Annotation, Item, ModelVersion, Project, Skip, utcnow

REASONS = ("disputed", "uncertain", "audit", "cold-start")
IMPORT_BATCH = 1000


def validate_data(project: Project, data: object, field: str = "data") -> dict:
    """Check an item's data against the project's kind; return it or raise ValidationError."""
    if not isinstance(data, dict):
        raise ValidationError({field: "must be an object"})
    if project.kind == "text":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValidationError({f"{field}.text": "must be a non-empty string"})
        return data
    features = data.get("features")
    if not isinstance(features, dict):
        raise ValidationError({f"{field}.features": "must be an object of feature values"})
    for name in project.features:
        value = features.get(name)
        if value is None:
            raise ValidationError({f"{field}.features.{name}": "is required"})
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationError({f"{field}.features.{name}": "must be a finite number"})
    unknown = sorted(set(features) - set(project.features))
    if unknown:
        raise ValidationError(
            {f"{field}.features.{unknown[0]}": "is not a feature of this project"}
        )
    return data


def validate_label(project: Project, label: object, field: str = "label") -> str:
    """Check that `label` is one of the project's labels."""
    if not isinstance(label, str):
        raise ValidationError({field: "must be a string"})
    if label not in project.labels:
        raise ValidationError({field: f"unknown label {label!r}; expected one of {project.labels}"})
    return label


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def import_items(
    project: Project, rows: Iterable[dict], source: str = "import", batch_size: int = IMPORT_BATCH
) -> Iterator[list[int]]:
    """Insert items in batches, yielding the ids of each batch in input order.

    Each row is `{"data": {...}, "external_id": str | None}` and must already be validated.
    An external id seen before maps to the existing item instead of creating a duplicate.
    Each batch is committed on its own, so a long import streams and never holds 1M rows.
    """
    for batch in _batches(rows, batch_size):
        yield _import_batch(project, batch, source)


def _import_batch(project: Project, batch: list[dict], source: str) -> list[int]:
    """Insert one batch; return ids in input order (existing ids for known external ids)."""
    for attempt in range(3):
        try:
            ids = _try_import_batch(project, batch, source)
            db.session.commit()
            return ids
        except IntegrityError:
            # Another request inserted one of these external ids first; look again.
            db.session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _try_import_batch(project: Project, batch: list[dict], source: str) -> list[int]:
    external = [r.get("external_id") for r in batch]
    wanted = {e for e in external if e is not None}
    known: dict[str, int] = {}
    if wanted:
        found = db.session.execute(
            select(Item.external_id, Item.id).where(
                Item.project_id == project.id, Item.external_id.in_(wanted)
            )
        )
        known = {ext: item_id for ext, item_id in found}
    now = utcnow()
    new_rows, seen = [], set(known)
    for row, ext in zip(batch, external, strict=True):
        if ext is not None and ext in seen:
            continue
        if ext is not None:
            seen.add(ext)
        new_rows.append(
            {
                "project_id": project.id,
                "external_id": ext,
                "data": row["data"],
                "source": source,
                "created_at": now,
                "rand": random.random(),
            }
        )
    if new_rows:
        result = db.session.execute(
            insert(Item).returning(Item.id, sort_by_parameter_order=True), new_rows
        )
        new_ids = iter(result.scalars().all())
    else:
        new_ids = iter(())
    ids, by_ext = [], dict(known)
    for ext in external:
        if ext is not None and ext in by_ext:
            ids.append(by_ext[ext])
            continue
        item_id = next(new_ids)
        if ext is not None:
            by_ext[ext] = item_id
        ids.append(item_id)
    return ids


def find_or_create_item(project: Project, data: dict, external_id: str | None, source: str) -> Item:
    """Return the item with this external id, or a new one (flushed, not committed)."""
    if external_id is not None:
        item = db.session.scalar(
            select(Item).where(Item.project_id == project.id, Item.external_id == external_id)
        )
        if item is not None:
            return item
    item = Item(project_id=project.id, external_id=external_id, data=data, source=source)
    db.session.add(item)
    db.session.flush()
    return item


# ---------------------------------------------------------------------------------------------
# The queue


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
            select(Item).where(*pool, Item.score.is_not(None)).order_by(Item.score.desc(), Item.id),
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


def annotate(project: Project, item: Item, annotator: str, label: str) -> Annotation:
    """Record an expert label, resolve the item, and trigger a retrain every N label changes.

    Raises ValidationError for an unknown label; the caller checks leases and access.
    """
    from .training import trigger_retrain

    validate_label(project, label)
    reason = item.lease_reason if item.lease_owner == annotator else None
    annotation = Annotation(
        project_id=project.id, item_id=item.id, annotator=annotator, label=label, reason=reason
    )
    db.session.add(annotation)
    first = item.label is None
    changed = item.label != label
    item.label = label
    item.labeled_at = utcnow()
    item.disputed_at = None
    item.lease_owner = item.lease_until = item.lease_reason = None
    if first or changed:
        db.session.execute(
            update(Project)
            .where(Project.id == project.id)
            .values(
                labeled_count=Project.labeled_count + (1 if first else 0),
                label_events=Project.label_events + 1,
            )
        )
    # Claimed in the label's own transaction: one commit per label on this hot path.
    due = _claim_retrain(project)
    db.session.commit()
    if due:
        trigger_retrain(project, trigger="auto")
    return annotation


def label_unlabeled(
    project: Project, pairs: Iterable[tuple[int, str]], annotator: str, batch_size: int = 1000
) -> int:
    """Record labels in bulk for the items among (item id, label) that have none yet.

    For imports and seeds: an item an expert already labeled keeps its label. Each batch is
    one transaction of bulk writes (no per-item commit), and the automatic retrain is
    considered once at the end, so a 100k-label import queues one retrain, not 4,000.
    Returns how many items were labeled.
    """
    from .training import trigger_retrain

    done = 0
    for batch in _batches(pairs, batch_size):
        wanted = dict(batch)
        for item_id, label in wanted.items():
            validate_label(project, label, f"label of item {item_id}")
        todo = db.session.scalars(
            select(Item.id).where(
                Item.project_id == project.id, Item.id.in_(list(wanted)), Item.label.is_(None)
            )
        ).all()
        if not todo:
            continue
        now = utcnow()
        db.session.execute(
            insert(Annotation),
            [
                {
                    "project_id": project.id,
                    "item_id": item_id,
                    "annotator": annotator,
                    "label": wanted[item_id],
                    "created_at": now,
                }
                for item_id in todo
            ],
        )
        db.session.execute(
            update(Item),
            [
                {"id": item_id, "label": wanted[item_id], "labeled_at": now, "disputed_at": None}
                for item_id in todo
            ],
        )
        db.session.execute(
            update(Project)
            .where(Project.id == project.id)
            .values(
                labeled_count=Project.labeled_count + len(todo),
                label_events=Project.label_events + len(todo),
            )
        )
        db.session.commit()
        done += len(todo)
    if done:
        due = _claim_retrain(project)
        db.session.commit()
        if due:
            trigger_retrain(project, trigger="auto")
    return done


def _claim_retrain(project: Project) -> bool:
    """Claim an automatic retrain when N label changes have piled up since the last.

    The conditional UPDATE makes the claim atomic; it lands with the caller's commit.
    """
    every = int(project.setting("retrain_every") or 0)
    if every <= 0:
        return False
    result = db.session.execute(
        update(Project)
        .where(
            Project.id == project.id,
            Project.label_events - Project.label_events_at_trigger >= every,
        )
        .values(label_events_at_trigger=Project.label_events)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def counts(project: Project) -> dict[str, int]:
    """Item, labeled and disputed counts for the project page."""
    total, labeled, disputed = db.session.execute(
        select(
            func.count(Item.id),
            func.count(Item.label),
            func.count(Item.disputed_at),
        ).where(Item.project_id == project.id)
    ).one()
    return {"items": total, "labeled": labeled, "disputed": disputed}


def labeled_items(
    project: Project, chunk: int = 5000
) -> Iterator[tuple[int, str | None, dict, str]]:
    """Stream (id, external_id, data, label) of resolved items in id order, in chunks."""
    last = 0
    while True:
        rows = db.session.execute(
            select(Item.id, Item.external_id, Item.data, Item.label)
            .where(and_(Item.project_id == project.id, Item.label.is_not(None), Item.id > last))
            .order_by(Item.id)
            .limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
