"""Retraining glue: coalesced triggers, the retrain itself, promotion and pool rescoring.

The worker's jobs call `run_retrain` and `run_rescore`; everything numeric happens in `labeling`.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from flask import current_app
from sqlalchemy import bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError

from labeling import artifacts, evaluation, review, split, training

from . import jobs, references, registry, scoring, webhooks
from .enums import (
    Decision,
    JudgedBy,
    ModelAction,
    ModelStatus,
    PromoteTo,
    RunStatus,
    TaskStatus,
    Trigger,
    WebhookEvent,
)
from .extensions import db
from .models import (
    DEFAULT_SETTINGS,
    Annotation,
    Item,
    ModelVersion,
    Project,
    RetrainRun,
    Task,
    utcnow,
)
from .transaction import after_commit, unit_of_work, will_run_after_commit

log = logging.getLogger(__name__)

RETRAIN_JOB = "worker.jobs.retrain"
RESCORE_JOB = "worker.jobs.rescore"
RESCORE = "rescore"  # Task.name
# Task name -> its job (the label-error hunt's is webapp/review/suspects.py's).
TASK_JOBS = {RESCORE: RESCORE_JOB, "suspects": "worker.jobs.find_suspects"}


# ---------------------------------------------------------------------------------------------
# Triggers


def trigger_retrain(project: Project, trigger: str = Trigger.MANUAL) -> RetrainRun:
    """Queue a retrain, or return the one already queued (triggers coalesce).

    Flushed, not committed (see `webapp.transaction`): the caller commits, and the job is
    enqueued after that commit. The database allows one queued run per project; a trigger
    racing another for that slot reads the winner instead of failing.
    """
    queued = _queued_run(project.id)
    if queued is None:
        job_id = _job_id("retrain")
        dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
        run_id = db.session.scalar(
            dialect.insert(RetrainRun)
            .values(
                project_id=project.id,
                trigger=trigger,
                status=RunStatus.QUEUED,
                job_id=job_id,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(
                index_elements=[RetrainRun.project_id],
                index_where=RetrainRun.status == RunStatus.QUEUED,
            )
            .returning(RetrainRun.id)
        )
        if run_id is not None:
            # Any trigger restarts the count towards the next automatic one.
            db.session.execute(
                update(Project)
                .where(Project.id == project.id)
                .values(label_events_at_trigger=Project.label_events)
                .execution_options(synchronize_session=False)
            )
            after_commit(lambda: jobs.enqueue(RETRAIN_JOB, run_id, job_id=job_id), key=job_id)
            return db.session.get(RetrainRun, run_id)
        # Another trigger queued one between our look and our insert: it covers our labels.
        queued = _queued_run(project.id)
    _ensure_enqueued(queued)
    return queued


def first_lane():
    """Per item (correlated): the queue lane its first expert label came through, or NULL for a
    label given outside the queue (an import, a seed). Held-out membership follows from it."""
    return (
        select(Annotation.reason)
        .where(Annotation.item_id == Item.id)
        .order_by(Annotation.id)
        .limit(1)
        .correlate(Item)
        .scalar_subquery()
    )


def heldout_of(project: Project, ids, lanes) -> np.ndarray:
    """The held-out mask of labeled items: audits, and the hashed share of labels from outside."""
    return split.heldout_by_lane(ids, lanes, project.setting("heldout_share"))


class NotTrainable(Exception):
    """The project cannot be trained yet; the message says why in the user's words."""


def check_trainable(project: Project) -> None:
    """Raise NotTrainable unless the training split holds labeled items of two labels or more.

    Called where a person asks for a retrain (API, CLI, runs page) and when a run starts, so a
    hopeless retrain is refused with a reason instead of failing inside scikit-learn.
    """
    rows = db.session.execute(
        select(Item.id, Item.label, first_lane())
        .where(Item.project_id == project.id, Item.label.is_not(None), Item.excluded_at.is_(None))
        .execution_options(yield_per=5000)
    )
    labeled, in_train, seen = 0, 0, set()
    for chunk in rows.partitions():
        ids = np.fromiter((r[0] for r in chunk), dtype=np.int64, count=len(chunk))
        train = ~heldout_of(project, ids, [r[2] for r in chunk])
        seen.update(label for (_, label, _lane), keep in zip(chunk, train, strict=True) if keep)
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
    """Give a queued run a new job id, enqueued after the caller's commit (flushed only).

    The row keeps the intent if Redis is unreachable then: the sweep enqueues it later.
    """
    run_id = run.id
    run.job_id = job_id = _job_id("retrain")
    after_commit(lambda: jobs.enqueue(RETRAIN_JOB, run_id, job_id=job_id), key=job_id)


def _ensure_enqueued(run: RetrainRun) -> bool:
    """Enqueue a queued run a trigger coalesced into, if its job never reached Redis or is gone.

    Not while another run of the project is running: that one's end enqueues it; nor when its
    job waits for this transaction's commit. Flushed only; returns whether it enqueues.
    """
    if will_run_after_commit(run.job_id) or _running_run(run.project_id):
        return False
    try:
        if jobs.job_alive(run.job_id):
            return False
    except jobs.UNREACHABLE:
        return False  # the row keeps the intent; a worker's sweep enqueues it when Redis is back
    _enqueue_run(run)
    return True


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


def _job_id(kind: str) -> str:
    """A fresh RQ job id, chosen before the enqueue so the row can record it first."""
    return f"{kind}-{uuid.uuid4().hex}"


def request_rescore(project: Project) -> Task:
    """Record that the pool needs scoring under the current key: the learner's, or before any
    model version the cold start's (`scoring.cold_start`).

    Flushed, not committed (see `webapp.transaction`): the job is enqueued after the caller's
    commit. A rescore already queued absorbs the request, since it reads the items to score
    when it starts; the database allows one queued rescore per project, and a request racing
    another for that slot reads the winner instead of failing.
    """
    return queue_task(project, RESCORE)


def queue_task(project: Project, name: str) -> Task:
    """Queue a background task of kind `name` (a key of `TASK_JOBS`) for the project: one
    queued task of a kind per project (the database's `uq_task_queued`), which absorbs later
    requests; its job is enqueued after the caller's commit. Flushed, not committed."""
    queued = _queued_task(project.id, name)
    if queued is not None:
        return queued
    job_id = _job_id(name)
    dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
    task_id = db.session.scalar(
        dialect.insert(Task)
        .values(
            project_id=project.id,
            name=name,
            status="queued",
            job_id=job_id,
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
        # Another request queued one between our look and our insert: it covers ours.
        return _queued_task(project.id, name)
    job = TASK_JOBS[name]
    after_commit(lambda: jobs.enqueue(job, task_id, job_id=job_id), key=job_id)
    return db.session.get(Task, task_id)


def _queued_rescore(project_id: int) -> Task | None:
    return _queued_task(project_id, RESCORE)


def _queued_task(project_id: int, name: str) -> Task | None:
    return db.session.scalar(
        select(Task).where(
            Task.project_id == project_id, Task.name == name, Task.status == "queued"
        )
    )


def learner_id(project_id: int):
    """The learner: the project's newest model version, trained on all its training labels.

    It steers the queue whatever the gate decided (a rejected candidate trained on more labels
    still knows best where the model is unsure), while the champion keeps serving `predict`.
    """
    return db.session.scalar(
        select(func.max(ModelVersion.id)).where(ModelVersion.project_id == project_id)
    )


def _learner_subquery(project_id: int):
    return (
        select(func.max(ModelVersion.id))
        .where(ModelVersion.project_id == project_id)
        .scalar_subquery()
    )


def score_key(project: Project) -> tuple[int, str] | None:
    """The (learner version id, query strategy) that current scores must carry; None before
    any model."""
    learner = learner_id(project.id)
    return None if learner is None else (learner, project.setting("query_strategy"))


def current_scores(project: Project) -> list:
    """WHERE clauses for items whose score is under the project's current key.

    The uncertain lane ranks only these: a score of an older learner or another strategy is
    on another scale (margin in [-1, 0], entropy in [0, log k]) and would jump the lane.
    """
    return [
        Item.scored_by == _learner_subquery(project.id),
        Item.score_strategy == project.setting("query_strategy"),
        Item.score.is_not(None),
    ]


DIED = "The worker running this retrain stopped before it finished."


@unit_of_work
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
            count += 1
    for task in db.session.scalars(select(Task).where(Task.status == "running")).all():
        if not jobs.job_alive(task.job_id):
            count += _settle_task(task, "The worker running this task stopped before it finished.")
    for task in db.session.scalars(select(Task).where(Task.status == "queued")).all():
        if not jobs.job_alive(task.job_id):
            count += _enqueue_task(task)
    db.session.commit()  # end the sweep's transaction: a worker waits for jobs holding none
    return count


@unit_of_work
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
        return 1
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
                db.session.commit()
                return 1
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
    enqueued = queued is not None and _ensure_enqueued(queued)
    db.session.commit()
    return int(enqueued)


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
    if task.name not in TASK_JOBS:
        return 0
    job_id = jobs.enqueue(TASK_JOBS[task.name], task.id, job_id=_job_id(task.name))
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


@unit_of_work
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
    _run_finished(run, None)
    db.session.commit()


def _run_finished(run: RetrainRun, version: int | None) -> None:
    """Tell the project's webhooks that a run ended (in the transaction that ends it)."""
    payload = {
        "run_id": run.id,
        "status": run.status,
        "decision": run.decision,
        "model_version": version,
        "trigger": run.trigger,
        "alert_id": run.alert_id,
        "error": run.error,
    }
    webhooks.emit(run.project_id, WebhookEvent.RUN_FINISHED, payload)


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
        db.session.commit()


def _training_data(project: Project):
    """Load every resolved item as arrays: ids, labels, the model input, the held-out mask and
    when each was labeled."""
    rows = db.session.execute(
        select(Item.id, Item.label, Item.data, first_lane(), Item.labeled_at)
        .where(Item.project_id == project.id, Item.label.is_not(None), Item.excluded_at.is_(None))
        .order_by(Item.id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    labels = np.array([r[1] for r in rows], dtype=object)
    X = training.to_matrix(project.kind, [r[2] for r in rows], project.features)
    labeled_at = np.array([r[4] for r in rows], dtype=object)
    return ids, labels, X, heldout_of(project, ids, [r[3] for r in rows]), labeled_at


# The same arrays for other jobs that read the labeled set (the label-error hunt).
training_data = _training_data


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
    ids, labels, X, heldout, labeled_at = _training_data(project)
    gate_config = project.gate_config
    promote_to = project.setting("promote_to")
    train = ~heldout
    X_train, y_train = _take(X, train), labels[train]
    X_held, y_held, held_at = _take(X, heldout), labels[heldout], labeled_at[heldout]
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
    started = time.perf_counter()
    model = training.fit_model(template, X_train, list(y_train))
    lineage = registry.lineage(model, ids[heldout], y_held, time.perf_counter() - started)

    progress("evaluating")
    champion = champion_version(project_id)
    champion_no = champion.version if champion is not None else None
    decision, candidate_metrics, champion_metrics, paired = _judge(
        template,
        model,
        champion,
        (X_train, y_train),
        (X_held, y_held, held_at),
        label_set,
        gate_config,
        ids=(ids[train], ids[heldout]),
    )
    baseline = evaluation.majority_baseline(list(y_train), list(y_held), label_set)
    artifact = artifacts.dumps(model)
    progress("summarising")
    reference, calibrator = _monitoring_reference(project, model, X_train, X_held, y_held)

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
            reference=reference,
            calibrator=calibrator,
            **lineage,
        )
        db.session.add(version)
        now = utcnow()
        outcome = _outcome(decision.promote, champion_no, promote_to)
        if outcome == Decision.PROMOTED:
            # Retires the champion, crowns this one and records the gate's event.
            registry.record_auto(version, ModelAction.AUTO_PROMOTE)
        elif outcome == Decision.CHALLENGER:
            # The champion keeps serving; this one waits to be proven (the old challenger, if
            # any, goes back to being a candidate).
            registry.record_auto(version, ModelAction.AUTO_CHALLENGER)
        else:
            version.status = "rejected"
        db.session.flush()
        run.model_version_id = version.id
        run.decision = outcome
        run.reasons = decision.reasons + _routing_reason(outcome, champion_no)
        run.metrics = {
            "candidate": candidate_metrics,
            "champion": champion_metrics,
            "baseline": baseline,
            "champion_version": champion_no,
            "items": paired,  # the per-item predictions of the decision (labeling.review)
        }
        run.status = "succeeded"
        run.finished_at = now
        _run_finished(run, version.version)
        # The new version is the learner, promoted or not: it rescores the pool (recorded
        # with the outcome, enqueued once it is committed).
        request_rescore(db.session.get(Project, project_id))
        db.session.commit()

    _write_retrying(record_outcome)


def _monitoring_reference(project: Project, model, X_train, X_held, y_held):
    """What monitoring compares the version with (`webapp.references.reference_for`); a
    version is still recorded, unmonitored, if that fails."""
    try:
        reference, calibrator = references.reference_for(project, model, X_train, X_held, y_held)
    except Exception:  # noqa: BLE001 (monitoring must never cost a retrain its model)
        log.exception("no monitoring reference for a version of project %s", project.slug)
        return None, None
    db.session.commit()  # end the read's transaction: the outcome is written in its own
    return reference, calibrator


def _outcome(passed: bool, champion_no: int | None, promote_to: str) -> Decision:
    """What a run's verdict does: promote, make the challenger (only with a champion to
    challenge, when the project asks for it), or reject."""
    if not passed:
        return Decision.REJECTED
    if champion_no is not None and promote_to == PromoteTo.CHALLENGER:
        return Decision.CHALLENGER
    return Decision.PROMOTED


def _routing_reason(outcome: Decision, champion_no: int | None) -> list[dict]:
    """The note a challenger verdict adds to the gate's rules: why it does not serve yet."""
    if outcome != Decision.CHALLENGER:
        return []
    return [
        {
            "rule": "promote_to",
            "passed": True,
            "detail": (
                "The candidate passed the gate, and the project sends such candidates to the "
                f"challenger alias (promote_to = challenger): version {champion_no} keeps "
                "serving until a person promotes this one or an experiment proves it."
            ),
            "numbers": {"promote_to": PromoteTo.CHALLENGER, "champion_version": champion_no},
        }
    ]


def _judge(template, model, champion, train, held, label_set: list[str], config, ids):
    """The gate's decision, both models' metrics and their per-item predictions (packed by
    `labeling.review.pack_paired`; `ids` are the training and held-out items' ids), on the
    items the decision is made on.

    - No champion and too few held-out items: the first model is judged by cross-validation
      over its training labels (each predicted by a model that did not train on it) against
      always predicting the majority label. The metrics say so (`judged_by`).
    - Otherwise on held-out items, paired: the candidate and the champion predict the same
      items. When at least `min_heldout` of them are items the champion was not judged on
      (`_unseen_by`), only those count: a champion reads better than it is on the items it
      won on (`bench.gate_simulation --reuse`), so reusing them would favour it.
    """
    X_train, y_train = train
    X_held, y_held, held_at = held
    if champion is None and len(y_held) < config.min_heldout:
        try:
            cv_pred, cv_proba = training.cross_val_predictions(
                template, X_train, list(y_train), label_set
            )
        except ValueError:
            pass  # too few labels of a class to cross-validate: judged on held-out (and fails)
        else:
            decision = evaluation.decide_first_by_cv(list(y_train), cv_pred, label_set, config)
            metrics = evaluation.evaluate(list(y_train), cv_pred, label_set, proba=cv_proba)
            metrics.update(judged_by=JudgedBy.CROSS_VALIDATION, judged_n=len(cv_pred))
            paired = review.pack_paired(ids[0], y_train, cv_pred, None, label_set)
            return decision, metrics, None, paired
    judged_by, use = JudgedBy.HELDOUT, np.ones(len(y_held), dtype=bool)
    if champion is not None:
        judged_by, fresh = _unseen_by(champion, ids[1], held_at)
        if fresh is None or not fresh.any() or fresh.sum() < min(config.min_heldout, len(fresh)):
            judged_by = JudgedBy.HELDOUT  # too few fresh items: all of them (reused included)
        else:
            use = fresh
    X_use, y_use = _take(X_held, use), list(y_held[use])
    cand_pred, cand_proba = _predict(model, X_use, len(y_use), label_set)
    champ_pred = champ_proba = None
    if champion is not None:
        champ_pred, champ_proba = _predict(load_model(champion), X_use, len(y_use), label_set)
    decision = evaluation.decide(y_use, cand_pred, champ_pred, list(y_train), label_set, config)
    metrics = evaluation.evaluate(y_use, cand_pred, label_set, proba=cand_proba)
    metrics.update(judged_by=judged_by, judged_n=len(y_use))
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluation.evaluate(y_use, champ_pred, label_set, proba=champ_proba)
        champion_metrics.update(judged_by=judged_by, judged_n=len(y_use))
    paired = review.pack_paired(ids[1][use], y_use, cand_pred, champ_pred, label_set)
    return decision, metrics, champion_metrics, paired


def _unseen_by(champion: ModelVersion, held_ids, held_at) -> tuple[str, np.ndarray | None]:
    """Which held-out items the champion was not judged on, and how that was known.

    The champion's own run stored the items its decision was made on: none of the audits for a
    champion judged by cross-validation, so all of them are fresh for it. A champion whose run
    stored no items (older runs) falls back to the audits labeled since its promotion.
    """
    run = db.session.get(RetrainRun, champion.run_id) if champion.run_id else None
    metrics = (run.metrics or {}) if run is not None else {}
    items = metrics.get("items") if isinstance(metrics.get("items"), dict) else None
    judged = (metrics.get("candidate") or {}).get("judged_by")
    if items is not None and isinstance(items.get("ids"), list):
        seen = set() if judged == JudgedBy.CROSS_VALIDATION else {int(i) for i in items["ids"]}
        fresh = np.array([int(i) not in seen for i in held_ids], dtype=bool)
        return JudgedBy.HELDOUT_UNSEEN, fresh
    if champion.promoted_at is None:
        return JudgedBy.HELDOUT, None
    fresh = np.array([t is not None and t > champion.promoted_at for t in held_at], dtype=bool)
    return JudgedBy.HELDOUT_SINCE_PROMOTION, fresh


def _predict(model, X, n: int, label_set: list[str]):
    """A model's predicted labels and probabilities on n rows (none for an empty set)."""
    if n == 0:
        return [], None
    proba = training.predict_proba_for(model, X, label_set)
    return [label_set[i] for i in proba.argmax(axis=1)], proba


# ---------------------------------------------------------------------------------------------
# The rescore job


@unit_of_work
def run_rescore(
    task_id: int, chunk: int = 2000, progress: Callable[[int, int], None] | None = None
):
    """Score every unlabeled item not yet scored under the current key, `chunk` rows at a time.

    A job: each chunk is its own unit of work (read, predict, one bulk UPDATE, commit), so a
    rescore that stops resumes where it stopped. Items added while it runs are scored too;
    when it finds nothing left, it puts a diverse batch at the head of the uncertain lane
    (`scoring.rank_head`) and closes the rescores queued meanwhile (their items were committed
    before them, so it has seen them). A new learner or strategy ends the pass: its own
    rescore is queued with the change. A committee strategy fits its committee once per pass;
    before any model version, the pass picks the cold start's items instead.
    """
    task = db.session.get(Task, task_id)
    if task is None or task.status not in (TaskStatus.QUEUED, TaskStatus.RUNNING):
        return
    project = db.session.get(Project, task.project_id)
    if task.status == "queued":
        try:
            claimed = db.session.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == "queued")
                .values(status="running")
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
        except IntegrityError:
            # Another rescore of the project is running; it closes this one when it ends, or
            # enqueues it again if this one was queued after its last look.
            db.session.rollback()
            return
        if claimed.rowcount != 1:
            return
        db.session.refresh(task)
    key = score_key(project)
    try:
        if key is None:
            _cold_start_pass(project)
            task.status, task.finished_at = "succeeded", utcnow()
            db.session.commit()
            _start_queued_rescore(project.id)
            return
        champion_id, strategy = key  # the learner's version id (see `learner_id`)
        inputs = scoring.scorer_inputs(project, db.session.get(ModelVersion, champion_id), strategy)
        db.session.commit()  # hold no snapshot while a committee strategy fits its committee
        scorer = scoring.build_scorer(inputs)
        # Core columns, not ORM attributes: rows come back as plain tuples, and a text
        # project reads only the text out of the JSON (->> / json_extract in the database).
        item = Item.__table__
        payload = scoring.payload(project)
        stale = (
            item.c.project_id == project.id,
            item.c.label.is_(None),
            or_(
                item.c.scored_by.is_(None),
                item.c.scored_by != champion_id,
                item.c.score_strategy.is_(None),
                item.c.score_strategy != strategy,
            ),
        )
        task.total = db.session.scalar(select(func.count(item.c.id)).where(*stale))
        db.session.commit()
        app = current_app._get_current_object()
        done, last = 0, 0
        # The database writes chunk n while this thread predicts chunk n + 1: the UPDATE runs in
        # the database's process (or in SQLite's C code, without the GIL), so the two overlap.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rescore-write") as writer:
            pending: Future | None = None

            def settle() -> None:
                """Wait for the chunk being written; record the progress once it is committed."""
                nonlocal pending, done
                if pending is None:
                    return
                done += pending.result()  # a failed write raises here
                pending = None
                task.progress = done
                if task.total is not None and done > task.total:
                    task.total = done
                db.session.commit()
                if progress:
                    progress(done, task.total or done)

            while True:
                if last == 0:
                    # A pass from the start, every write before it committed: the queued
                    # rescores it will be able to close are those queued before this look.
                    settle()
                    absorbable = db.session.scalars(
                        select(Task.id).where(
                            Task.project_id == project.id,
                            Task.name == RESCORE,
                            Task.status == "queued",
                        )
                    ).all()
                if _current_key(project.id) != key:
                    break  # a newer champion or strategy: its own rescore is queued
                rows = db.session.execute(
                    select(item.c.id, payload)
                    .where(*stale, item.c.id > last)
                    .order_by(item.c.id)
                    .limit(chunk)
                ).all()
                db.session.commit()  # hold no snapshot while predicting
                if not rows:
                    settle()
                    if last == 0:
                        # Every item scored: the diverse batch heads the lane (or the last
                        # pass's batch goes back to its scores when diversity is off).
                        scoring.rank_head(project, key, scorer)
                        _close_absorbed(absorbable)
                        db.session.commit()
                        break
                    last = 0  # one more look from the start, for items committed meanwhile
                    continue
                scores = scorer.score(scoring.model_input(project, [r[1] for r in rows]))
                settle()
                ids = [r[0] for r in rows]
                pending = writer.submit(_write_chunk, app, ids, scores, champion_id, strategy)
                last = ids[-1]
            settle()
        task.status, task.finished_at = "succeeded", utcnow()
        db.session.commit()
        _start_queued_rescore(project.id)
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


def _cold_start_pass(project: Project) -> None:
    """Before any model: pick the cold start's diverse items anew, and close the rescores
    queued before this look (their items are committed, so the picks saw them)."""
    absorbable = db.session.scalars(
        select(Task.id).where(
            Task.project_id == project.id, Task.name == RESCORE, Task.status == "queued"
        )
    ).all()
    db.session.commit()
    scoring.cold_start(project)
    _close_absorbed(absorbable)
    db.session.commit()


def _current_key(project_id: int) -> tuple[int, str] | None:
    """The score key as committed now (fresh columns, not the session's cached project)."""
    settings = db.session.scalar(select(Project.settings).where(Project.id == project_id))
    learner = learner_id(project_id)
    if learner is None:
        return None
    strategy = (settings or {}).get("query_strategy", DEFAULT_SETTINGS["query_strategy"])
    return learner, strategy


def _start_queued_rescore(project_id: int) -> None:
    """Enqueue the rescore queued after this one's last look, unless its job is still alive."""
    queued = _queued_rescore(project_id)
    if queued is not None and not jobs.job_alive(queued.job_id):
        job_id = jobs.enqueue(RESCORE_JOB, queued.id, job_id=_job_id("rescore"))
        if job_id is not None:
            queued.job_id = job_id
            db.session.commit()


def _close_absorbed(task_ids: list[int]) -> None:
    """Mark rescores queued before this pass's last look as done: it scored their items."""
    if task_ids:
        db.session.execute(
            update(Task)
            .where(Task.id.in_(task_ids), Task.status == "queued")
            .values(status="succeeded", finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def _write_chunk(app, ids: list[int], scores, champion_id: int, strategy: str) -> int:
    """Write and commit one chunk's scores in a session of its own (the rescore's writer)."""
    with app.app_context():
        _write_scores(ids, scores, champion_id, strategy)
        db.session.commit()
    return len(ids)


def _write_scores(ids: list[int], scores, champion_id: int, strategy: str) -> None:
    """Store one chunk's scores and key in one statement (rows labeled meanwhile are left)."""
    if db.session.get_bind().dialect.name == "postgresql":
        # One UPDATE … FROM unnest(two arrays): no per-row statement, no 4,000 parameters.
        db.session.execute(
            text(
                "UPDATE item SET score = u.score, scored_by = :champion, "
                "score_strategy = :strategy "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:scores AS float8[])) AS u(id, score) "
                "WHERE item.id = u.id AND item.label IS NULL"
            ),
            {
                "ids": ids,
                "scores": [float(s) for s in scores],
                "champion": champion_id,
                "strategy": strategy,
            },
        )
        return
    # SQLite: one prepared UPDATE run for every row in C (executemany).
    db.session.execute(
        update(Item.__table__)
        .where(Item.id == bindparam("item_id"), Item.label.is_(None))
        .values(score=bindparam("new_score"), scored_by=champion_id, score_strategy=strategy),
        [{"item_id": i, "new_score": float(s)} for i, s in zip(ids, scores, strict=True)],
    )
