"""Login and logout for people using the browser, and the CSRF check for their forms."""

from __future__ import annotations

import functools
import hmac
import secrets
from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from ..enums import Role
from ..extensions import db
from ..models import ROLES, User
from . import bp


def csrf_token() -> str:
    """The session's CSRF token, created on first use (forms and htmx send it back)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


@bp.app_context_processor
def inject_csrf():
    """Make `csrf_token()` available in every template."""
    return {"csrf_token": csrf_token}


@bp.before_app_request
def check_csrf():
    """Refuse a browser POST without the session's CSRF token (the API uses bearer keys)."""
    if request.method != "POST" or request.path.startswith("/api/"):
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent, session.get("csrf", "")) or not sent:
        abort(400, "The form expired or was sent from elsewhere; reload the page and try again.")


def role_required(*roles: str):
    """Decorate a view: the logged-in user needs one of `roles` (admins pass every check)."""
    for role in roles:
        assert role in ROLES, role

    def decorator(view):
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role != Role.ADMIN and current_user.role not in roles:
                abort(403, "Your role does not allow this page.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _safe_next(target: str | None) -> str:
    """Only follow `next` to a path on this site."""
    if target and not urlsplit(target).netloc and target.startswith("/"):
        return target
    return url_for("monitor.projects")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form, or log the user in."""
    error = None
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        user = db.session.scalar(select(User).where(User.email == email))
        if not email or not password:
            error = "Enter your email and password."
        elif user is None or not user.check_password(password):
            error = "Wrong email or password."
        else:
            login_user(user, remember=True)
            return redirect(_safe_next(request.args.get("next")))
    status = 400 if error else 200
    return render_template("auth/login.html", error=error, email=email), status


@bp.post("/logout")
def logout():
    """Log out and return to the login page."""
    logout_user()
    flash("Logged out.")
    return redirect(url_for("auth.login"))
