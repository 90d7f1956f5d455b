"""Views: engineers exclude a bad item from the labeling page, list the excluded items of a
project, and restore them."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.routes import role_required
from ..enums import QueueReason, Role
from ..errors import ValidationError
from ..extensions import db
from ..models import MAX_EXCLUSION_REASON, Item, Project
from ..monitor.routes import project_or_404
from ..pool import exclusion
from . import bp
from .routes import _next, _render

# Ids arrive as unbounded path integers; past 64 bits no row can match (and SQLite overflows).
MAX_ROW_ID = 2**63 - 1
LIST_LIMIT = 200


def _item_or_404(project: Project, item_id: int) -> Item:
    """The project's item with this id, or a 404 page."""
    item = db.session.get(Item, item_id) if item_id <= MAX_ROW_ID else None
    if item is None or item.project_id != project.id:
        abort(404, f"There is no item #{item_id} in {project.name}.")
    return item


@bp.post("/projects/<slug>/annotate/<int:item_id>/exclude")
@role_required(Role.ENGINEER)
def exclude(slug: str, item_id: int):
    """Exclude an item from the queue, training and evaluation, then show the next item."""
    project = project_or_404(slug)
    item = _item_or_404(project, item_id)
    try:
        exclusion.exclude(item, current_user.annotator, request.form.get("reason", ""))
    except ValidationError as exc:
        db.session.rollback()
        error = f"Not excluded: the reason {exc.errors['reason']}."
        return _render(
            project, (item, item.lease_reason or QueueReason.AUDIT), error=error, status=422
        )
    db.session.commit()
    return _next(
        project,
        f"Excluded #{item.id}: it is out of the queue and the training data until restored.",
    )


def _list(project: Project, error: str | None = None, form: dict | None = None, status=200):
    """Render the excluded-items page, with the exclude-by-id form's error if any."""
    page = render_template(
        "annotate/excluded.html",
        project=project,
        items=exclusion.excluded_items(project, limit=LIST_LIMIT),
        total=exclusion.excluded_count(project),
        limit=LIST_LIMIT,
        max_reason=MAX_EXCLUSION_REASON,
        error=error,
        form=form or {},
    )
    return page, status


@bp.get("/projects/<slug>/excluded")
@role_required(Role.ENGINEER)
def excluded(slug: str):
    """List the project's excluded items, newest first, each with a Restore button."""
    return _list(project_or_404(slug))


@bp.post("/projects/<slug>/excluded")
@role_required(Role.ENGINEER)
def exclude_by_id(slug: str):
    """Exclude any item of the project by its id (a labeled one never reaches the queue)."""
    project = project_or_404(slug)
    form = {"item_id": request.form.get("item_id", ""), "reason": request.form.get("reason", "")}
    raw_id = form["item_id"].strip().lstrip("#")
    item = None
    if raw_id.isascii() and raw_id.isdigit() and int(raw_id) <= MAX_ROW_ID:
        item = db.session.get(Item, int(raw_id))
    if item is None or item.project_id != project.id:
        return _list(project, f"There is no item #{raw_id} in {project.name}.", form, 422)
    try:
        created = exclusion.exclude(item, current_user.annotator, form["reason"])
    except ValidationError as exc:
        db.session.rollback()
        return _list(project, f"Not excluded: the reason {exc.errors['reason']}.", form, 422)
    db.session.commit()
    if created:
        flash(f"Excluded #{item.id}: it is out of the queue and the training data until restored.")
    else:
        flash(f"#{item.id} was already excluded.")
    return redirect(url_for("annotate.excluded", slug=project.slug))


@bp.post("/projects/<slug>/excluded/<int:item_id>/restore")
@role_required(Role.ENGINEER)
def restore(slug: str, item_id: int):
    """Put an excluded item back in the queue and the training data."""
    project = project_or_404(slug)
    item = _item_or_404(project, item_id)
    if exclusion.restore(item):
        db.session.commit()
        flash(f"Restored #{item.id}: it is back in the queue and the training data.")
    else:
        flash(f"#{item.id} was not excluded; nothing changed.")
    return redirect(url_for("annotate.excluded", slug=project.slug))
