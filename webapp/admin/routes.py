"""Views for admins: manage users and API keys; every change lands in the audit log."""

from __future__ import annotations

import secrets

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..auth import audit, manage
from ..auth.routes import role_required
from ..extensions import db
from ..models import ApiKey, Membership, Project, User
from . import bp

MAX_ID = 2**31


def _row_or_404(model, row_id: int, what: str):
    """The row with this id, or a 404 page (ids past INTEGER's range included)."""
    row = db.session.get(model, row_id) if row_id < MAX_ID else None
    if row is None:
        abort(404, f"There is no {what} #{row_id}.")
    return row


@bp.get("/users")
@role_required("admin")
def users():
    """List every user with their state and project memberships."""
    people = db.session.scalars(select(User).order_by(User.email)).all()
    projects = db.session.scalars(select(Project).order_by(Project.slug)).all()
    by_id = {p.id: p for p in projects}
    member_of: dict[int, list[Project]] = {user.id: [] for user in people}
    for row in db.session.scalars(select(Membership)):
        member_of[row.user_id].append(by_id[row.project_id])
    return render_template(
        "admin/users.html", people=people, projects=projects, member_of=member_of
    )


@bp.post("/users/<int:user_id>/disable")
@role_required("admin")
def disable(user_id: int):
    """Disable a user: no more logins, and their sessions end now."""
    user = _row_or_404(User, user_id, "user")
    if user.id == current_user.id:
        flash("You cannot disable yourself; ask another admin.", "error")
        return redirect(url_for("admin.users"))
    manage.disable_user(user, audit.web_actor())
    db.session.commit()
    flash(f"Disabled {user.email}; their sessions have ended.")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/enable")
@role_required("admin")
def enable(user_id: int):
    """Let a disabled user log in again."""
    user = _row_or_404(User, user_id, "user")
    manage.enable_user(user, audit.web_actor())
    db.session.commit()
    flash(f"Enabled {user.email}.")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/password")
@role_required("admin")
def reset_password(user_id: int):
    """Give a user a new generated password, shown once on this page; their sessions end."""
    user = _row_or_404(User, user_id, "user")
    password = secrets.token_urlsafe(12)
    manage.set_password(user, password, audit.web_actor())
    db.session.commit()
    if user.id == current_user.id:
        from flask_login import login_user

        login_user(user)
    return render_template(
        "admin/secret.html", what=f"New password for {user.email}", secret=password
    )


@bp.post("/users/<int:user_id>/members")
@role_required("admin")
def membership(user_id: int):
    """Add the user to a project, or take them out of it."""
    user = _row_or_404(User, user_id, "user")
    slug = request.form.get("project", "")
    project = db.session.scalar(
        select(Project).where(Project.slug == slug[:64].replace("\x00", ""))
    )
    if project is None:
        abort(400, "Pick a project.")
    if request.form.get("action") == "remove":
        changed = manage.remove_member(user, project, audit.web_actor())
        message = f"{user.email} is no longer a member of {project.slug}."
    else:
        changed = manage.add_member(user, project, audit.web_actor())
        message = f"{user.email} is now a member of {project.slug}."
    db.session.commit()
    flash(message if changed else "Nothing to change.")
    return redirect(url_for("admin.users"))


@bp.get("/keys")
@role_required("admin")
def keys():
    """List every API key, newest first, with its project, scopes and state."""
    return render_template("admin/keys.html", keys=manage.keys())


@bp.post("/keys/<int:key_id>/revoke")
@role_required("admin")
def revoke(key_id: int):
    """Revoke an API key; requests with it answer 401 from now on."""
    key = _row_or_404(ApiKey, key_id, "API key")
    changed = manage.revoke_key(key, audit.web_actor())
    db.session.commit()
    flash(
        f"Revoked API key {key.id} ({key.prefix})." if changed else "That key was revoked already."
    )
    return redirect(url_for("admin.keys"))


@bp.post("/keys/<int:key_id>/rotate")
@role_required("admin")
def rotate(key_id: int):
    """Revoke an API key and issue its successor, whose plaintext is shown once."""
    key = _row_or_404(ApiKey, key_id, "API key")
    try:
        new, plaintext = manage.rotate_key(key, audit.web_actor())
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.keys"))
    db.session.commit()
    what = f"API key {new.id} replaces key {key.id} of {key.project.slug}"
    return render_template("admin/secret.html", what=what, secret=plaintext)


@bp.get("/audit")
@role_required("admin")
def audit_log():
    """The audit log, newest first."""
    return render_template("admin/audit.html", entries=audit.recent(500))
