"""RQ jobs: plain functions taking ids, enqueued by dotted path (`worker.jobs.retrain`)."""

from __future__ import annotations

import logging

import redis
from rq import get_current_job

from webapp import training
from webapp.extensions import db

from . import get_app, in_forked_child

log = logging.getLogger(__name__)


def _report(**meta) -> None:
    """Put progress in the job's meta so pages can poll it; best effort, never fatal.

    Progress is a courtesy to the pages that poll it: a Redis outage must not throw a retrain
    (or a rescore) away, so a report that cannot be saved is logged and skipped.
    """
    job = get_current_job()
    if job is None:
        return
    job.meta.update(meta)
    try:
        job.save_meta()
    except redis.RedisError as exc:
        log.warning("progress of job %s not saved: %s", job.id, exc)


def _fresh_connections() -> None:
    """A forked work horse must not reuse the parent's pooled database connections."""
    if in_forked_child():
        db.engine.dispose(close=False)


def retrain(run_id: int) -> str:
    """Train, evaluate, gate and maybe promote for retrain run `run_id`; return its status.

    A project that resolves its experts' answers with Dawid-Skene has them re-resolved over
    the whole project first, so the snapshot reads the aggregated labels.
    """
    with get_app().app_context():
        _fresh_connections()
        _aggregate_answers(run_id)
        job = get_current_job()
        return training.run_retrain(
            run_id, progress=lambda stage: _report(stage=stage), job_id=job.id if job else None
        )


def _aggregate_answers(run_id: int) -> None:
    """Dawid-Skene over the run's project's overlapping answers, when that is its rule."""
    from webapp.models import Project, RetrainRun
    from webapp.pool import rounds

    run = db.session.get(RetrainRun, run_id)
    project = db.session.get(Project, run.project_id) if run is not None else None
    if project is not None and project.setting("resolution") == "dawid_skene":
        rounds.resolve_dawid_skene(project)
    db.session.commit()


def rescore(task_id: int) -> None:
    """Score the unlabeled pool with the learner (before any model: pick the cold start's
    items) for task `task_id`."""
    app = get_app()
    with app.app_context():
        _fresh_connections()
        training.run_rescore(
            task_id,
            chunk=app.config["RESCORE_CHUNK"],
            progress=lambda done, total: _report(done=done, total=total),
        )


def deliver_webhook(delivery_id: int) -> str | None:
    """Attempt webhook delivery `delivery_id` (signed POST; a failure is retried by the clock)."""
    with get_app().app_context():
        _fresh_connections()
        from webapp import webhooks

        return webhooks.deliver(delivery_id)


def compute_monitoring(project_id: int) -> dict:
    """Bring project `project_id`'s monitoring windows up to date, then evaluate its alerts."""
    with get_app().app_context():
        _fresh_connections()
        from webapp import alerts

        return alerts.run_monitoring(project_id)


def analyze_experiment(experiment_id: int) -> str | None:
    """Look at running experiment `experiment_id`: its figures, an SRM alert, its decision."""
    with get_app().app_context():
        _fresh_connections()
        from webapp import abtests

        return abtests.step(experiment_id)


def score_shadow(experiment_id: int) -> int:
    """Score shadow experiment `experiment_id`'s new requests with its challenger."""
    with get_app().app_context():
        _fresh_connections()
        from webapp import abtests

        return abtests.score_shadow(experiment_id)


def find_suspects(task_id: int) -> int:
    """Flag the project's likely label errors for review (confident learning) for task
    `task_id`; return how many were flagged."""
    from webapp.review import suspects

    with get_app().app_context():
        _fresh_connections()
        return suspects.run(task_id)
