"""Sessions end for real: at logout, on a password change, when a user is disabled; and
remember-me is opt-in and tied to the same session token."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from tests.factories import make_project, make_user
from webapp.auth import manage
from webapp.extensions import db
from webapp.models import User

PASSWORD = "secret-pass"


def log_in(client, email="expert@example.com", password=PASSWORD, remember=False):
    """Log in through the form; return the response."""
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    form = {"email": email, "password": password, "csrf_token": token}
    if remember:
        form["remember"] = "on"
    return client.post("/login", data=form)


def cookie(client, name: str) -> str | None:
    """The value of a cookie the client holds."""
    found = client.get_cookie(name)
    return found.value if found else None


def csrf(client) -> str:
    """The session's CSRF token."""
    with client.session_transaction() as sess:
        return sess.get("csrf", "")


def signed_in(client) -> bool:
    """Whether the client's cookies open the project list."""
    return client.get("/projects").status_code == 200


@pytest.fixture
def user(app):
    """A project and a user (a member of it)."""
    make_project()
    return make_user()


def test_a_session_cookie_copied_before_logout_no_longer_works(app, user):
    browser = app.test_client()
    assert log_in(browser).status_code == 302
    copied = cookie(browser, "session")
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert signed_in(thief)

    browser.post("/logout", data={"csrf_token": csrf(browser)})
    assert not signed_in(browser)
    assert not signed_in(thief), "a copied session cookie outlived the logout"


def test_a_password_change_ends_other_sessions_and_keeps_this_one(app, user):
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    assert signed_in(phone)
    response = laptop.post(
        "/account/password",
        data={
            "csrf_token": csrf(laptop),
            "current": PASSWORD,
            "new": "another-pass",
            "confirm": "another-pass",
        },
    )
    assert response.status_code == 302, response.text
    assert signed_in(laptop)
    assert not signed_in(phone)
    assert log_in(app.test_client(), password=PASSWORD).status_code == 400
    assert log_in(app.test_client(), password="another-pass").status_code == 302


def test_a_wrong_current_password_changes_nothing(app, user, client):
    log_in(client)
    response = client.post(
        "/account/password",
        data={"csrf_token": csrf(client), "current": "nope", "new": "x" * 9, "confirm": "x" * 9},
    )
    assert response.status_code == 400
    assert "current password is not right" in response.text
    db.session.expire_all()
    assert db.session.get(User, user.id).check_password(PASSWORD)


def test_remember_me_is_opt_in(app, user):
    plain = app.test_client()
    log_in(plain)
    assert cookie(plain, "remember_token") is None

    remembered = app.test_client()
    log_in(remembered, remember=True)
    token = cookie(remembered, "remember_token")
    assert token is not None
    # The browser closed: only the remember cookie is left, and it logs the user back in.
    fresh = app.test_client()
    fresh.set_cookie("remember_token", token)
    assert signed_in(fresh)


def test_the_remember_cookie_dies_with_a_password_change(app, user):
    remembered = app.test_client()
    log_in(remembered, remember=True)
    token = cookie(remembered, "remember_token")
    manage.set_password(db.session.get(User, user.id), "changed-pass", "test")
    db.session.commit()
    fresh = app.test_client()
    fresh.set_cookie("remember_token", token)
    assert not signed_in(fresh)


def test_the_remember_cookie_dies_at_logout(app, user):
    remembered = app.test_client()
    log_in(remembered, remember=True)
    token = cookie(remembered, "remember_token")
    remembered.post("/logout", data={"csrf_token": csrf(remembered)})
    fresh = app.test_client()
    fresh.set_cookie("remember_token", token)
    assert not signed_in(fresh)


def test_a_disabled_user_is_logged_out_and_cannot_log_in(app, user):
    browser = app.test_client()
    log_in(browser)
    manage.disable_user(db.session.get(User, user.id), "test")
    db.session.commit()
    assert not signed_in(browser)
    response = log_in(app.test_client())
    assert response.status_code == 400
    assert "Wrong email or password." in response.text
    # Enabling them again lets them log in; the old session stays dead.
    manage.enable_user(db.session.get(User, user.id), "test")
    db.session.commit()
    assert not signed_in(browser)
    assert log_in(app.test_client()).status_code == 302


def test_session_and_remember_cookies_are_httponly_and_samesite_lax(app, user, client):
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    response = client.post(
        "/login",
        data={
            "email": "expert@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "remember": "on",
        },
    )
    set_cookies = response.headers.getlist("Set-Cookie")
    names = {}
    for header in set_cookies:
        parsed = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            names[name] = morsel
    assert {"session", "remember_token"} <= set(names)
    for name in ("session", "remember_token"):
        assert names[name]["httponly"], name
        assert names[name]["samesite"] == "Lax", name
        assert not names[name]["secure"], "Secure is off unless CORRIGO_SECURE_COOKIES says so"


def test_secure_cookies_by_configuration(database_url, redis_url, monkeypatch):
    monkeypatch.setenv("CORRIGO_SECURE_COOKIES", "1")
    from webapp import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
        }
    )
    with app.app_context():
        client = app.test_client()
        response = client.get("/login", base_url="https://corrigo.example")
        header = response.headers["Set-Cookie"]
        assert "Secure" in header and "SameSite=Lax" in header and "HttpOnly" in header
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        db.session.remove()
        db.engine.dispose()
