"""The labeling queue: lanes in priority order, leases, and skips.

Every statement `next_item` runs is built by a function here (`held_lease_query`, `lanes`,
`claim_statement`), so tests and benches explain exactly what the queue sends. Each has an index
that serves it whatever the planner's statistics say: `ix_item_lease_held` (leased rows only)
for the held lease, `ix_item_disputed`, `ix_item_pool_score` (the uncertain lane, and the cold
start's diverse picks under their own key) and `ix_item_pool_rand` for the lanes, the primary
key of `skip` (annotator first) for the probe that hides skipped items.
An expert who skipped the head of the uncertain lane starts after it (`cursor.py`), so skips
are not stepped over one by one.

A claim is one UPDATE of the lane's head, chosen by a subquery. On PostgreSQL the subquery
locks its row with FOR UPDATE SKIP LOCKED, so experts racing for the head of a lane each get the
next-best item of that lane. SQLite takes its write lock when the UPDATE starts, so the
subquery reads the head nobody else can be claiming; the lease condition in the UPDATE keeps
the claim conditional either way.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, Update, exists, func, literal_column, or_, select, update

from ..enums import (
    Arm,
    ExperimentMode,
    ExperimentStatus,
    ModelStatus,
    QueueReason,
    values,
)
from ..extensions import db
from ..models import (
    Annotation,
    Experiment,
    Item,
    ModelVersion,
    Prediction,
    Project,
    Skip,
    utcnow,
)
from ..scoring import cold_start_key
from ..training import current_scores
from ..transaction import unit_of_work
from . import cursor as skip_cursor
from .cursor import Cursor, after

REASONS = values(QueueReason)
#: The lane of items waiting for another expert's answer (leased under their round's lane).
SECOND_OPINION = "second-opinion"


def _free(now: datetime):
    """Items nobody else holds a live lease on."""
    return or_(Item.lease_until.is_(None), Item.lease_until < now)


def _not_skipped_by(annotator: str):
    """Not skipped by `annotator`: one probe of skip's primary key (annotator, item_id) per
    candidate the lane looks at (few: the skip cursor jumps over a skipped head).

    The OFFSET 0 keeps PostgreSQL from turning the NOT EXISTS into a join whose method it picks
    from statistics: without any, it planned a rescan of all the annotator's skips for every
    candidate. As a subplan it is always the one index probe. (Reading the annotator's skips
    into a set instead costs a read of all of them, 20k or more, on every claim.)
    """
    probe = select(Skip.item_id).where(Skip.annotator == annotator, Skip.item_id == Item.id)
    return ~exists(probe.offset(literal_column("0")))


def _not_answered_by(annotator: str):
    """Not answered by `annotator` in the item's current round: one probe of the annotation
    index per candidate (few: only disputed and second-opinion items are asked). OFFSET 0
    keeps it a subplan on PostgreSQL, as for skips."""
    probe = select(Annotation.id).where(
        Annotation.item_id == Item.id,
        Annotation.round == Item.round,
        Annotation.annotator == annotator,
    )
    return ~exists(probe.offset(literal_column("0")))


def _round_lane():
    """Per item (correlated): the lane its current round's first answer came through."""
    return (
        select(Annotation.reason)
        .where(Annotation.item_id == Item.id, Annotation.round == Item.round)
        .order_by(Annotation.id)
        .limit(1)
        .scalar_subquery()
    )


def has_champion(project: Project) -> bool:
    """Whether the project has a promoted model."""
    return (
        db.session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.CHAMPION
            )
        )
        is not None
    )


def has_learner(project: Project) -> bool:
    """Whether any model version exists: then the queue is steered by the learner's scores
    and random picks are audits (the held-out set); before, they are the cold start."""
    return (
        db.session.scalar(
            select(ModelVersion.id).where(ModelVersion.project_id == project.id).limit(1)
        )
        is not None
    )


def held_lease_query(project_id: int, annotator: str, now: datetime) -> Select:
    """The item `annotator` holds a live lease on in the project, if any (ix_item_lease_held)."""
    return (
        select(Item)
        .where(
            Item.project_id == project_id,
            Item.lease_owner == annotator,
            Item.lease_until >= now,
            or_(
                Item.label.is_(None),
                Item.disputed_at.is_not(None),
                Item.pending_since.is_not(None),
            ),
        )
        .limit(1)
    )


def lanes(
    project_id: int,
    annotator: str,
    now: datetime,
    rng: random.Random,
    champion: bool,
    uncertain: bool,
    cursor: Cursor | None = None,
    passed: list[int] = (),
    current: list | None = None,
    exposure: tuple[int, str] | None = None,
) -> Iterator[tuple[Select, str]]:
    """Yield (query for the head's id, reason) per lane in priority order; each one index scan.

    Before any model (`champion` false) the cold start serves its diverse picks
    (`scoring.cold_start`) first, then uniform random items. After, `uncertain` says whether
    this call serves the uncertain lane (or the random audit);
    `cursor`, the expert's skip cursor, lets that lane start after the skipped prefix, and
    `passed` are the cursor's passed items that are free now, best first. `current` holds the
    clauses that keep the uncertain lane to scores under the current (champion, strategy) key
    (`training.current_scores`): a score of another key is on another scale. `exposure`, an
    (experiment id, arm) pair, sends an audit to that arm's predictions first.
    """
    base = [Item.project_id == project_id, _free(now), _not_skipped_by(annotator)]
    base.append(Item.excluded_at.is_(None))  # an engineer took it out (pool/exclusion.py)
    yield (
        select(Item.id)
        .where(Item.disputed_at.is_not(None), *base, _not_answered_by(annotator))
        .order_by(Item.disputed_at)
        .limit(1),
        "disputed",
    )
    # Second opinions: items whose round waits for more experts' answers, oldest first, to
    # experts who have not answered them (pool/rounds.py).
    yield (
        select(Item.id)
        .where(Item.pending_since.is_not(None), *base, _not_answered_by(annotator))
        .order_by(Item.pending_since)
        .limit(1),
        SECOND_OPINION,
    )
    pool = [*base, Item.label.is_(None)]
    if uncertain:
        scored = [*pool, *(current if current is not None else [Item.score.is_not(None)])]
        order = (Item.score.desc(), Item.id)
        # Items others held when the cursor moved past them, free now: ahead of all the rest.
        for item_id in passed:
            yield select(Item.id).where(*scored, Item.id == item_id), "uncertain"
        if cursor is not None:
            scored.append(after(cursor.score, cursor.item_id))
        yield select(Item.id).where(*scored).order_by(*order).limit(1), "uncertain"
    if not champion:
        # The cold start's picks, one per cluster of the pool, the largest cluster's first.
        yield (
            select(Item.id)
            .where(*pool, *cold_start_key())
            .order_by(Item.score.desc(), Item.id)
            .limit(1),
            QueueReason.COLD_START,
        )
    # Uniform random: start at a random point of the `rand` index and wrap around. After the
    # first model these are the audits, the held-out set: never steered by any score.
    reason = QueueReason.AUDIT if champion else QueueReason.COLD_START
    start = rng.random()
    if exposure is not None:
        # A running experiment: the audit is a uniform random pick among one arm's unlabeled
        # predictions (the arm drawn per call), so each arm gets unbiased labels however small
        # its share. The walk along `rand` probes each candidate's predictions by item id.
        experiment_id, arm = exposure
        served = exists(
            select(Prediction.id).where(
                Prediction.item_id == Item.id,
                Prediction.experiment_id == experiment_id,
                Prediction.arm == arm,
            )
        )
        for side in (Item.rand >= start, Item.rand < start):
            yield select(Item.id).where(*pool, side, served).order_by(Item.rand).limit(1), reason
    yield select(Item.id).where(*pool, Item.rand >= start).order_by(Item.rand).limit(1), reason
    yield select(Item.id).where(*pool, Item.rand < start).order_by(Item.rand).limit(1), reason


def claim_statement(
    lane: Select, annotator: str, reason: str, now: datetime, until: datetime
) -> Update:
    """One UPDATE that leases the lane's head to `annotator` and returns its id (or nothing).
    A second opinion is leased under the lane its round's first answer came through."""
    head = lane.with_for_update(skip_locked=True).correlate(None).scalar_subquery()
    lease_reason = _round_lane() if reason == SECOND_OPINION else reason
    return (
        update(Item)
        .where(Item.id == head, _free(now))
        .values(lease_owner=annotator, lease_until=until, lease_reason=lease_reason)
        .returning(Item.id)
        .execution_options(synchronize_session=False)
    )


# (database, project id) of projects whose held-out set has reached `audit_early_until`: audits
# only grow, so once reached the count need not be taken again in this process.
_audits_reached: set[tuple[str, int]] = set()


def audit_share_now(project: Project) -> float:
    """The share of calls that serve a uniform random audit: `audit_share_early` while fewer
    than `audit_early_until` items were labeled through audits (the held-out set is small and
    every decision is noisy), `audit_share` after that; and at least the share an alert's
    action raised it to, until that raise ends (`Project.audit_boost_until`)."""
    share = _planned_audit_share(project)
    boost, boost_until = project.audit_boost_share, project.audit_boost_until
    if boost is not None and boost_until is not None and boost_until > utcnow():
        return max(share, boost)
    return share


def _planned_audit_share(project: Project) -> float:
    """The audit share the project's settings give, before any alert's raise."""
    share, until = project.setting("audit_share"), int(project.setting("audit_early_until") or 0)
    key = (db.engine.url.render_as_string(hide_password=True), project.id)
    if share <= 0 or until <= 0 or key in _audits_reached:
        return share  # a project that turned audits off gets none, early or not
    audits = db.session.scalar(
        select(func.count()).select_from(
            select(Annotation.id)
            .where(Annotation.project_id == project.id, Annotation.reason == QueueReason.AUDIT)
            .limit(until)
            .subquery()
        )
    )
    if audits >= until:
        _audits_reached.add(key)
        return share
    return max(share, float(project.setting("audit_share_early")))


#: The lanes an expert may narrow the queue to ("all" is no filter).
LANE_FILTERS = ("all", QueueReason.DISPUTED, QueueReason.UNCERTAIN, QueueReason.AUDIT)
#: How far down a lane the queue looks for an item the model suggests a wanted label for.
SUGGESTED_SCAN = 200


@unit_of_work
def next_item(
    project: Project,
    annotator: str,
    rng: random.Random | None = None,
    lane: str | None = None,
    suggested: str | None = None,
    predict: Callable[[list[dict]], list[str | None] | None] | None = None,
) -> tuple[Item, str] | None:
    """Lease the next item to `annotator` and return it with the reason, or None when done.

    An annotator who already holds a live lease gets that item again, so a reload loses nothing.
    A unit of work of its own (see `webapp.transaction`): each claim commits at once, so an
    expert racing for the same head sees the lease and takes the next item.

    An expert may narrow the queue to one `lane` (`LANE_FILTERS`) and to items the champion
    suggests the label `suggested` for (`predict` gives the champion's label for a batch of
    items' data, or None before any champion: `serving.suggested_labels`). Audits are the
    unbiased evaluation set, so neither filter touches them: a call that draws an audit (at
    the project's audit share) serves one whatever the filter, and audits are never picked by
    their suggested label.
    """
    rng = rng or random.Random()
    lane = None if lane in (None, "", "all") else lane
    now = utcnow()
    until = now + timedelta(seconds=current_app.config["LEASE_SECONDS"])
    held = db.session.scalar(held_lease_query(project.id, annotator, now))
    if held is not None:
        held.lease_until = until
        db.session.commit()
        return held, held.lease_reason or "audit"
    project_id, audit_share = project.id, audit_share_now(project)
    learner = has_learner(project)
    uncertain = learner and rng.random() >= audit_share and lane != QueueReason.AUDIT
    cursor = skip_cursor.current(project, annotator, now) if uncertain else None
    passed = skip_cursor.free_passed(cursor, annotator, now) if cursor else []
    current = current_scores(project)
    exposure = _audited_arm(project_id, rng) if learner and not uncertain else None
    # End the read transaction first: a SQLite connection that holds a read lock while asking
    # for the write lock gets "database is locked" at once instead of waiting its turn.
    db.session.commit()
    chosen = lanes(
        project_id, annotator, now, rng, learner, uncertain, cursor, passed, current, exposure
    )
    audit_draw = learner and not uncertain
    for query, reason in chosen:
        if lane is not None and not _passes(reason, lane, audit_draw):
            continue
        if reason == SECOND_OPINION and db.session.scalar(query) is None:
            # Usually none wait: one indexed read instead of a claim and its commit.
            continue
        if suggested is not None and predict is not None and reason != QueueReason.AUDIT:
            query = _suggested_head(query, suggested, predict)
            if query is None:
                continue
        item_id = db.session.scalar(claim_statement(query, annotator, reason, now, until))
        db.session.commit()
        if item_id is not None:
            item = db.session.get(Item, item_id)
            return item, item.lease_reason or reason
    return None


def _passes(reason: str, lane: str, audit_draw: bool) -> bool:
    """Whether a lane's item may be served under the expert's lane filter: its own lane, and
    audits when this call drew one (they keep their share whatever the filter). Second
    opinions come without a filter only."""
    if reason == QueueReason.AUDIT:
        return audit_draw or lane == QueueReason.AUDIT
    return reason == lane


def _suggested_head(query: Select, label: str, predict: Callable) -> Select | None:
    """The lane narrowed to its first item (of `SUGGESTED_SCAN`) that the champion suggests
    `label` for, or None. The candidates are predicted in one batch."""
    ids = db.session.scalars(query.limit(SUGGESTED_SCAN)).all()
    if not ids:
        return None
    rows = db.session.execute(select(Item.id, Item.data).where(Item.id.in_(ids))).all()
    data = {row.id: row.data for row in rows}
    ordered = [i for i in ids if i in data]
    predicted = predict([data[i] for i in ordered])
    if predicted is None:
        return None  # no champion: nothing is suggested yet
    for item_id, guess in zip(ordered, predicted, strict=True):
        if guess == label:
            return query.where(Item.id == item_id).limit(1)
    return None


def _audited_arm(project_id: int, rng: random.Random) -> tuple[int, str] | None:
    """During a running A/B experiment, the (experiment id, arm) an audit samples: either arm
    with even odds, whatever the traffic split."""
    experiment_id = db.session.scalar(
        select(Experiment.id).where(
            Experiment.project_id == project_id,
            Experiment.status == ExperimentStatus.RUNNING,
            Experiment.mode == ExperimentMode.AB,
        )
    )
    if experiment_id is None:
        return None
    return experiment_id, (Arm.CHAMPION if rng.random() < 0.5 else Arm.CHALLENGER)


def release_held(project: Project, annotator: str) -> None:
    """Give back every lease the annotator holds in the project (flushed only)."""
    db.session.execute(
        update(Item)
        .where(Item.project_id == project.id, Item.lease_owner == annotator)
        .values(lease_owner=None, lease_until=None, lease_reason=None)
        .execution_options(synchronize_session=False)
    )


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
    """Hide the item from this annotator and release their lease on it (flushed only)."""
    if db.session.get(Skip, (annotator, item.id)) is None:
        reason = item.lease_reason if item.lease_owner == annotator else None
        db.session.add(Skip(item_id=item.id, annotator=annotator, reason=reason))
    release(item, annotator)
    db.session.flush()
    # Skipping the head of the uncertain lane moves the expert's skip cursor past it.
    skip_cursor.advance(project, annotator, utcnow())
