"""Views: a project's agreement page (how well its experts agree with each other and with the
final labels) and the reviewers' queue (disagreements and suspect labels), for the roles that
see its monitoring."""

from __future__ import annotations

import re

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import serving
from ..auth.routes import role_required
from ..enums import Role
from ..errors import ValidationError
from ..extensions import db
from ..models import Item, User
from ..monitor.routes import project_or_404
from . import bp, decide, suspects
from .agreement import project_agreement
from .chart import expert_plot


def emails(annotators) -> dict[str, str]:
    """The people among these annotator identities (`user:<id>`), by email: one query. An API
    key's identity (`key:<id>`) stays as it is."""
    ids = {int(a[5:]) for a in annotators if re.fullmatch(r"user:\d{1,18}", a)}
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.email).where(User.id.in_(ids))).all()
    return {f"user:{uid}": email for uid, email in rows}


@bp.get("/projects/<slug>/agreement")
@role_required(Role.REVIEWER, Role.ENGINEER)
def agreement(slug: str):
    """Show how well the project's experts agree: alpha, each expert against the final labels
    (a table and a dot plot with intervals), and Cohen's kappa per pair."""
    project = project_or_404(slug)
    figures = project_agreement(project)
    names = emails(e["annotator"] for e in figures["experts"])
    return render_template(
        "review/agreement.html",
        project=project,
        figures=figures,
        names=names,
        plot=expert_plot(figures["experts"], names),
    )


@bp.get("/projects/<slug>/review")
@role_required(Role.REVIEWER, Role.ENGINEER)
def queue(slug: str):
    """Show the oldest item waiting for a reviewer: every answer side by side with who gave it,
    the model's suggestion and the end users' feedback (`?after=<id>` passes one)."""
    project = project_or_404(slug)
    after = request.args.get("after", type=int)
    case = decide.next_case(project, after=after)
    suggestion = None
    if case is not None:
        try:
            suggested = serving.suggest(project, case.item.data)
        except ValueError:
            suggested = None
        if suggested is not None:
            suggestion = serving.ranked(*suggested)
    names = emails(a[0] for a in case.answers) if case else {}
    return render_template(
        "review/queue.html",
        project=project,
        case=case,
        suggestion=suggestion,
        names=names,
        waiting=decide.waiting(project),
        outcomes=decide.suspect_outcomes(project),
        hunt=suspects.latest(project),
    )


@bp.post("/projects/<slug>/review/<int:item_id>")
@role_required(Role.REVIEWER, Role.ENGINEER)
def resolve(slug: str, item_id: int):
    """Record the reviewer's final label and reason for an item, then show the next one."""
    project = project_or_404(slug)
    item = db.session.get(Item, item_id) if item_id < 2**63 else None
    if item is None or item.project_id != project.id:
        abort(404, f"There is no item #{item_id} in {project.name}.")
    label = request.form.get("label", "")
    try:
        decide.decide(project, item, current_user.annotator, label, request.form.get("reason"))
    except ValidationError as error:
        db.session.rollback()
        problem = "; ".join(f"{k}: {v}" for k, v in (error.errors or {}).items()) or str(error)
        flash(f"#{item_id} is not decided: {problem}.", "error")
        return redirect(url_for("review.queue", slug=project.slug))
    except decide.Gone as gone:
        db.session.rollback()
        flash(str(gone), "warning")
        return redirect(url_for("review.queue", slug=project.slug))
    db.session.commit()
    flash(f"#{item_id} is now {label}.", "info")
    return redirect(url_for("review.queue", slug=project.slug))


@bp.post("/projects/<slug>/review/suspects")
@role_required(Role.REVIEWER, Role.ENGINEER)
def hunt(slug: str):
    """Queue a search for likely label errors (confident learning) among the training labels."""
    project = project_or_404(slug)
    suspects.request(project)
    db.session.commit()
    flash(
        "Looking for likely label errors among the training labels: flagged items appear here "
        "as suspect when the search ends.",
        "info",
    )
    return redirect(url_for("review.queue", slug=project.slug))
