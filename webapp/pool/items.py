"""Items in a project's pool: bulk import, lookup by external id, counts and labeled exports."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from itertools import islice

from sqlalchemy import and_, func, insert, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Item, Project, ProjectCounter, utcnow

IMPORT_BATCH = 1000


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


def counts(project: Project) -> dict[str, int]:
    """Item, labeled and disputed counts for the project page (a few counter rows, no scan)."""
    return counts_by_project([project.id])[project.id]


def counts_by_project(project_ids: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
    """Counts of the given projects (every project when None), in one grouped query."""
    query = select(
        ProjectCounter.project_id,
        func.sum(ProjectCounter.items),
        func.sum(ProjectCounter.labeled),
        func.sum(ProjectCounter.disputed),
    ).group_by(ProjectCounter.project_id)
    wanted = None if project_ids is None else list(project_ids)
    if wanted is not None:
        query = query.where(ProjectCounter.project_id.in_(wanted))
    found = {
        pid: {"items": int(total), "labeled": int(labeled), "disputed": int(disputed)}
        for pid, total, labeled, disputed in db.session.execute(query)
    }
    empty = {"items": 0, "labeled": 0, "disputed": 0}
    for pid in wanted or ():
        found.setdefault(pid, dict(empty))
    return found


def recount(project: Project) -> dict[str, int]:
    """Count the project's items by scanning them: what the counter rows must always equal."""
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
