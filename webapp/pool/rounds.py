"""Several experts per item: an item's answers come in rounds, and a round resolves its label.

A round is the set of answers given since the item entered the pool or was last disputed
(`Item.round`, `Annotation.round`). It needs `annotations_per_item` answers from distinct
experts, or `second_opinion` when it was served as disputed or as an audit (the items that
settle disputes and evaluate models) while several experts label the project (two among its
latest answers: one expert alone would wait for ever). Until it has them the item waits in
the queue's second-opinion lane (`Item.pending_since`) for experts who have not answered it,
while the answers so far already stand as its label: a single expert never waits.

With enough answers the project's rule (`resolution`: `latest`, `majority`, `review`,
`dawid_skene`; `labeling.agreement`) resolves the round: a label, recorded as a `Resolution`
with the answers it read, or a disagreement sent to a reviewer (`Item.review_since`).
`dawid_skene` resolves each round by majority at once, and the retrain re-resolves every
overlapping item with Dawid-Skene over the whole project (`resolve_dawid_skene`).

A single-answer round (the default for items from the uncertain lane) needs no record beyond
the answer itself. Services flush; the caller commits (`webapp.transaction`).
"""

from __future__ import annotations

from sqlalchemy import func, select

from labeling import agreement

from ..enums import QueueReason, ReviewReason
from ..extensions import db
from ..models import Annotation, Item, Project, Resolution, utcnow

SECOND_OPINION_LANES = (QueueReason.DISPUTED, QueueReason.AUDIT)


def round_answers(item: Item, round_no: int | None = None) -> list[Annotation]:
    """The answers of the item's current round (or `round_no`) in the order they were last
    given (an answer changed in place counts from its change); one per expert."""
    current = item.round if round_no is None else round_no
    return list(
        db.session.scalars(
            select(Annotation)
            .where(Annotation.item_id == item.id, Annotation.round == current)
            .order_by(func.coalesce(Annotation.edited_at, Annotation.created_at), Annotation.id)
        )
    )


def answer_of(item: Item, annotator: str) -> Annotation | None:
    """The expert's answer in the item's current round, if any."""
    return db.session.scalar(
        select(Annotation).where(
            Annotation.item_id == item.id,
            Annotation.round == item.round,
            Annotation.annotator == annotator,
        )
    )


def needed(project: Project, lane: str | None) -> int:
    """Answers a round served through `lane` needs."""
    if lane in SECOND_OPINION_LANES:
        return max(int(project.setting("second_opinion")), 1)
    return max(int(project.setting("annotations_per_item")), 1)


#: "Several experts label here": two experts answered from the queue among the project's
#: latest answers (imports and bulk labels, which carry no lane, are not experts answering).
RECENT_ANSWERS = 500


def several_experts(project: Project) -> bool:
    """Whether at least two experts answered from the queue among the project's
    `RECENT_ANSWERS` latest answers."""
    recent = (
        select(Annotation.annotator)
        .where(Annotation.project_id == project.id, Annotation.reason.is_not(None))
        .order_by(Annotation.id.desc())
        .limit(RECENT_ANSWERS)
        .subquery()
    )
    return (db.session.scalar(select(func.count(func.distinct(recent.c.annotator)))) or 0) >= 2


def _rule(project: Project) -> str:
    """The per-round rule: Dawid-Skene needs the whole project, so a round reads majority."""
    rule = project.setting("resolution")
    return agreement.MAJORITY if rule == agreement.DAWID_SKENE else rule


def settle(
    project: Project,
    item: Item,
    completing: Annotation | None = None,
    answers: list[Annotation] | None = None,
) -> str:
    """Bring the item's state in line with its current round's answers; return the round's
    status (`empty`, `pending`, `review` or `resolved`). `completing` is the answer just given
    (a resolution it completes is undone with it); `answers`, the round's answers when the
    caller has them already (`round_answers`' order)."""
    if answers is None:
        answers = round_answers(item)
    if not answers:
        item.pending_since = None
        return "empty"
    now = utcnow()
    lane = min(answers, key=lambda a: a.id).reason  # the round's first answer's lane
    labels = [a.label for a in answers]
    rule = _rule(project)
    need = needed(project, lane)
    if len(answers) < need and lane in SECOND_OPINION_LANES and not several_experts(project):
        # Nobody else labels here: a second opinion would never come.
        need = max(len(answers), int(project.setting("annotations_per_item")))
    outcome = agreement.resolve(labels, rule, need)
    # The dispute is answered either way; a second opinion waits in its own lane.
    item.disputed_at = None
    if outcome.status == "pending":
        so_far = agreement.resolve(labels, rule, 1)
        label = so_far.label if so_far.status == "resolved" else (item.label or labels[0])
        _set_label(item, label, now)
        item.pending_since = item.pending_since or now
        return "pending"
    item.pending_since = None
    if outcome.status == "review":
        if item.label is None:
            _set_label(item, labels[0], now)
        item.review_since = item.review_since or now
        item.review_reason = ReviewReason.REVIEW
        return "review"
    if item.review_reason == ReviewReason.REVIEW:
        item.review_since = item.review_reason = None
    before = _label_before_round(item)
    _set_label(item, outcome.label, now)
    if len(answers) > 1:
        db.session.add(
            Resolution(
                project_id=project.id,
                item_id=item.id,
                annotation_id=completing.id if completing is not None else None,
                round=item.round,
                label=outcome.label,
                previous=before,
                rule=rule,  # the rule this round applied (majority for dawid_skene)
                decided_by="rule",
                answers={a.annotator: a.label for a in answers},
            )
        )
    return "resolved"


def _set_label(item: Item, label: str, now) -> None:
    """Set the item's label, stamping when it changed (a change is a label event)."""
    if item.label != label:
        item.label = label
        item.labeled_at = now


def _label_before_round(item: Item) -> str | None:
    """The label the item had when its current round opened (a disputed item's), if any."""
    if item.round == 0:
        return None
    return db.session.scalar(
        select(Resolution.label)
        .where(Resolution.item_id == item.id, Resolution.round < item.round)
        .order_by(Resolution.id.desc())
        .limit(1)
    ) or db.session.scalar(
        select(Annotation.label)
        .where(Annotation.item_id == item.id, Annotation.round < item.round)
        .order_by(Annotation.id.desc())
        .limit(1)
    )


def first_lane(item: Item) -> str | None:
    """The lane the item's current round was served through (its first answer's)."""
    return db.session.scalar(
        select(Annotation.reason)
        .where(Annotation.item_id == item.id, Annotation.round == item.round)
        .order_by(Annotation.id)
        .limit(1)
    )


def others_answers(item_ids: list[int], annotator: str) -> dict[int, list[tuple[str, str]]]:
    """For items the expert answered: the other experts' answers in the same rounds, shown
    once the expert has answered (blind labeling hides them before)."""
    if not item_ids:
        return {}
    mine = (
        select(Annotation.item_id, Annotation.round)
        .where(Annotation.item_id.in_(item_ids), Annotation.annotator == annotator)
        .subquery()
    )
    rows = db.session.execute(
        select(Annotation.item_id, Annotation.annotator, Annotation.label)
        .join(
            mine,
            (mine.c.item_id == Annotation.item_id) & (mine.c.round == Annotation.round),
        )
        .where(Annotation.annotator != annotator)
        .order_by(Annotation.id)
    ).all()
    out: dict[int, list[tuple[str, str]]] = {}
    for item_id, who, label in rows:
        out.setdefault(item_id, []).append((who, label))
    return out


def resolve_dawid_skene(project: Project) -> int:
    """Re-resolve every item whose current round has answers from two experts or more with
    Dawid-Skene over all of them (projects with `resolution: dawid_skene`; the retrain calls
    this before it reads its snapshot). Returns how many labels changed."""
    rows = db.session.execute(
        select(Annotation.item_id, Annotation.annotator, Annotation.label)
        .join(Item, (Item.id == Annotation.item_id) & (Item.round == Annotation.round))
        .where(
            Annotation.project_id == project.id,
            Item.excluded_at.is_(None),
            Item.review_since.is_(None),
        )
        .order_by(Annotation.id)
    ).all()
    per_item: dict[int, dict[str, str]] = {}
    for item_id, who, label in rows:
        per_item.setdefault(item_id, {})[who] = label
    answers = [
        (item_id, who, label)
        for item_id, by in per_item.items()
        if len(by) >= 2
        for who, label in by.items()
    ]
    if len({who for _, who, _ in answers}) < 2:
        return 0
    labels = agreement.DawidSkene().fit_predict(answers)
    changed = 0
    now = utcnow()
    for item_id, label in labels.items():
        item = db.session.get(Item, item_id)
        if item.label == label:
            continue
        db.session.add(
            Resolution(
                project_id=project.id,
                item_id=item_id,
                round=item.round,
                label=label,
                previous=item.label,
                rule=agreement.DAWID_SKENE,
                decided_by="rule",
                answers=per_item[item_id],
            )
        )
        _set_label(item, label, now)
        changed += 1
    db.session.flush()
    return changed
