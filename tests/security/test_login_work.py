"""User enumeration by timing: a login does the same work whether or not the email exists.
(How long each takes is measured by bench/login_timing.py, not here.)"""

from __future__ import annotations

import pytest
from werkzeug import security

from tests.factories import make_user
from webapp.auth import routes

PASSWORD = "secret-pass"


@pytest.fixture
def hashes(monkeypatch):
    """Record each password-hash check the login view makes (the real check still runs)."""
    seen: list[str] = []

    def counting(pwhash: str, password: str) -> bool:
        """Count the check, then make it for real."""
        seen.append(pwhash.split("$", 1)[0])
        return security.check_password_hash(pwhash, password)

    monkeypatch.setattr(routes, "check_password_hash", counting)
    return seen


@pytest.mark.parametrize(
    "email,password",
    [
        ("expert@example.com", "wrong-password"),
        ("nobody@example.com", "wrong-password"),
        ("expert@example.com", PASSWORD),
    ],
)
def test_one_hash_of_the_same_cost_whatever_the_email(app, auth, hashes, email, password):
    make_user()
    auth.login(email, password)
    real = make_user("probe@example.com", PASSWORD).password_hash.split("$", 1)[0]
    assert hashes == [real], "the login view must check one hash with the users' parameters"


def test_a_disabled_user_costs_the_same_too(app, auth, hashes):
    from webapp.auth import manage
    from webapp.extensions import db

    user = make_user()
    manage.disable_user(user, "test")
    db.session.commit()
    response = auth.login("expert@example.com", PASSWORD)
    assert response.status_code == 400
    assert len(hashes) == 1
