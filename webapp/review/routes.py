"""Views: a project's agreement page (how well its experts agree with each other and with the
final labels), for the roles that see its monitoring."""

from __future__ import annotations

import re

from flask import render_template
from sqlalchemy import select

from ..auth.routes import role_required
from ..enums import Role
from ..extensions import db
from ..models import User
from ..monitor.routes import project_or_404
from . import bp
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
