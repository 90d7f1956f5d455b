"""Expert labels: one annotation at a time, bulk labels for imports, the retrain trigger claim.

Label counts live in `ProjectCounter` rows that triggers on `item` keep (migration 0003): a
label's transaction writes the item and its annotation and never locks the project row. The
automatic retrain is claimed just after that commit, from the committed sum: the last of any
concurrent labels sees every one of them, so no crossing of N is missed, and the claim's
conditional UPDATE of `label_events_at_trigger` lets exactly one of them fire it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, insert, select, update

from ..extensions import db
from ..models import Annotation, Item, ModelVersion, Project, ProjectCounter, RetrainRun, utcnow
from ..transaction import unit_of_work
from ..validation import validate_label
from . import rounds
from .items import _batches


@unit_of_work
def annotate(project: Project, item: Item, annotator: str, label: str) -> Annotation:
    """Record an expert's answer, settle the item's round (`rounds.settle`: its label now, or
    a wait for more experts or a reviewer), and trigger a retrain every N label changes.

    Raises ValidationError for an unknown label; the caller checks leases and access. A unit
    of work of its own (see `webapp.transaction`): the label commits first, then the retrain
    is claimed from the committed counts and queued in a second, short transaction.
    """
    from ..training import trigger_retrain

    validate_label(project, label)
    reason = item.lease_reason if item.lease_owner == annotator else None
    answers = rounds.round_answers(item)
    annotation = next((a for a in answers if a.annotator == annotator), None)
    if annotation is None:
        annotation = Annotation(
            project_id=project.id,
            item_id=item.id,
            annotator=annotator,
            label=label,
            reason=reason,
            round=item.round,
        )
        db.session.add(annotation)
    elif annotation.label != label:
        # One answer per expert and round: answering again changes it in place.
        annotation.label, annotation.edited_at = label, utcnow()
    if annotation in answers:
        answers.remove(annotation)
    answers.append(annotation)  # the answer given last
    item.lease_owner = item.lease_until = item.lease_reason = None
    db.session.flush()
    rounds.settle(project, item, annotation, answers)
    db.session.commit()
    if _claim_retrain(project):
        trigger_retrain(project, trigger="auto")
        db.session.commit()
    return annotation


@unit_of_work
def label_unlabeled(
    project: Project, pairs: Iterable[tuple[int, str]], annotator: str, batch_size: int = 1000
) -> int:
    """Record labels in bulk for the items among (item id, label) that have none yet.

    For imports and seeds: an item an expert already labeled keeps its label. Each batch is
    one transaction of bulk writes (no per-item commit; a streaming writer, see
    `webapp.transaction`), and the automatic retrain is
    considered once at the end, so a 100k-label import queues one retrain, not 4,000.
    Returns how many items were labeled.
    """
    from ..training import trigger_retrain

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
        db.session.commit()
        done += len(todo)
    if done and _claim_retrain(project):
        trigger_retrain(project, trigger="auto")
        db.session.commit()
    return done


def _claim_retrain(project: Project) -> bool:
    """Claim an automatic retrain when N label changes have piled up since the last one.

    Runs after the label's commit and ends its own short transaction. The read sums the
    committed counter rows; the UPDATE only matches (and only then locks the project row)
    when a retrain is due, and of concurrent claimers of one crossing exactly one matches.
    """
    every = int(project.setting("retrain_every") or 0)
    if every <= 0:
        return False
    if not _has_model(project.id):
        # No model yet: the first comes a few labels in, as soon as two labels exist, so the
        # queue is steered by a model from the start instead of after `retrain_every` labels.
        if _label_kinds(project.id) < 2:
            db.session.commit()
            return False
        every = min(every, int(project.setting("first_retrain_at") or every))
    at_trigger, events = db.session.execute(
        select(
            Project.label_events_at_trigger,
            select(func.coalesce(func.sum(ProjectCounter.label_events), 0))
            .where(ProjectCounter.project_id == project.id)
            .scalar_subquery(),
        ).where(Project.id == project.id)
    ).one()
    claimed = False
    if events - at_trigger >= every:
        result = db.session.execute(
            update(Project)
            .where(
                Project.id == project.id,
                Project.label_events_at_trigger <= events - every,
            )
            .values(label_events_at_trigger=events)
            .execution_options(synchronize_session=False)
        )
        claimed = result.rowcount == 1
    db.session.commit()
    return claimed


def _has_model(project_id: int) -> bool:
    """Whether the project has any model version, or a retrain queued or running for one."""
    version = db.session.scalar(
        select(ModelVersion.id).where(ModelVersion.project_id == project_id).limit(1)
    )
    if version is not None:
        return True
    pending = db.session.scalar(
        select(RetrainRun.id)
        .where(RetrainRun.project_id == project_id, RetrainRun.status.in_(("queued", "running")))
        .limit(1)
    )
    return pending is not None


def _label_kinds(project_id: int) -> int:
    """How many distinct labels the project's items carry (stops counting at 2)."""
    return len(
        db.session.scalars(
            select(Item.label)
            .where(Item.project_id == project_id, Item.label.is_not(None))
            .distinct()
            .limit(2)
        ).all()
    )
