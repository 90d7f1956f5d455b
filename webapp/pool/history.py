"""An expert's own history in a project: recent answers and skips, undo, edits, progress.

One answer is one `Annotation` row: an edit from the history changes that row in place
(`edited_at`), and an undo deletes it and gives the item back to the expert under the lease it
was answered under, so an answer given, undone and given again is stored exactly once, and
the lane it was served through (which decides the held-out split) is kept. A skip is undone
the same way: the `Skip` row goes, and the item comes back leased to the expert with the lane
it was skipped from.

Services flush and leave the commit to the view (`webapp.transaction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from ..enums import QueueReason
from ..errors import ValidationError
from ..extensions import db
from ..models import Annotation, Item, Project, Skip, SkipCursor, utcnow
from ..validation import validate_label
from . import rounds
from .queue import leased_to_other

#: How many answers and skips the side list shows.
RECENT = 20


class Refused(Exception):
    """The action cannot be carried out; the message says why in the expert's words."""


@dataclass(frozen=True)
class Undone:
    """What an undo did: the item, the lane it is leased back under, what was undone in words,
    and whether the expert answers it again (False: it simply has its earlier label back)."""

    item: Item
    lane: str
    what: str
    again: bool = True
    kind: str = "answer"  # or "skip"


@dataclass(frozen=True)
class Answer:
    """One of the expert's answers as the side list shows it."""

    item_id: int
    label: str
    current: str | None  # the item's label now (another expert may have changed it)
    reason: str | None
    at: datetime
    edited: bool
    excerpt: str
    others: tuple = ()  # (annotator, label) of other experts in the same round


@dataclass(frozen=True)
class Skipped:
    """One of the expert's skips."""

    item_id: int
    reason: str | None
    at: datetime
    excerpt: str


def _excerpt(item_data: dict, width: int = 80) -> str:
    """A line of the item to recognise it by: the text's start, or the first features."""
    text = item_data.get("text")
    if text is None:
        features = item_data.get("features") or {}
        text = ", ".join(f"{k}={v}" for k, v in list(features.items())[:4])
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def recent_answers(project: Project, annotator: str, limit: int = RECENT) -> list[Answer]:
    """The expert's latest answers in the project, newest first (ix_annotation_annotator)."""
    rows = db.session.execute(
        select(Annotation, Item.label, Item.data)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.annotator == annotator)
        .order_by(Annotation.created_at.desc(), Annotation.id.desc())
        .limit(limit)
    ).all()
    others = rounds.others_answers([a.item_id for a, _, _ in rows], annotator)
    return [
        Answer(
            item_id=a.item_id,
            label=a.label,
            current=current,
            reason=a.reason,
            at=a.created_at,
            edited=a.edited_at is not None,
            excerpt=_excerpt(data),
            others=tuple(others.get(a.item_id, ())),
        )
        for a, current, data in rows
    ]


def skipped(project: Project, annotator: str, limit: int = RECENT) -> list[Skipped]:
    """The expert's skips of items still to label in the project, newest first."""
    rows = db.session.execute(
        select(Skip, Item.data)
        .join(Item, Item.id == Skip.item_id)
        .where(Skip.annotator == annotator, Item.project_id == project.id, Item.label.is_(None))
        .order_by(Skip.created_at.desc())
        .limit(limit)
    ).all()
    return [Skipped(s.item_id, s.reason, s.created_at, _excerpt(data)) for s, data in rows]


def progress(project: Project, annotator: str) -> dict:
    """What the progress line shows: answers today (UTC), and how many of the expert's answers
    the items' labels still agree with."""
    midnight = datetime.combine(utcnow().date(), time())
    today = db.session.scalar(
        select(func.count(Annotation.id)).where(
            Annotation.project_id == project.id,
            Annotation.annotator == annotator,
            Annotation.created_at >= midnight,
        )
    )
    answered, agreed = db.session.execute(
        select(
            func.count(Annotation.id),
            func.count(Annotation.id).filter(Item.label == Annotation.label),
        )
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.annotator == annotator)
    ).one()
    return {"today": int(today or 0), "answered": int(answered), "agreed": int(agreed)}


def waiting_for_second_opinion(project: Project) -> int:
    """Items whose round waits for another expert's answer (ix_item_pending)."""
    return db.session.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project.id, Item.pending_since.is_not(None)
        )
    )


def _latest_answer(item_id: int) -> Annotation | None:
    """The item's newest answer by anyone."""
    return db.session.scalar(
        select(Annotation).where(Annotation.item_id == item_id).order_by(Annotation.id.desc())
    )


def _give_back(project: Project, item: Item, annotator: str, reason: str | None) -> None:
    """Lease the item to the expert again (their current item goes back to the queue)."""
    for held in db.session.scalars(
        select(Item).where(
            Item.project_id == project.id, Item.lease_owner == annotator, Item.id != item.id
        )
    ):
        held.lease_owner = held.lease_until = held.lease_reason = None
    item.lease_owner = annotator
    item.lease_until = utcnow() + timedelta(seconds=current_app.config["LEASE_SECONDS"])
    item.lease_reason = reason


def undo(project: Project, annotator: str) -> Undone:
    """Take back the expert's last answer or skip in the project, whichever came last.

    The item is leased to the expert again to answer anew, unless the undone answer was a
    correction made outside the queue (then the earlier label simply stands again). Raises
    Refused when there is nothing to undo or the item has moved on since.
    """
    answer = db.session.scalar(
        select(Annotation)
        .where(Annotation.project_id == project.id, Annotation.annotator == annotator)
        .order_by(Annotation.created_at.desc(), Annotation.id.desc())
        .limit(1)
    )
    skip = db.session.scalar(
        select(Skip)
        .join(Item, Item.id == Skip.item_id)
        .where(Skip.annotator == annotator, Item.project_id == project.id, Item.label.is_(None))
        .order_by(Skip.created_at.desc())
        .limit(1)
    )
    if answer is None and skip is None:
        raise Refused("Nothing to undo: you have not answered or skipped anything here yet.")
    if skip is not None and (answer is None or skip.created_at > answer.created_at):
        item = db.session.get(Item, skip.item_id)
        return Undone(item, *_bring_back(project, item, annotator, skip), kind="skip")
    item = db.session.get(Item, answer.item_id)
    if leased_to_other(item, annotator):
        raise Refused(f"Item #{item.id} is being labeled by someone else now; not undone.")
    latest = _latest_answer(item.id)
    if latest.id != answer.id and (item.pending_since is None or answer.round != item.round):
        raise Refused(
            f"Item #{item.id} was answered again by {latest.annotator} after you; change "
            "your answer from your history instead."
        )
    label, reason, round_no = answer.label, answer.reason, answer.round
    db.session.delete(answer)
    db.session.flush()
    if round_no == item.round and rounds.round_answers(item):
        # Other experts' answers in the round stand; the round waits for this expert again.
        rounds.settle(project, item)
        _give_back(project, item, annotator, reason)
        db.session.flush()
        return Undone(item, reason or "", f"your answer {label} on #{item.id}")
    previous = db.session.scalar(
        select(Annotation)
        .where(Annotation.item_id == item.id, Annotation.round < item.round)
        .order_by(Annotation.id.desc())
        .limit(1)
    )
    item.pending_since = None
    if previous is None:
        item.label = item.labeled_at = None
    else:
        # A re-answer of a labeled item: the earlier label stands again. Served as disputed,
        # it is disputed again (the queue serves labeled items only then); answered outside
        # the queue (the API), it is simply back to its earlier label.
        item.label, item.labeled_at = previous.label, previous.created_at
        if reason != QueueReason.DISPUTED:
            db.session.flush()
            what = f"your answer {label} on #{item.id}; it is {item.label} again"
            return Undone(item, reason or "", what, again=False)
        item.disputed_at = answer.created_at
    _give_back(project, item, annotator, reason)
    db.session.flush()
    return Undone(item, reason or "", f"your answer {label} on #{item.id}")


def _bring_back(project: Project, item: Item, annotator: str, skip: Skip) -> tuple[str, str]:
    """Undo a skip: the item is leased to the expert again, as the lane it was skipped from."""
    if leased_to_other(item, annotator):
        raise Refused(f"Item #{item.id} is being labeled by someone else now.")
    reason = skip.reason
    db.session.delete(skip)
    # The skip cursor promised every item ahead of it was skipped: walk it again next time.
    db.session.execute(
        delete(SkipCursor).where(
            SkipCursor.project_id == project.id, SkipCursor.annotator == annotator
        )
    )
    _give_back(project, item, annotator, reason)
    db.session.flush()
    return reason or "", f"your skip of #{item.id}"


def bring_back(project: Project, annotator: str, item_id: int) -> tuple[Item, str]:
    """Bring one skipped item back to the expert; returns (item, lane). Raises Refused."""
    skip = db.session.get(Skip, (annotator, item_id))
    item = db.session.get(Item, item_id) if skip is not None else None
    if item is None or item.project_id != project.id:
        raise Refused(f"You have not skipped item #{item_id} here.")
    if item.label is not None:
        raise Refused(f"Item #{item_id} was labeled by someone else since you skipped it.")
    reason, _ = _bring_back(project, item, annotator, skip)
    return item, reason


def edit(project: Project, annotator: str, item_id: int, label: str) -> Answer:
    """Change the expert's answer on an item in place; the item's label follows when that
    answer is the item's latest. Raises ValidationError (unknown label) or Refused."""
    validate_label(project, label)
    answer = db.session.scalar(
        select(Annotation)
        .where(
            Annotation.project_id == project.id,
            Annotation.annotator == annotator,
            Annotation.item_id == item_id,
        )
        .order_by(Annotation.id.desc())
        .limit(1)
    )
    if answer is None:
        raise Refused(f"You have not answered item #{item_id} here.")
    item = db.session.get(Item, item_id)
    if leased_to_other(item, annotator):
        raise Refused(f"Item #{item_id} is being labeled by someone else now; not changed.")
    if answer.label != label:
        answer.label = label
        answer.edited_at = utcnow()
        db.session.flush()
        if answer.round == item.round:
            rounds.settle(project, item)  # the round decides the item's label again
            db.session.flush()
    return Answer(
        item_id=item.id,
        label=answer.label,
        current=item.label,
        reason=answer.reason,
        at=answer.created_at,
        edited=answer.edited_at is not None,
        excerpt=_excerpt(item.data),
    )


__all__ = [
    "RECENT",
    "Answer",
    "Refused",
    "Skipped",
    "Undone",
    "ValidationError",
    "bring_back",
    "edit",
    "progress",
    "recent_answers",
    "skipped",
    "undo",
    "waiting_for_second_opinion",
]
