"""The reviewers' queue: items whose experts disagree (`review`) or whose label confident
learning flagged (`suspect`), the answers side by side, and the reviewer's decision.

A decision is a `Resolution` (rule `reviewer`, who, why, the answers it saw) and the item's
new label: a change counts as a label event like any other, so the next retrain's snapshot
reads it. Services flush; the view commits (`webapp.transaction`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from ..enums import Resolver, ReviewReason
from ..errors import ValidationError
from ..extensions import db
from ..models import Annotation, Feedback, Item, Prediction, Project, Resolution, utcnow
from ..validation import validate_label

#: The longest reason a reviewer may give.
MAX_REASON = 500


class Gone(Exception):
    """The item no longer waits for a reviewer (someone decided it first); says who."""


@dataclass(frozen=True)
class Case:
    """One item as a reviewer sees it."""

    item: Item
    answers: list[tuple[str, str, object]]  # (annotator, label, when), oldest first
    feedback: list[tuple[str, bool | None, str | None, str | None]]  # predicted, correct, …
    waiting: int  # items waiting for a reviewer in the project, this one included


def waiting(project: Project) -> dict[str, int]:
    """Items waiting for a reviewer, by why (ix_item_review)."""
    rows = db.session.execute(
        select(Item.review_reason, func.count())
        .where(Item.project_id == project.id, Item.review_since.is_not(None))
        .group_by(Item.review_reason)
    ).all()
    counts = {reason: 0 for reason in ReviewReason}
    counts.update({reason: int(n) for reason, n in rows})
    return counts


def next_case(project: Project, after: int | None = None) -> Case | None:
    """The oldest item waiting for a reviewer (after item `after` in that order, to pass one)."""
    query = select(Item).where(
        Item.project_id == project.id,
        Item.review_since.is_not(None),
        Item.excluded_at.is_(None),
    )
    item = db.session.scalar(query.order_by(Item.review_since, Item.id).limit(1))
    if after is not None:
        ahead = db.session.scalars(query.order_by(Item.review_since, Item.id)).all()
        ids = [i.id for i in ahead]
        if after in ids and ids.index(after) + 1 < len(ids):
            item = ahead[ids.index(after) + 1]
    if item is None:
        return None
    return case_of(project, item)


def case_of(project: Project, item: Item) -> Case:
    """Everything a reviewer weighs for one item."""
    answers = db.session.execute(
        select(Annotation.annotator, Annotation.label, Annotation.created_at)
        .where(Annotation.item_id == item.id, Annotation.round == item.round)
        .order_by(Annotation.id)
    ).all()
    if not answers:  # a suspect label from an import or an earlier round: show its history
        answers = db.session.execute(
            select(Annotation.annotator, Annotation.label, Annotation.created_at)
            .where(Annotation.item_id == item.id)
            .order_by(Annotation.id)
        ).all()
    feedback = db.session.execute(
        select(Prediction.label, Feedback.correct, Feedback.label, Feedback.comment)
        .join(Prediction, Feedback.prediction_id == Prediction.id)
        .where(Prediction.item_id == item.id)
        .order_by(Feedback.id)
    ).all()
    total = sum(waiting(project).values())
    return Case(item, [tuple(a) for a in answers], [tuple(f) for f in feedback], total)


def decide(project: Project, item: Item, reviewer: str, label: str, reason: str) -> Resolution:
    """Record the reviewer's final label for a waiting item. Raises ValidationError (unknown
    label, no reason) or Gone (decided already)."""
    validate_label(project, label)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "say why, in a few words"})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": f"at most {MAX_REASON} characters"})
    if item.review_since is None:
        last = db.session.scalar(
            select(Resolution)
            .where(Resolution.item_id == item.id, Resolution.rule == Resolver.REVIEWER)
            .order_by(Resolution.id.desc())
            .limit(1)
        )
        who = f" by {last.decided_by} ({last.label})" if last is not None else ""
        raise Gone(f"Item #{item.id} was already decided{who}.")
    answers = db.session.execute(
        select(Annotation.annotator, Annotation.label)
        .where(Annotation.item_id == item.id, Annotation.round == item.round)
        .order_by(Annotation.id)
    ).all()
    resolution = Resolution(
        project_id=project.id,
        item_id=item.id,
        round=item.round,
        label=label,
        previous=item.label,
        rule=Resolver.REVIEWER,
        decided_by=reviewer,
        reason=reason,
        answers={who: given for who, given in answers},
        flagged=item.review_reason,
    )
    db.session.add(resolution)
    now = utcnow()
    if item.label != label:
        item.label, item.labeled_at = label, now
    item.review_since = item.review_reason = None
    item.pending_since = item.disputed_at = None
    db.session.flush()
    return resolution


def suspect_outcomes(project: Project) -> dict[str, int]:
    """What reviewers did with flagged labels: decided, and of those changed."""
    decided, changed = db.session.execute(
        select(
            func.count(Resolution.id),
            func.count(Resolution.id).filter(Resolution.label != Resolution.previous),
        ).where(
            Resolution.project_id == project.id,
            Resolution.rule == Resolver.REVIEWER,
            Resolution.flagged == ReviewReason.SUSPECT,
        )
    ).one()
    return {"decided": int(decided), "changed": int(changed)}
