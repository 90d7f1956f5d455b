"""Login, logout and password changes for people using the browser, and the CSRF check.

Sessions end for real: the login cookie carries the user's session token (see `User.get_id`),
which logout, a password change and disabling the user replace.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from urllib.parse import urlsplit

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..enums import Role
from ..extensions import db
from ..models import ROLES, User
from . import bp, manage
from .audit import web_actor
from .ratelimit import limit_login

MAX_EMAIL = 254


@functools.cache
def dummy_hash() -> str:
    """A hash checked when the email is unknown, so it costs what a wrong password costs."""
    return generate_password_hash("corrigo-dummy-password")


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
def forget_loaded_user():
    """Load the user afresh from this request's cookies.

    Flask-Login caches the user on `g`, which lives as long as the app context; where one app
    context spans many requests (a test, a script) a user must not leak from one to the next.
    """
    g.pop("_login_user", None)


@bp.before_app_request
def check_csrf():
    """Refuse a browser POST without the session's CSRF token (the API uses bearer keys)."""
    if request.method != "POST" or request.path.startswith("/api/"):
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    # Bytes: compare_digest refuses non-ASCII str, and a forged token must not answer 500.
    expected = session.get("csrf", "").encode()
    if not sent or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected):
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
    """Only follow `next` to a path on this site (no scheme, host, `//`, `\\` or control chars)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and target.isprintable()
        and "\\" not in target
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("monitor.projects")


def _bad_email(email: str) -> bool:
    """Whether the submitted email cannot be anyone's (too long, or with control characters)."""
    return len(email) > MAX_EMAIL or not email.isprintable()


@bp.route("/login", methods=["GET", "POST"])
@limit_login[0]
@limit_login[1]
def login():
    """Show the login form, or log the user in (remember-me only when asked for).

    Failed attempts are rate-limited per address and per email (see `ratelimit`).
    """
    error = None
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        if not email or not password:
            error = "Enter your email and password."
        elif _bad_email(email):
            email = ""
            error = "Wrong email or password."
        else:
            user = db.session.scalar(select(User).where(User.email == email))
            # Hash once whatever the email, so timing tells nobody which emails exist.
            good = check_password_hash(user.password_hash if user else dummy_hash(), password)
            if user is None or not good or not user.is_active:
                error = "Wrong email or password."
            else:
                # Nothing from before the login carries over but the form token.
                csrf = session.get("csrf")
                session.clear()
                if csrf:
                    session["csrf"] = csrf
                login_user(user, remember=request.form.get("remember") == "on")
                return redirect(_safe_next(request.args.get("next")))
    status = 400 if error else 200
    return render_template("auth/login.html", error=error, email=email), status


@bp.post("/logout")
def logout():
    """Log out: every session and remember-me cookie of the user ends, here and elsewhere."""
    if current_user.is_authenticated:
        current_user.end_sessions()
        db.session.commit()
    logout_user()
    session.clear()
    flash("Logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():
    """Change one's own password; every other session of the user ends, this one goes on."""
    error = None
    if request.method == "POST":
        current = request.form.get("current", "")
        new = request.form.get("new", "")
        if not current_user.check_password(current):
            error = "Your current password is not right."
        elif new != request.form.get("confirm", ""):
            error = "The new password and its confirmation differ."
        else:
            try:
                manage.set_password(current_user, new, web_actor())
            except ValueError as exc:
                error = f"Not changed: {exc}."
            else:
                db.session.commit()
                login_user(current_user._get_current_object())
                flash("Password changed; your other sessions have ended.")
                return redirect(url_for("monitor.projects"))
    status = 400 if error else 200
    return render_template("auth/password.html", error=error), status


def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the user whose id *and* current session token the cookie carries."""
    uid, _, token = (user_id or "").partition(":")
    if not uid.isdigit() or not token or len(uid) > 18:
        return None
    user = db.session.get(User, int(uid))
    if user is None or not user.is_active:
        return None
    if not hmac.compare_digest(token.encode(), user.session_token.encode()):
        return None
    return user
