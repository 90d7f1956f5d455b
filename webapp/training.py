"""Retraining glue: coalesced triggers, the retrain itself, promotion and pool rescoring.

The worker's jobs call `run_retrain` and `run_rescore`; everything numeric happens in `labeling`.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import zlib
from collections.abc import Callable

import numpy as np
from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError

from labeling import artifacts, evaluation, sampling, split, training

from . import jobs
from .enums import ModelStatus, RunStatus, TaskStatus, Trigger
from .extensions import db
from .models import Item, ModelVersion, Project, RetrainRun, Task, utcnow

log = logging.getLogger(__name__)

RETRAIN_JOB = "worker.jobs.retrain"
RESCORE_JOB = "worker.jobs.rescore"


# ---------------------------------------------------------------------------------------------
# Triggers


def trigger_retrain(project: Project, trigger: str = Trigger.MANUAL) -> RetrainRun:
    """Queue a retrain, or return the one already queued (triggers coalesce)."""
    queued = _queued_run(project.id)
    if queued is not None:
        _ensure_enqueued(queued)
        return queued
    run = RetrainRun(project_id=project.id, trigger=trigger, status=RunStatus.QUEUED)
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
        .where(Item.project_id == project.id, Item.label.is_not(None), Item.excluded_at.is_(None))
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
        select(RetrainRun).where(
            RetrainRun.project_id == project_id, RetrainRun.status == RunStatus.QUEUED
        )
    )


def _enqueue_run(run: RetrainRun) -> None:
    """Enqueue the job for a queued run; the row keeps the intent if Redis is unreachable."""
    job_id = jobs.enqueue(RETRAIN_JOB, run.id, job_id=f"retrain-{run.id}-{_stamp()}")
    if job_id is not None:
        run.job_id = job_id
        db.session.commit()


def _ensure_enqueued(run: RetrainRun) -> None:
    """Enqueue a queued run a trigger coalesced into, if its job never reached Redis or is gone.

    Not while another run of the project is running: that one's end enqueues it.
    """
    if _running_run(run.project_id):
        return
    try:
        if jobs.job_alive(run.job_id):
            return
    except jobs.UNREACHABLE:
        return  # the row keeps the intent; a worker's sweep enqueues it when Redis is back
    _enqueue_run(run)


def _running_run(project_id: int) -> bool:
    """Whether a run of the project is running."""
    return (
        db.session.scalar(
            select(RetrainRun.id).where(
                RetrainRun.project_id == project_id, RetrainRun.status == "running"
            )
        )
        is not None
    )


def _stamp() -> str:
    return utcnow().strftime("%Y%m%d%H%M%S%f")


def request_rescore(project: Project) -> Task | None:
    """Queue a rescore of the pool under the current champion, unless one is already queued."""
    queued = db.session.scalar(
        select(Task).where(
            Task.project_id == project.id, Task.name == "rescore", Task.status == TaskStatus.QUEUED
        )
    )
    if queued is not None:
        return queued
    if champion_version(project.id) is None:
        return None
    task = Task(project_id=project.id, name="rescore", status=TaskStatus.QUEUED)
    db.session.add(task)
    db.session.commit()
    job_id = jobs.enqueue(RESCORE_JOB, task.id, job_id=f"rescore-{task.id}")
    if job_id is not None:
        task.job_id = job_id
        db.session.commit()
    return task


DIED = "The worker running this retrain stopped before it finished."


def requeue_pending() -> int:
    """Recover after a fault: settle rows whose job died, enqueue intents Redis never got.

    Every worker runs this sweep when it starts and every `WORKER_SWEEP_SECONDS` after that
    (RQ's abandoned-job cleanup runs just before it, so a job whose worker died with its work
    horse reads failed once its heartbeat expires). Returns how many jobs were enqueued;
    raises `jobs.UNREACHABLE` while Redis is down (the next sweep tries again).
    """
    count = 0
    for run in db.session.scalars(select(RetrainRun).where(RetrainRun.status == "running")).all():
        if not jobs.job_alive(run.job_id):
            # A stuck `running` row would block every later retrain of its project.
            count += _settle_run(run, handed_back=False, reason=DIED)
    # Queued intents whose job never reached Redis or was lost with Redis's data. One whose job
    # ran and found another run of its project busy waits: that run's end enqueues it (and a
    # run that died was settled just above, which enqueued it).
    for run in db.session.scalars(select(RetrainRun).where(RetrainRun.status == "queued")).all():
        if not _running_run(run.project_id) and not jobs.job_alive(run.job_id):
            _enqueue_run(run)
            count += run.job_id is not None and jobs.job_alive(run.job_id)
    for task in db.session.scalars(select(Task).where(Task.status == "running")).all():
        if not jobs.job_alive(task.job_id):
            count += _settle_task(task, "The worker running this task stopped before it finished.")
    for task in db.session.scalars(select(Task).where(Task.status == "queued")).all():
        if not jobs.job_alive(task.job_id):
            count += _enqueue_task(task)
    db.session.commit()  # end the sweep's transaction: a worker waits for jobs holding none
    return count


def settle_job(job_id: str, handed_back: bool, reason: str) -> int:
    """Settle the run or task of a job whose work horse died; return how many jobs it enqueued.

    `handed_back` says the worker stopped the job itself (a shutdown past its grace period): the
    run goes back to the queue. Otherwise a running retrain fails with `reason` (a retrain that
    killed its horse, as the OOM killer does, would do it again) and a rescore is re-queued to
    resume, a bounded number of times. Rows that already finished are left alone.
    """
    count = 0
    run = db.session.scalar(
        select(RetrainRun).where(
            RetrainRun.job_id == job_id, RetrainRun.status.in_(("running", "queued"))
        )
    )
    if run is not None:
        count += _settle_run(run, handed_back, reason)
    task = db.session.scalar(
        select(Task).where(Task.job_id == job_id, Task.status.in_(("running", "queued")))
    )
    if task is not None:
        count += _settle_task(task, reason)
    db.session.commit()
    return count


def _settle_run(run: RetrainRun, handed_back: bool, reason: str) -> int:
    """Fail (or hand back) a run whose job died; start the project's next queued run."""
    run_id, project_id = run.id, run.project_id
    if run.status == "queued":
        _enqueue_run(run)  # killed before it claimed the run: just run it again
        return int(run.job_id is not None)
    if handed_back and _queued_run(project_id) is None:
        try:
            requeued = db.session.execute(
                update(RetrainRun)
                .where(RetrainRun.id == run_id, RetrainRun.status == "running")
                .values(status="queued", started_at=None, job_id=None)
                .execution_options(synchronize_session=False)
            ).rowcount
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # a trigger queued another run meanwhile: that one retrains
        else:
            if requeued:
                run = db.session.get(RetrainRun, run_id)
                db.session.refresh(run)
                _enqueue_run(run)
                return int(run.job_id is not None)
            return 0
    if handed_back:
        reason += " A retrain queued meanwhile takes its place."
    db.session.execute(
        update(RetrainRun)
        .where(RetrainRun.id == run_id, RetrainRun.status == "running")
        .values(status="failed", finished_at=utcnow(), error=reason)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    queued = _queued_run(project_id)
    if queued is None:
        return 0
    _ensure_enqueued(queued)
    return int(queued.job_id is not None)


def _settle_task(task: Task, reason: str) -> int:
    """Re-queue a rescore whose job died (it resumes where it stopped), at most a few times."""
    if task.status == "queued":
        return _enqueue_task(task)
    requeues = int((task.args or {}).get("requeues", 0))
    if task.name == "rescore" and requeues < current_app.config["RESCORE_REQUEUES"]:
        try:
            task.status = "queued"
            task.args = {**(task.args or {}), "requeues": requeues + 1}
            db.session.commit()
        except IntegrityError:
            # Another rescore of the project is queued; it scores what this one left.
            db.session.rollback()
            reason += " A rescore queued meanwhile scores the remaining items."
        else:
            return _enqueue_task(task)
    task.status, task.error, task.finished_at = "failed", reason, utcnow()
    db.session.commit()
    return 0


def _enqueue_task(task: Task) -> int:
    """Enqueue a queued task's job again; the row keeps the intent if Redis is unreachable."""
    if task.name != "rescore":
        return 0
    job_id = jobs.enqueue(RESCORE_JOB, task.id, job_id=f"rescore-{task.id}-{_stamp()}")
    if job_id is None:
        return 0
    task.job_id = job_id
    db.session.commit()
    return 1


# ---------------------------------------------------------------------------------------------
# Champion


def champion_version(project_id: int) -> ModelVersion | None:
    """The project's champion row (artifact not loaded), or None before the first promotion."""
    return db.session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project_id, ModelVersion.status == ModelStatus.CHAMPION
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
    if run is None or run.status != RunStatus.QUEUED:
        return run.status if run else "missing"
    try:
        claimed = db.session.execute(
            update(RetrainRun)
            .where(RetrainRun.id == run_id, RetrainRun.status == RunStatus.QUEUED)
            # The job that claims the run is the one whose life `requeue_pending` checks.
            .values(status=RunStatus.RUNNING, started_at=utcnow(), job_id=job_id or run.job_id)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("run %s waits: another retrain of its project is running", run_id)
        return RunStatus.QUEUED
    if claimed.rowcount != 1:
        db.session.rollback()
        return db.session.get(RetrainRun, run_id).status
    project_id = run.project_id
    try:
        _retrain(run_id, progress)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error("retrain %s failed:\n%s", run_id, traceback.format_exc())
        _discard_transaction()
        _write_retrying(lambda: _record_failure(run_id, error))
    finally:
        _start_next_queued(project_id)
    return db.session.get(RetrainRun, run_id).status


def _record_failure(run_id: int, error: str) -> None:
    """Mark a run failed with a readable error."""
    run = db.session.get(RetrainRun, run_id)
    run.status, run.error, run.finished_at = "failed", error, utcnow()
    db.session.commit()


# What a lost database connection (a restart, a failover, a blip) raises mid-transaction.
LOST_CONNECTION = (OperationalError, InterfaceError, DisconnectionError)


def _discard_transaction() -> None:
    """Roll the session back, even when its connection is gone (then just close it)."""
    try:
        db.session.rollback()
    except LOST_CONNECTION:
        db.session.close()


def _write_retrying(write: Callable[[], None]) -> None:
    """Run a write transaction, again on a fresh connection if it was lost, a bounded number of
    times (`RETRAIN_WRITE_RETRIES`): a database blip must not throw a finished training away."""
    retries = current_app.config.get("RETRAIN_WRITE_RETRIES", 0)
    for attempt in range(retries + 1):
        try:
            write()
            return
        except LOST_CONNECTION as exc:
            _discard_transaction()
            db.session.close()  # the next attempt checks out a fresh (pre-pinged) connection
            if attempt == retries:
                raise
            wait = min(0.5 * 2**attempt, 5.0)
            log.warning("write lost its database connection (%s); again in %.1f s", exc, wait)
            time.sleep(wait)


def _start_next_queued(project_id: int) -> None:
    queued = _queued_run(project_id)
    if queued is not None:
        _enqueue_run(queued)


def _training_data(project: Project):
    """Load every resolved item as arrays: ids, labels and the model input."""
    rows = db.session.execute(
        select(Item.id, Item.label, Item.data)
        .where(Item.project_id == project.id, Item.label.is_not(None), Item.excluded_at.is_(None))
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
    """Train and evaluate in memory, then record the outcome; only the writes are retried."""
    run = db.session.get(RetrainRun, run_id)
    project = db.session.get(Project, run.project_id)
    check_trainable(project)  # labels may have gone since the trigger
    project_id, template, label_set = project.id, project.template, list(project.labels)
    progress("loading")
    ids, labels, X = _training_data(project)
    heldout = split.heldout_mask(ids, project.setting("heldout_share"))
    gate_config = project.gate_config
    train = ~heldout
    X_train, y_train = _take(X, train), labels[train]
    X_held, y_held = _take(X, heldout), labels[heldout]
    digest = split.snapshot_digest(ids[train], y_train)
    snapshot = zlib.compress(
        json.dumps([[int(i), str(y)] for i, y in zip(ids[train], y_train, strict=True)]).encode()
    )
    sizes = int(train.sum()), int(heldout.sum())

    def record_snapshot() -> None:
        run = db.session.get(RetrainRun, run_id)
        run.train_size, run.heldout_size = sizes
        run.snapshot_digest, run.snapshot = digest, snapshot
        db.session.commit()

    _write_retrying(record_snapshot)

    progress("training")
    model = training.fit_model(template, X_train, list(y_train))

    progress("evaluating")
    candidate_metrics = _evaluate(model, X_held, y_held, label_set)
    champion = champion_version(project_id)
    champion_id = champion.id if champion is not None else None
    champion_no = champion.version if champion is not None else None
    champion_metrics = None
    if champion is not None:
        champion_metrics = _evaluate(load_model(champion), X_held, y_held, label_set)
    baseline = evaluation.majority_baseline(list(y_train), list(y_held), label_set)
    decision = evaluation.gate(candidate_metrics, champion_metrics, baseline, sizes[1], gate_config)
    artifact = artifacts.dumps(model)

    progress("recording")

    def record_outcome() -> None:
        # Everything lands in one transaction: the new version, the verdict, the promotion.
        run = db.session.get(RetrainRun, run_id)
        version_no = (
            db.session.scalar(
                select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project_id)
            )
            or 0
        ) + 1
        version = ModelVersion(
            project_id=project_id,
            version=version_no,
            status="candidate",
            template=template,
            labels=label_set,
            artifact=artifact,
            snapshot_digest=digest,
            train_size=sizes[0],
            metrics=candidate_metrics,
            run_id=run_id,
        )
        db.session.add(version)
        now = utcnow()
        if decision.promote:
            if champion_id is not None:
                db.session.get(ModelVersion, champion_id).status = "retired"
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
            "champion_version": champion_no,
        }
        run.status = "succeeded"
        run.finished_at = now
        db.session.commit()

    _write_retrying(record_outcome)
    if decision.promote:
        request_rescore(db.session.get(Project, project_id))


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
    if task is None or task.status not in (TaskStatus.QUEUED, TaskStatus.RUNNING):
        return
    task.status = TaskStatus.RUNNING
    db.session.commit()
    project = db.session.get(Project, task.project_id)
    try:
        champion = champion_version(project.id)
        if champion is None:
            task.status, task.finished_at = TaskStatus.SUCCEEDED, utcnow()
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
        task.status, task.finished_at = TaskStatus.SUCCEEDED, utcnow()
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        task = db.session.get(Task, task_id)
        task.status, task.error, task.finished_at = (
            TaskStatus.FAILED,
            f"{type(exc).__name__}: {exc}",
            utcnow(),
        )
        db.session.commit()
        raise
