"""Retraining glue: coalesced triggers, the retrain itself, promotion and pool rescoring.

The worker's jobs call `run_retrain` and `run_rescore`; everything numeric happens in `labeling`.
"""

from __future__ import annotations

import json
import logging
import traceback
import zlib
from collections.abc import Callable

import numpy as np
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from labeling import artifacts, evaluation, sampling, split, training

from . import jobs
from .extensions import db
from .models import Item, ModelVersion, Project, RetrainRun, Task, utcnow

log = logging.getLogger(__name__)

RETRAIN_JOB = "worker.jobs.retrain"
RESCORE_JOB = "worker.jobs.rescore"


# ---------------------------------------------------------------------------------------------
# Triggers


def trigger_retrain(project: Project, trigger: str = "manual") -> RetrainRun:
    """Queue a retrain, or return the one already queued (triggers coalesce)."""
    queued = _queued_run(project.id)
    if queued is not None:
        return queued
    run = RetrainRun(project_id=project.id, trigger=trigger, status="queued")
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        # Another request queued one between our look and our insert.
        db.session.rollback()
        queued = _queued_run(project.id)
        if queued is not None:
            return queued
        raise
    # Any trigger restarts the count towards the next automatic one.
    db.session.execute(
        update(Project)
        .where(Project.id == project.id)
        .values(label_events_at_trigger=Project.label_events)
    )
    db.session.commit()
    _enqueue_run(run)
    return run


class NotTrainable(Exception):
    """The project cannot be trained yet; the message says why in the user's words."""


def check_trainable(project: Project) -> None:
    """Raise NotTrainable unless the training split holds labeled items of two labels or more.

    Called where a person asks for a retrain (API, CLI, runs page) and when a run starts, so a
    hopeless retrain is refused with a reason instead of failing inside scikit-learn.
    """
    share = project.setting("heldout_share")
    rows = db.session.execute(
        select(Item.id, Item.label)
        .where(Item.project_id == project.id, Item.label.is_not(None))
        .execution_options(yield_per=5000)
    )
    labeled, in_train, seen = 0, 0, set()
    for chunk in rows.partitions():
        ids = np.fromiter((r[0] for r in chunk), dtype=np.int64, count=len(chunk))
        train = ~split.heldout_mask(ids, share)
        seen.update(label for (_, label), keep in zip(chunk, train, strict=True) if keep)
        labeled, in_train = labeled + len(chunk), in_train + int(train.sum())
        if len(seen) >= 2:
            rows.close()
            return
    if labeled == 0:
        raise NotTrainable(
            "Nothing to train on: the project has no labeled items yet. Label items of at "
            "least two labels, then retrain."
        )
    if not seen:
        why = f"all {labeled} labeled items are held out for evaluation"
    else:
        why = f"the {in_train} labeled items it trains on all carry {next(iter(seen))!r}"
    raise NotTrainable(
        f"Training needs labeled items of at least two labels, but {why}. Label items of "
        "another label, then retrain."
    )


def _queued_run(project_id: int) -> RetrainRun | None:
    return db.session.scalar(
        select(RetrainRun).where(RetrainRun.project_id == project_id, RetrainRun.status == "queued")
    )


def _enqueue_run(run: RetrainRun) -> None:
    """Enqueue the job for a queued run; the row keeps the intent if Redis is unreachable."""
    job_id = jobs.enqueue(RETRAIN_JOB, run.id, job_id=f"retrain-{run.id}-{_stamp()}")
    if job_id is not None:
        run.job_id = job_id
        db.session.commit()


def _stamp() -> str:
    return utcnow().strftime("%Y%m%d%H%M%S%f")


def request_rescore(project: Project) -> Task | None:
    """Queue a rescore of the pool under the current champion, unless one is already queued."""
    queued = db.session.scalar(
        select(Task).where(
            Task.project_id == project.id, Task.name == "rescore", Task.status == "queued"
        )
    )
    if queued is not None:
        return queued
    if champion_version(project.id) is None:
        return None
    task = Task(project_id=project.id, name="rescore", status="queued")
    db.session.add(task)
    db.session.commit()
    job_id = jobs.enqueue(RESCORE_JOB, task.id, job_id=f"rescore-{task.id}")
    if job_id is not None:
        task.job_id = job_id
        db.session.commit()
    return task


_ALIVE = ("queued", "started", "deferred", "scheduled")


def requeue_pending() -> int:
    """Recover after an outage: fail runs whose worker died, enqueue intents Redis never got.

    Returns how many jobs were enqueued.
    """
    count = 0
    for run in db.session.scalars(select(RetrainRun).where(RetrainRun.status == "running")):
        if jobs.job_status(run.job_id) not in _ALIVE:
            # Its worker died mid-run; a stuck `running` row would block every later retrain.
            run.status, run.finished_at = "failed", utcnow()
            run.error = "The worker running this retrain stopped before it finished."
            db.session.commit()
    # Queued intents whose job never reached Redis, was lost with Redis's data, or already ran
    # and found another run of its project busy (that run's end re-enqueues it, unless it died).
    for run in db.session.scalars(select(RetrainRun).where(RetrainRun.status == "queued")):
        if jobs.job_status(run.job_id) not in _ALIVE:
            _enqueue_run(run)
            count += jobs.job_status(run.job_id) in _ALIVE
    for task in db.session.scalars(select(Task).where(Task.status == "queued")):
        if jobs.job_status(task.job_id) in _ALIVE:
            continue
        job_id = jobs.enqueue(RESCORE_JOB, task.id, job_id=f"rescore-{task.id}-{_stamp()}")
        if job_id is not None:
            task.job_id = job_id
            db.session.commit()
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Champion


def champion_version(project_id: int) -> ModelVersion | None:
    """The project's champion row (artifact not loaded), or None before the first promotion."""
    return db.session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project_id, ModelVersion.status == "champion"
        )
    )


def load_model(version: ModelVersion):
    """Deserialize a model version's artifact (skops, allow-listed types only)."""
    return artifacts.loads(version.artifact)


# ---------------------------------------------------------------------------------------------
# The retrain job


def run_retrain(
    run_id: int, progress: Callable[[str], None] | None = None, job_id: str | None = None
) -> str:
    """Train, evaluate, gate and maybe promote for one queued run; return its final status.

    Only one run per project is ever `running` (a database constraint); a run whose turn has
    not come stays queued and is enqueued again when the running one finishes.
    """
    progress = progress or (lambda stage: None)
    run = db.session.get(RetrainRun, run_id)
    if run is None or run.status != "queued":
        return run.status if run else "missing"
    try:
        claimed = db.session.execute(
            update(RetrainRun)
            .where(RetrainRun.id == run_id, RetrainRun.status == "queued")
            # The job that claims the run is the one whose life `requeue_pending` checks.
            .values(status="running", started_at=utcnow(), job_id=job_id or run.job_id)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("run %s waits: another retrain of its project is running", run_id)
        return "queued"
    if claimed.rowcount != 1:
        db.session.rollback()
        return db.session.get(RetrainRun, run_id).status
    project_id = run.project_id
    try:
        _retrain(run_id, progress)
    except Exception as exc:
        db.session.rollback()
        run = db.session.get(RetrainRun, run_id)
        run.status = "failed"
        run.error = f"{type(exc).__name__}: {exc}"
        run.finished_at = utcnow()
        db.session.commit()
        log.error("retrain %s failed:\n%s", run_id, traceback.format_exc())
    finally:
        _start_next_queued(project_id)
    return db.session.get(RetrainRun, run_id).status


def _start_next_queued(project_id: int) -> None:
    queued = _queued_run(project_id)
    if queued is not None:
        _enqueue_run(queued)


def _training_data(project: Project):
    """Load every resolved item as arrays: ids, labels and the model input."""
    rows = db.session.execute(
        select(Item.id, Item.label, Item.data)
        .where(Item.project_id == project.id, Item.label.is_not(None))
        .order_by(Item.id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    labels = np.array([r[1] for r in rows], dtype=object)
    X = training.to_matrix(project.kind, [r[2] for r in rows], project.features)
    return ids, labels, X


def _take(X, mask: np.ndarray):
    """Select rows of X (a list of texts or an array) by a boolean mask."""
    if isinstance(X, list):
        return [x for x, keep in zip(X, mask, strict=True) if keep]
    return X[mask]


def _retrain(run_id: int, progress: Callable[[str], None]) -> None:
    run = db.session.get(RetrainRun, run_id)
    project = db.session.get(Project, run.project_id)
    check_trainable(project)  # labels may have gone since the trigger
    progress("loading")
    ids, labels, X = _training_data(project)
    heldout = split.heldout_mask(ids, project.setting("heldout_share"))
    train = ~heldout
    X_train, y_train = _take(X, train), labels[train]
    X_held, y_held = _take(X, heldout), labels[heldout]
    digest = split.snapshot_digest(ids[train], y_train)
    snapshot = zlib.compress(
        json.dumps([[int(i), str(y)] for i, y in zip(ids[train], y_train, strict=True)]).encode()
    )
    run.train_size, run.heldout_size = int(train.sum()), int(heldout.sum())
    run.snapshot_digest, run.snapshot = digest, snapshot
    db.session.commit()

    progress("training")
    model = training.fit_model(project.template, X_train, list(y_train))

    progress("evaluating")
    label_set = list(project.labels)
    candidate_metrics = _evaluate(model, X_held, y_held, label_set)
    champion = champion_version(project.id)
    champion_metrics = None
    if champion is not None:
        champion_metrics = _evaluate(load_model(champion), X_held, y_held, label_set)
    baseline = evaluation.majority_baseline(list(y_train), list(y_held), label_set)
    decision = evaluation.gate(
        candidate_metrics, champion_metrics, baseline, int(heldout.sum()), project.gate_config
    )

    progress("recording")
    # Everything below lands in one transaction: the new version, the verdict, the promotion.
    version_no = (
        db.session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
        )
        or 0
    ) + 1
    version = ModelVersion(
        project_id=project.id,
        version=version_no,
        status="candidate",
        template=project.template,
        labels=label_set,
        artifact=artifacts.dumps(model),
        snapshot_digest=digest,
        train_size=int(train.sum()),
        metrics=candidate_metrics,
        run_id=run.id,
    )
    db.session.add(version)
    now = utcnow()
    if decision.promote:
        if champion is not None:
            champion.status = "retired"
            db.session.flush()
        version.status = "champion"
        version.promoted_at = now
    else:
        version.status = "rejected"
    db.session.flush()
    run.model_version_id = version.id
    run.decision = "promoted" if decision.promote else "rejected"
    run.reasons = decision.reasons
    run.metrics = {
        "candidate": candidate_metrics,
        "champion": champion_metrics,
        "baseline": baseline,
        "champion_version": champion.version if champion is not None else None,
    }
    run.status = "succeeded"
    run.finished_at = now
    db.session.commit()
    if decision.promote:
        request_rescore(project)


def _evaluate(model, X_held, y_held, label_set: list[str]) -> dict:
    if len(y_held) == 0:
        return evaluation.evaluate([], [], label_set)
    proba = training.predict_proba_for(model, X_held, label_set)
    y_pred = [label_set[i] for i in proba.argmax(axis=1)]
    return evaluation.evaluate(list(y_held), y_pred, label_set)


# ---------------------------------------------------------------------------------------------
# The rescore job


def run_rescore(
    task_id: int, chunk: int = 2000, progress: Callable[[int, int], None] | None = None
):
    """Score every unlabeled item with the champion, `chunk` rows at a time, in bulk updates."""
    task = db.session.get(Task, task_id)
    if task is None or task.status not in ("queued", "running"):
        return
    task.status = "running"
    db.session.commit()
    project = db.session.get(Project, task.project_id)
    try:
        champion = champion_version(project.id)
        if champion is None:
            task.status, task.finished_at = "succeeded", utcnow()
            db.session.commit()
            return
        model = load_model(champion)
        strategy = project.setting("query_strategy")
        # Only items this champion has not scored yet: an import rescoring 1M rows would be waste.
        stale = (
            Item.project_id == project.id,
            Item.label.is_(None),
            or_(Item.scored_by.is_(None), Item.scored_by != champion.version),
        )
        task.total = db.session.scalar(select(func.count(Item.id)).where(*stale))
        db.session.commit()
        done, last = 0, 0
        while True:
            rows = db.session.execute(
                select(Item.id, Item.data)
                .where(*stale, Item.id > last)
                .order_by(Item.id)
                .limit(chunk)
            ).all()
            if not rows:
                break
            X = training.to_matrix(project.kind, [r[1] for r in rows], project.features)
            scores = sampling.informativeness(model, X, strategy)
            db.session.execute(
                update(Item),
                [
                    {"id": r[0], "score": float(s), "scored_by": champion.version}
                    for r, s in zip(rows, scores, strict=True)
                ],
            )
            last = rows[-1][0]
            done += len(rows)
            task.progress = done
            db.session.commit()
            if progress:
                progress(done, task.total or done)
            # A newer champion makes this pass moot; its own rescore is already queued.
            if champion_version(project.id).id != champion.id:
                break
        task.status, task.finished_at = "succeeded", utcnow()
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        task = db.session.get(Task, task_id)
        task.status, task.error, task.finished_at = (
            "failed",
            f"{type(exc).__name__}: {exc}",
            utcnow(),
        )
        db.session.commit()
        raise
