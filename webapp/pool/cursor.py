"""The skip cursor: the queue jumps over an expert's skipped prefix of the uncertain lane.

An expert who skipped the k best items would otherwise have the lane step over those k index
entries on every call. The cursor records the lane key (score, id) where the skipped prefix ends:
every unlabeled scored item ahead of it was skipped by the expert, or was leased to someone else
when the cursor moved past it (at most MAX_PASSED such items, kept in `passed` and offered first
once free). The uncertain lane then starts at the cursor.

An item can get ahead of the cursor without being skipped only by a write of its score. The
cursor is dropped, and walked again from the top, when:
  * the pool's score epoch changes: another champion, another rescore task, another strategy
    (and no cursor is used while a rescore is queued or running);
  * an item added after the cursor (id above `max_item_id`) is scored ahead of it;
  * it is older than TTL: any other score write (a prediction that re-scores an existing item
    with other data, say) reaches the expert within that time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Item, ModelVersion, Project, Skip, SkipCursor, Task
from ..training import current_scores

TTL = timedelta(minutes=2)
MAX_PASSED = 32
BATCH = 2000


@dataclass
class Cursor:
    """A valid cursor: the lane starts after (score, item_id); `passed` items come first."""

    score: float
    item_id: int
    passed: list[int]


def after(score: float, item_id: int):
    """Lane positions after (score, item_id) in ORDER BY score DESC, id; `score <=` is the
    range the index scan starts from."""
    return and_(Item.score <= score, or_(Item.score < score, Item.id > item_id))


def _ahead(score: float, item_id: int, of: tuple[float, int]) -> bool:
    return score > of[0] or (score == of[0] and item_id < of[1])


def epoch(project: Project) -> str | None:
    """The pool's score epoch, or None while a rescore is queued or running."""
    champion = db.session.scalar(
        select(ModelVersion.version).where(
            ModelVersion.project_id == project.id, ModelVersion.status == "champion"
        )
    )
    last, active = db.session.execute(
        select(
            func.max(Task.id),
            func.count(case((Task.status.in_(("queued", "running")), 1))),
        ).where(Task.project_id == project.id, Task.name == "rescore")
    ).one()
    if active:
        return None
    return f"{champion}:{last or 0}:{project.setting('query_strategy')}"


def current(project: Project, annotator: str, now: datetime) -> Cursor | None:
    """The expert's cursor, walked again when stale; None when the expert skipped nothing."""
    mark = epoch(project)
    if mark is None:
        return None
    row = db.session.get(SkipCursor, (project.id, annotator))
    if row is not None and _valid(row, mark, now):
        return Cursor(row.score, row.item_id, list(row.passed or []))
    has_skips = db.session.scalar(select(Skip.item_id).where(Skip.annotator == annotator).limit(1))
    if has_skips is None:
        return None
    return advance(project, annotator, now, mark, row=row, restart=True)


def _valid(row: SkipCursor, mark: str, now: datetime) -> bool:
    """Whether nothing can have been scored ahead of the cursor since it was walked."""
    if row.epoch != mark or row.checked_at < now - TTL:
        return False
    # A primary-key range only (other projects' items included): with the project in the WHERE
    # clause, SQLite walks a project index instead, every item of the project.
    added = db.session.execute(
        select(Item.id, Item.project_id, Item.score, Item.label)
        .where(Item.id > row.max_item_id)
        .order_by(Item.id)
        .limit(BATCH)
    ).all()
    if len(added) == BATCH:
        return False
    if any(
        project_id == row.project_id
        and label is None
        and score is not None
        and _ahead(score, item_id, (row.score, row.item_id))
        for item_id, project_id, score, label in added
    ):
        return False
    if added:
        # None of them is ahead: the next check starts after them.
        row.max_item_id = added[-1][0]
    return True


def advance(
    project: Project,
    annotator: str,
    now: datetime,
    mark: str | None = None,
    row: SkipCursor | None = None,
    restart: bool = False,
) -> Cursor | None:
    """Move the cursor past the skipped (and others' leased) items at its head, and store it.

    From the top of the lane when `restart`, else from where it is. Flushed, not committed.
    """
    mark = mark if mark is not None else epoch(project)
    if mark is None:
        return None
    row = row if row is not None else db.session.get(SkipCursor, (project.id, annotator))
    if not restart and (row is None or not _valid(row, mark, now)):
        return None
    key = None if restart or row is None else (row.score, row.item_id)
    passed = [] if restart or row is None else list(row.passed or [])
    max_id = db.session.scalar(select(func.max(Item.id))) or 0
    # A short first look: most experts' lanes have no skipped prefix at all.
    size, moving = 16, True
    while moving:
        # The uncertain lane's own rows: scores under the current key, excluded items left out.
        lane = select(Item.id, Item.score, Item.lease_owner, Item.lease_until).where(
            Item.project_id == project.id,
            Item.label.is_(None),
            Item.excluded_at.is_(None),
            *current_scores(project),
        )
        if key is not None:
            lane = lane.where(after(*key))
        batch = db.session.execute(lane.order_by(Item.score.desc(), Item.id).limit(size)).all()
        skipped = set(
            db.session.scalars(
                select(Skip.item_id).where(
                    Skip.annotator == annotator, Skip.item_id.in_([r[0] for r in batch])
                )
            )
        )
        moving, size = len(batch) == size, BATCH
        for item_id, score, owner, until in batch:
            if item_id in skipped:
                key = (score, item_id)
                continue
            leased = owner not in (None, annotator) and until is not None and until >= now
            if leased and len(passed) < MAX_PASSED:
                passed.append(item_id)
                key = (score, item_id)
                continue
            moving = False
            break
    if key is None:
        return None
    cursor = Cursor(key[0], key[1], passed)
    if row is None:
        fresh = SkipCursor(
            project_id=project.id,
            annotator=annotator,
            score=key[0],
            item_id=key[1],
            passed=passed,
            max_item_id=max_id,
            epoch=mark,
            checked_at=now,
        )
        try:
            with db.session.begin_nested():
                db.session.add(fresh)
        except IntegrityError:
            # The same expert's other request stored one first; this call still uses its own.
            pass
        return cursor
    row.score, row.item_id, row.passed = key[0], key[1], passed
    row.max_item_id, row.epoch = max_id, mark
    if restart:
        # The TTL counts from the last walk from the top, not from the last skip.
        row.checked_at = now
    db.session.flush()
    return cursor


def free_passed(cursor: Cursor, annotator: str, now: datetime) -> list[int]:
    """The cursor's passed items that are free and still to label, best first.

    Read by primary key and ordered here: an ORDER BY score in SQL would have either planner
    walk the score index of the whole pool for these few rows.
    """
    if not cursor.passed:
        return []
    rows = db.session.execute(
        select(Item.id, Item.score, Item.lease_owner, Item.lease_until).where(
            Item.id.in_(cursor.passed), Item.label.is_(None), Item.score.is_not(None)
        )
    ).all()
    skipped = set(
        db.session.scalars(
            select(Skip.item_id).where(Skip.annotator == annotator, Skip.item_id.in_(cursor.passed))
        )
    )
    free = [
        (score, item_id)
        for item_id, score, owner, until in rows
        if item_id not in skipped and (until is None or until < now or owner == annotator)
    ]
    return [item_id for _score, item_id in sorted(free, key=lambda r: (-r[0], r[1]))]
