"""Label-error hunting: confident learning over cross-validated probabilities on the training
split flags labels that are likely wrong, and sends them to reviewers as `suspect`.

`request` records a task (one queued per project) and enqueues `worker.jobs.find_suspects`
after the commit; `flag` is the job's work. Held-out audits are never flagged: they are the
unbiased evaluation set, and a reviewer's eye on only some of them would bias it.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, update

from labeling import agreement
from labeling import training as models

from ..enums import ReviewReason, TaskStatus
from ..extensions import db
from ..models import Item, Project, Task, utcnow
from ..training import queue_task, training_data
from ..transaction import unit_of_work

TASK = "suspects"  # Task.name; its job is TASK_JOBS[TASK], worker.jobs.find_suspects
#: At most this many labels are cross-validated (a seeded sample beyond), and flagged per run.
MAX_ROWS = 3000
MAX_FLAGGED = 50


def request(project: Project) -> Task:
    """Queue a hunt for likely label errors (a queued one absorbs the request). Flushed."""
    return queue_task(project, TASK)


def latest(project: Project) -> Task | None:
    """The project's latest hunt, whatever its state."""
    return db.session.scalar(
        select(Task)
        .where(Task.project_id == project.id, Task.name == TASK)
        .order_by(Task.id.desc())
        .limit(1)
    )


def flag(project: Project, seed: int = 0) -> int:
    """Flag the training split's likely label errors for review; return how many were flagged.

    Items already waiting for a reviewer are left as they are. Flushed, not committed.
    """
    ids, labels, X, heldout, _ = training_data(project)
    train = np.flatnonzero(~heldout)
    if len(train) > MAX_ROWS:
        train = np.sort(np.random.default_rng(seed).choice(train, MAX_ROWS, replace=False))
    y = [str(labels[i]) for i in train]
    counts = np.unique(y, return_counts=True)[1]
    if len(counts) < 2 or counts.min() < 2:
        return 0
    rows = [X[i] for i in train] if isinstance(X, list) else X[train]
    classes = list(project.labels)
    _, proba = models.cross_val_predictions(project.template, rows, y, classes, 5, seed)
    ranked = [int(ids[train[i]]) for i in agreement.suspect_labels(y, proba, project.labels)]
    if not ranked:
        return 0
    waiting = set(
        db.session.scalars(
            select(Item.id).where(Item.id.in_(ranked), Item.review_since.is_not(None))
        )
    )
    chosen = [i for i in ranked if i not in waiting][:MAX_FLAGGED]
    if chosen:
        db.session.execute(
            update(Item)
            .where(Item.id.in_(chosen))
            .values(review_since=utcnow(), review_reason=ReviewReason.SUSPECT)
            .execution_options(synchronize_session=False)
        )
    db.session.flush()
    return len(chosen)


@unit_of_work
def run(task_id: int) -> int:
    """The job's work: flag suspects for the task's project, and record the task's state (a
    unit of work of its own: `running` is committed before the search starts)."""
    task = db.session.get(Task, task_id)
    if task is None or task.status != "queued":
        return 0
    task.status = TaskStatus.RUNNING
    db.session.commit()
    try:
        flagged = flag(db.session.get(Project, task.project_id))
    except Exception as exc:
        db.session.rollback()
        task = db.session.get(Task, task_id)
        task.status, task.error, task.finished_at = TaskStatus.FAILED, str(exc)[:500], utcnow()
        db.session.commit()
        raise
    task = db.session.get(Task, task_id)
    task.status, task.finished_at = TaskStatus.SUCCEEDED, utcnow()
    task.progress = task.total = flagged
    db.session.commit()
    return flagged
