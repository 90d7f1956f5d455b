"""Brute force meets 429: failed logins per address and per email, API requests per key.
The counters live in the real Redis the app uses."""

from __future__ import annotations

import redis

from tests.api.helpers import assert_problem
from tests.factories import make_key, make_project, make_user

PASSWORD = "secret-pass"


def attempt(client, password, email="expert@example.com", addr="127.0.0.1"):
    """One login attempt through the form, from address `addr`."""
    client.get("/login", environ_base={"REMOTE_ADDR": addr})
    with client.session_transaction() as sess:
        token = sess["csrf"]
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": addr},
    )


def test_fifty_wrong_passwords_are_not_all_answered(app, client):
    make_user()
    statuses = [attempt(client, f"guess-{i}").status_code for i in range(50)]
    assert statuses[:10] == [400] * 10
    assert set(statuses[10:]) == {429}
    # The right password right after is refused too, with a wait the client can honour.
    response = attempt(client, PASSWORD)
    assert response.status_code == 429
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert f"Wait {wait} seconds" in response.text
    assert client.get("/projects").status_code == 302


def test_successful_logins_do_not_use_up_the_budget(app, client):
    make_user()
    for _ in range(15):
        assert attempt(client, PASSWORD).status_code == 302
        client.get("/login")
    assert attempt(client, "wrong").status_code == 400


def test_one_email_is_protected_from_many_addresses(app, client):
    make_user()
    statuses = [attempt(client, "wrong", addr=f"10.0.0.{i}").status_code for i in range(12)]
    assert statuses[:10] == [400] * 10
    assert statuses[10:] == [429, 429]
    # Another account from a fresh address is unaffected.
    make_user("other@example.com")
    assert attempt(client, PASSWORD, "other@example.com", addr="10.0.1.1").status_code == 302


def test_the_limits_are_counted_in_the_apps_redis(app, client):
    make_user()
    attempt(client, "wrong")
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    keys = conn.keys("corrigo-limits*")
    conn.close()
    assert keys, "no rate-limit counter in Redis"


def test_the_login_limit_is_configurable(app, client):
    make_user()
    app.config["RATELIMIT_LOGIN"] = "2 per minute"
    assert [attempt(client, "wrong").status_code for _ in range(3)] == [400, 400, 429]


def test_api_requests_are_limited_per_key(app, client):
    project = make_project()
    key = make_key(project)
    other = make_key(project)
    app.config["RATELIMIT_API"] = "3 per minute"
    url = "/api/v1/projects/news/models"
    auth = {"Authorization": f"Bearer {key}"}
    assert [client.get(url, headers=auth).status_code for _ in range(3)] == [200] * 3
    response = client.get(url, headers=auth)
    assert_problem(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "3 per 1 minute" in response.json["detail"]
    assert client.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 200
