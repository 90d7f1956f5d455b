"""With Redis unreachable the limits fall back to memory: logins and the API keep answering,
and the limit still holds."""

from __future__ import annotations

import pytest

from tests.factories import make_key, make_project, make_user
from webapp import create_app
from webapp.extensions import db

PASSWORD = "secret-pass"


@pytest.fixture
def app_without_redis(database_url, redis_url):
    """The test app, but pointing at a Redis port nobody listens on."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "RATELIMIT_LOGIN": "3 per minute",
        }
    )
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_logins_and_the_api_answer_while_redis_is_down(app_without_redis):
    app = app_without_redis
    key = make_key(make_project())
    make_user()
    client = app.test_client()
    api = client.get("/api/v1/projects/news/models", headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 200
    statuses = []
    for password in ["a", "b", "c", "d", PASSWORD]:
        client.get("/login")
        with client.session_transaction() as sess:
            token = sess["csrf"]
        statuses.append(
            client.post(
                "/login",
                data={"email": "expert@example.com", "password": password, "csrf_token": token},
            ).status_code
        )
    assert statuses == [400, 400, 400, 429, 429]
