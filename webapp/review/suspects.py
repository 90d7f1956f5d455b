"""Label-error hunting: confident learning over cross-validated probabilities on the training
split flags labels that are likely wrong, and sends them to reviewers as `suspect`.

`request` records a task (one queued per project) and enqueues `worker.jobs.find_suspects`
after the commit; `flag` is the job's work. Held-out audits are never flagged: they are the
unbiased evaluation set, and a reviewer's eye on only some of them would bias it.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from labeling import agreement
from labeling import training as models

from .. import jobs
from ..enums import ReviewReason, TaskStatus
from ..extensions import db
from ..models import Item, Project, Task, utcnow
from ..training import training_data
from ..transaction import after_commit, unit_of_work

TASK = "suspects"  # Task.name
JOB = "worker.jobs.find_suspects"
#: At most this many labels are cross-validated (a seeded sample beyond), and flagged per run.
MAX_ROWS = 3000
MAX_FLAGGED = 50


def request(project: Project) -> Task:
    """Queue a hunt for likely label errors (a queued one absorbs the request). Flushed."""
    queued = _queued(project.id)
    if queued is not None:
        return queued
    dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
    task_id = db.session.scalar(
        dialect.insert(Task)
        .values(
            project_id=project.id,
            name=TASK,
            status="queued",
            args={},
            progress=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(
            index_elements=[Task.project_id, Task.name], index_where=Task.status == "queued"
        )
        .returning(Task.id)
    )
    if task_id is None:
        return _queued(project.id)
    after_commit(lambda: jobs.enqueue(JOB, task_id), key=f"suspects-{task_id}")
    return db.session.get(Task, task_id)


def _queued(project_id: int) -> Task | None:
    return db.session.scalar(
        select(Task).where(
            Task.project_id == project_id, Task.name == TASK, Task.status == "queued"
        )
    )


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
