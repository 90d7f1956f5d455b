"""Views: the project list and a project's page with its champion's held-out metrics."""

from __future__ import annotations

from datetime import datetime

from flask import abort, render_template
from flask_login import current_user, login_required
from sqlalchemy import func, select

from .. import pool
from ..auth.manage import visible_projects
from ..enums import Role
from ..extensions import db
from ..models import ModelVersion, Project, RetrainRun
from ..training import champion_version
from . import bp

RUN_ROLES = (Role.REVIEWER, Role.ENGINEER, Role.ADMIN)


def project_or_404(slug: str) -> Project:
    """The project with this slug, if the user may see it; else a 404 page naming it.

    Non-members get the same 404 as for a project that does not exist (nothing is revealed).
    """
    project = None
    if len(slug) <= 64 and "\x00" not in slug:
        project = db.session.scalar(select(Project).where(Project.slug == slug))
    if project is None or not current_user.can_see(project):
        abort(404, f"There is no project called {slug!r}.")
    return project


def can_see_runs() -> bool:
    """Whether the logged-in user may open the runs pages."""
    return current_user.is_authenticated and current_user.role in RUN_ROLES


def can_retrain() -> bool:
    """Whether the logged-in user may start a retrain from the browser."""
    return current_user.is_authenticated and current_user.role in (Role.ENGINEER, Role.ADMIN)


@bp.app_context_processor
def inject_roles():
    """Make the role checks available in every template (links shown only when they work)."""
    return {"can_see_runs": can_see_runs, "can_retrain": can_retrain}


@bp.app_template_filter("when")
def when(value: datetime | None) -> str:
    """Format a stored (naive UTC) time for people."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


@bp.app_template_filter("seconds")
def seconds(total: float | None) -> str:
    """Format a duration in seconds as `4.2 s`, `3 min 05 s` or `2 h 10 min`."""
    if total is None:
        return "—"
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(int(round(total)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@bp.app_template_filter("score")
def score(value: float | None) -> str:
    """Format a metric in [0, 1] with three decimals, or a dash when there is none."""
    return "—" if value is None else f"{value:.3f}"


@bp.get("/projects")
@login_required
def projects():
    """List the projects the user may see with their counts and champion version."""
    projects = db.session.scalars(visible_projects(current_user)).all()
    # Three queries for any number of projects: the projects, their counts, their champions.
    counts = pool.counts_by_project(p.id for p in projects)
    champions = {
        m.project_id: m
        for m in db.session.scalars(select(ModelVersion).where(ModelVersion.status == "champion"))
    }
    rows = [(p, counts[p.id], champions.get(p.id)) for p in projects]
    return render_template("monitor/projects.html", rows=rows)


@bp.get("/projects/<slug>")
@login_required
def project(slug: str):
    """Show a project: counts, its champion's held-out metrics, and where to go next."""
    project = project_or_404(slug)
    champion = champion_version(project.id)
    champion_run = (
        db.session.get(RetrainRun, champion.run_id) if champion and champion.run_id else None
    )
    last_run = db.session.scalar(
        select(RetrainRun)
        .where(RetrainRun.project_id == project.id)
        .order_by(RetrainRun.id.desc())
        .limit(1)
    )
    versions = db.session.scalar(
        select(func.count(ModelVersion.id)).where(ModelVersion.project_id == project.id)
    )
    every = int(project.setting("retrain_every") or 0)
    until_retrain = (
        max(every - (project.label_events - project.label_events_at_trigger), 0) if every else None
    )
    return render_template(
        "monitor/project.html",
        project=project,
        counts=pool.counts(project),
        champion=champion,
        champion_run=champion_run,
        last_run=last_run,
        versions=versions,
        until_retrain=until_retrain,
    )
