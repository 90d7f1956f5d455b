"""Views: a project's retrain runs, starting one, and one run's verdict as it happens with the
review of its decision (the candidate beside the champion it was judged against); its model
versions with the learning curve, one version's metrics, lineage and history, and the
registry's changes (promote, reject, make challenger, roll back) for engineers."""

from __future__ import annotations

import redis
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import jobs, registry
from ..auth.routes import role_required
from ..enums import Role, RunStatus, Trigger
from ..errors import Conflict, ValidationError
from ..extensions import db
from ..models import ModelVersion, Project, RetrainRun
from ..monitor.routes import project_or_404
from ..training import NotTrainable, check_trainable, trigger_retrain
from . import bp, curve, review

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
RUN_LIMIT = 100
VERSION_LIMIT = 200
# The most fixed, broken or changed items a run page lists per kind (the API lists them all).
REVIEW_LIST_LIMIT = 50
# Where a registry form may send the user back to, besides the version's page.
BACK_TO_RUN = "run"


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
    final = run.status not in ACTIVE
    context = {
        "project": project,
        "run": run,
        "final": final,
        "stage": _stage(run),
        "version": version,
        "duration": _duration(run),
        "review": review.of_run(project, run, version) if final else None,
        "list_limit": REVIEW_LIST_LIMIT,
        # The registry's buttons for the run's version (`runs/_registry-actions.html`).
        "champion": registry.champion(project),
        "previous": registry.previous_champion(project),
        "max_reason": registry.MAX_REASON,
        "back": BACK_TO_RUN,
    }
    template = "runs/_run-status.html" if _hx() else "runs/show.html"
    return render_template(template, **context)


# ---------------------------------------------------------------------------------------------
# Model versions (the registry)


def _version_or_404(project: Project, number: int) -> ModelVersion:
    """The project's version `number`, or a 404 page."""
    version = None
    if number < 2**31:
        version = db.session.scalar(
            select(ModelVersion).where(
                ModelVersion.project_id == project.id, ModelVersion.version == number
            )
        )
    if version is None:
        abort(404, f"There is no model v{number} in {project.name}.")
    return version


def _numbers(project: Project) -> dict[int, int]:
    """Version id -> version number, for the project's event history."""
    rows = db.session.execute(
        select(ModelVersion.id, ModelVersion.version).where(ModelVersion.project_id == project.id)
    )
    return {row_id: number for row_id, number in rows}


@bp.get("/projects/<slug>/models")
@role_required(Role.REVIEWER, Role.ENGINEER)
def models(slug: str):
    """List the project's model versions, newest first, and the registry's latest events."""
    project = project_or_404(slug)
    versions = db.session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project.id)
        .order_by(ModelVersion.version.desc())
        .limit(VERSION_LIMIT)
    ).all()
    learning = curve.learning_curve(project)
    return render_template(
        "runs/models.html",
        project=project,
        versions=versions,
        previous=registry.previous_champion(project),
        champion=registry.champion(project),
        events=registry.history(project)[:20],
        numbers=_numbers(project),
        limit=VERSION_LIMIT,
        max_reason=registry.MAX_REASON,
        curve=learning,
        plot=curve.plot(learning),
    )


@bp.get("/projects/<slug>/models/<int:version>")
@role_required(Role.REVIEWER, Role.ENGINEER)
def model_version(slug: str, version: int):
    """Show one version: metrics, per-class table, confusion matrix, lineage and history."""
    project = project_or_404(slug)
    row = _version_or_404(project, version)
    return render_template(
        "runs/model.html",
        project=project,
        version=row,
        champion=registry.champion(project),
        previous=registry.previous_champion(project),
        events=registry.history(project, row),
        numbers=_numbers(project),
        max_reason=registry.MAX_REASON,
        back=None,
    )


def _apply(project: Project, number: int | None, change, done: str):
    """Run a registry change for the signed-in user; flash the outcome and show the version
    (or the run that made it, when the form came from a run page)."""
    try:
        event = change()
    except (Conflict, ValidationError) as exc:
        db.session.rollback()
        detail = next(iter(exc.errors.values())) if exc.errors else exc.detail
        flash(f"Nothing changed: {detail}", "error")
    else:
        db.session.commit()  # services flush, the view commits (webapp/transaction.py)
        number = db.session.get(ModelVersion, event.model_version_id).version
        flash(done.format(v=number))
    if number is None:
        return redirect(url_for("runs.models", slug=project.slug))
    if request.form.get("back") == BACK_TO_RUN:
        run_id = _version_or_404(project, number).run_id
        if run_id is not None:
            return redirect(url_for("runs.show", slug=project.slug, run_id=run_id))
    return redirect(url_for("runs.model_version", slug=project.slug, version=number))


def _actor() -> str:
    return current_user.annotator  # "user:<id>"


@bp.post("/projects/<slug>/models/<int:version>/promote")
@role_required(Role.ENGINEER)
def promote(slug: str, version: int):
    """Make the version the champion."""
    project = project_or_404(slug)
    row = _version_or_404(project, version)
    reason = request.form.get("reason", "")
    return _apply(
        project,
        version,
        lambda: registry.promote(row, _actor(), reason),
        "v{v} is the champion now; predictions use it from the next request.",
    )


@bp.post("/projects/<slug>/models/<int:version>/reject")
@role_required(Role.ENGINEER)
def reject(slug: str, version: int):
    """Reject a candidate or the challenger."""
    project = project_or_404(slug)
    row = _version_or_404(project, version)
    reason = request.form.get("reason", "")
    return _apply(
        project, version, lambda: registry.reject(row, _actor(), reason), "v{v} is rejected."
    )


@bp.post("/projects/<slug>/models/<int:version>/challenger")
@role_required(Role.ENGINEER)
def make_challenger(slug: str, version: int):
    """Make the version the challenger."""
    project = project_or_404(slug)
    row = _version_or_404(project, version)
    reason = request.form.get("reason", "")
    return _apply(
        project,
        version,
        lambda: registry.set_challenger(row, _actor(), reason),
        "v{v} is the challenger now.",
    )


@bp.post("/projects/<slug>/models/rollback")
@role_required(Role.ENGINEER)
def rollback(slug: str):
    """Bring back the previous champion (or the retired version the form names)."""
    project = project_or_404(slug)
    to = request.form.get("to_version", "").strip()
    target = None
    if to:
        if not to.isdigit():
            abort(400, "to_version must be a version number.")
        target = _version_or_404(project, int(to))
    reason = request.form.get("reason", "")
    return _apply(
        project,
        target.version if target is not None else None,
        lambda: registry.rollback(project, _actor(), reason, to_version=target),
        "Rolled back: v{v} is the champion again.",
    )
