"""Views: a project's retrain runs, starting one, and one run's verdict as it happens."""

from __future__ import annotations

import redis
from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import jobs
from ..auth.routes import role_required
from ..enums import Role, RunStatus, Trigger
from ..extensions import db
from ..models import ModelVersion, Project, RetrainRun
from ..monitor.routes import project_or_404
from ..training import NotTrainable, check_trainable, trigger_retrain
from . import bp

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
RUN_LIMIT = 100


def _hx() -> bool:
    """Whether htmx sent the request (then only the partial is returned)."""
    return request.headers.get("HX-Request") == "true"


def _run_or_404(project: Project, run_id: int) -> RetrainRun:
    """The project's run with this id, or a 404 page (ids past INTEGER's range included)."""
    run = db.session.get(RetrainRun, run_id) if run_id < 2**31 else None
    if run is None or run.project_id != project.id:
        abort(404, f"There is no retrain #{run_id} in {project.name}.")
    return run


def _stage(run: RetrainRun) -> str | None:
    """The stage a running job reported (loading, training, …), read from its RQ meta."""
    if run.status != RunStatus.RUNNING:
        return None
    try:
        job = jobs.fetch_job(run.job_id)
    except redis.RedisError:
        return None
    return job.meta.get("stage") if job is not None else None


def _duration(run: RetrainRun) -> float | None:
    """Seconds from start to finish, once the run has finished."""
    if run.started_at and run.finished_at:
        return (run.finished_at - run.started_at).total_seconds()
    return None


@bp.get("/projects/<slug>/runs")
@role_required(Role.REVIEWER, Role.ENGINEER)
def index(slug: str):
    """List the project's retrains, newest first; the table polls while one is active."""
    project = project_or_404(slug)
    runs = db.session.scalars(
        select(RetrainRun)
        .where(RetrainRun.project_id == project.id)
        .order_by(RetrainRun.id.desc())
        .limit(RUN_LIMIT)
    ).all()
    context = {
        "project": project,
        "runs": runs,
        "active": any(run.status in ACTIVE for run in runs),
        "duration": _duration,
        "limit": RUN_LIMIT,
    }
    template = "runs/_runs-table.html" if _hx() else "runs/index.html"
    return render_template(template, **context)


@bp.post("/projects/<slug>/runs")
@role_required(Role.ENGINEER)
def start(slug: str):
    """Queue a retrain now, or join the one already queued, and show it."""
    project = project_or_404(slug)
    try:
        check_trainable(project)
    except NotTrainable as exc:
        flash(f"Not retrained: {exc}", "error")
        return redirect(url_for("runs.index", slug=project.slug))
    queued = db.session.scalar(
        select(RetrainRun.id).where(
            RetrainRun.project_id == project.id, RetrainRun.status == RunStatus.QUEUED
        )
    )
    run = trigger_retrain(project, trigger=Trigger.UI)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    if run.id == queued:
        flash(f"Retrain #{run.id} was already waiting to start; your request joined it.")
    else:
        flash(f"Retrain #{run.id} queued.")
    return redirect(url_for("runs.show", slug=project.slug, run_id=run.id))


@bp.get("/projects/<slug>/runs/<int:run_id>")
@role_required(Role.REVIEWER, Role.ENGINEER)
def show(slug: str, run_id: int):
    """Show one run; its status partial polls until the run reaches a final state."""
    project = project_or_404(slug)
    run = _run_or_404(project, run_id)
    version = db.session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
    context = {
        "project": project,
        "run": run,
        "final": run.status not in ACTIVE,
        "stage": _stage(run),
        "version": version,
        "duration": _duration(run),
    }
    template = "runs/_run-status.html" if _hx() else "runs/show.html"
    return render_template(template, **context)
