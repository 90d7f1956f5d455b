"""Views: the project list and a project's page with its champion's held-out metrics; a
project's monitoring (its windows' metrics over time, drift, recent alerts), its alerts with
acknowledging, and the firing-alerts banner on its pages."""

from __future__ import annotations

from datetime import datetime

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from .. import pool
from ..alerts import acknowledge as acknowledge_alert
from ..auth.manage import visible_projects
from ..auth.routes import role_required
from ..enums import AlertState, Role
from ..extensions import db
from ..models import Alert, ModelVersion, Project, RetrainRun
from ..training import champion_version
from . import board, bp

RUN_ROLES = (Role.REVIEWER, Role.ENGINEER, Role.ADMIN)
ALERT_PAGE = 100  # alerts per page of the alerts list (older ones page by id)


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


def firing_alerts(project: Project) -> int:
    """How many of the project's alerts fire unacknowledged (base.html's banner)."""
    return board.firing_count(project.id)


@bp.app_context_processor
def inject_roles():
    """Make the role checks available in every template (links shown only when they work)."""
    return {
        "can_see_runs": can_see_runs,
        "can_retrain": can_retrain,
        # Acknowledging an alert takes the same roles as retraining: engineers and admins.
        "can_acknowledge": can_retrain,
        "firing_alerts": firing_alerts,
    }


def _partial() -> bool:
    """Whether htmx asked for a part of the page (not a history restore, which needs it all)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


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


@bp.app_template_filter("period")
def period(total: int | float | None) -> str:
    """Format a whole length of time in its largest unit (`1 day`, `6 h`, `15 min`), else as
    `seconds` does."""
    if not total:
        return seconds(total)
    for unit, name in ((86400, "day"), (3600, "h"), (60, "min")):
        if total % unit == 0:
            count = int(total // unit)
            return f"{count} {name}{'s' if name == 'day' and count != 1 else ''}"
    return seconds(total)


@bp.app_template_filter("span")
def span(start: datetime | None, end: datetime | None) -> str:
    """Format a window as `2026-11-09 00:00 – 11-10 00:00 UTC` (the end as short as it can)."""
    if start is None or end is None:
        return "—"
    short = "%H:%M" if start.date() == end.date() else "%m-%d %H:%M"
    return f"{start:%Y-%m-%d %H:%M} – {end.strftime(short)} UTC"


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


@bp.get("/projects/<slug>/monitor")
@role_required(Role.REVIEWER, Role.ENGINEER)
def monitor(slug: str):
    """Show a model's monitoring windows as plots with intervals and alert thresholds, its drift
    per feature, and the recent alerts; htmx swaps the plots when the model or range changes."""
    project = project_or_404(slug)
    count = request.args.get("range", type=int)
    if count not in board.RANGES:
        count = board.DEFAULT_RANGE
    context = board.board(project, request.args.get("model") or None, count)
    context["has_predictions"] = bool(context["keys"]) or board.has_predictions(project)
    template = "monitor/_monitor-panels.html" if _partial() else "monitor/monitor.html"
    response = make_response(render_template(template, project=project, **context))
    response.vary.add("HX-Request")
    return response


@bp.get("/projects/<slug>/alerts")
@role_required(Role.REVIEWER, Role.ENGINEER)
def alerts(slug: str):
    """List the project's alerts, newest first (filtered by state, paged by id), and its rules."""
    project = project_or_404(slug)
    state = request.args.get("state")
    state = state if state in tuple(AlertState) else None
    before = request.args.get("before", type=int)
    query = select(Alert).where(Alert.project_id == project.id)
    if state:
        query = query.where(Alert.state == state)
    if before is not None and 0 < before < 2**31:
        query = query.where(Alert.id < before)
    rows = db.session.scalars(query.order_by(Alert.id.desc()).limit(ALERT_PAGE + 1)).all()
    return render_template(
        "monitor/alerts.html",
        project=project,
        alerts=rows[:ALERT_PAGE],
        who=board.who(rows[:ALERT_PAGE]),
        older=rows[ALERT_PAGE - 1].id if len(rows) > ALERT_PAGE else None,
        state=state,
        states=tuple(AlertState),
        counts=board.state_counts(project),
        rules=board.rules_of(project),
        before=before,
    )


@bp.post("/projects/<slug>/alerts/<int:alert_id>/acknowledge")
@role_required(Role.ENGINEER)
def acknowledge(slug: str, alert_id: int):
    """Mark a firing alert as acknowledged by the user (it stays open until its rule resolves
    it); say so, and do nothing, when it was acknowledged or resolved already."""
    project = project_or_404(slug)
    alert = db.session.get(Alert, alert_id) if alert_id < 2**31 else None
    if alert is None or alert.project_id != project.id:
        abort(404, f"There is no alert #{alert_id} in {project.name}.")
    was = alert.state
    # Recorded as annotations record people (the API records `key:<id>`); shown as the email.
    acknowledge_alert(alert, current_user.annotator)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    who = board.who([alert])
    if was == AlertState.FIRING:
        notice, level = f"Alert #{alert.id} acknowledged; it stays open until it resolves.", "info"
    elif was == AlertState.ACKNOWLEDGED:
        by = who.get(alert.acknowledged_by, alert.acknowledged_by)
        notice, level = f"Alert #{alert.id} was already acknowledged by {by}.", "warning"
    else:
        notice, level = f"Alert #{alert.id} is resolved already: nothing to acknowledge.", "warning"
    if not _partial():
        flash(notice, level)
        return redirect(url_for("monitor.alerts", slug=project.slug))
    # The row, and the banner's new count out of band (htmx puts it in place by its id).
    return render_template(
        "monitor/_alert-row.html",
        project=project,
        alert=alert,
        who=who,
        notice=notice,
        level=level,
    ) + render_template("monitor/_alert-banner.html", project=project, oob=True)
