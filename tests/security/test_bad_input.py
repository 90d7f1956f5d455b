"""Input that used to answer 500 on the web side: NUL bytes, ids past the columns' range, CR/LF
in `next`. Each is a 4xx now (or a safe redirect), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from tests.factories import make_items, make_project, make_user, queue_retrain

PASSWORD = "secret-pass"


@pytest.fixture
def engineer(app, client, auth):
    """An engineer, member of `news` (one item, one run), logged in; returns the ids."""
    project = make_project()
    (item_id,) = make_items(project, 1)
    run = queue_retrain(project)
    make_user("eng@example.com", PASSWORD, "engineer")
    assert auth.login("eng@example.com", PASSWORD).status_code == 302
    return {"item": item_id, "run": run.id}


NUL_PATHS = [
    "/projects/ne%00ws",
    "/projects/%00/annotate",
    "/projects/news%00/runs",
    "/projects/news%00/runs/1",
]


@pytest.mark.parametrize("path", NUL_PATHS)
def test_a_nul_byte_in_a_slug_is_a_404(client, engineer, path):
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert "There is no project" in response.text


@pytest.mark.parametrize("action", ["", "/skip"])
def test_a_nul_byte_in_a_slug_of_a_post_is_a_404(client, auth, engineer, action):
    response = client.post(
        f"/projects/ne%00ws/annotate/{engineer['item']}{action}",
        data={"label": "sport", "csrf_token": auth.csrf()},
    )
    assert response.status_code == 404


def test_a_long_slug_is_a_404(client, engineer):
    assert client.get("/projects/" + "a" * 5000).status_code == 404


@pytest.mark.parametrize("run_id", [2**31 - 1, 2**31, 2**63, 2**64 + 5])
def test_run_ids_past_the_column_are_404(client, engineer, run_id):
    response = client.get(f"/projects/news/runs/{run_id}")
    assert response.status_code == 404, response.text
    assert f"#{run_id}" in response.text


@pytest.mark.parametrize("item_id", [2**63 - 1, 2**63, 2**64 + 5])
@pytest.mark.parametrize("action", ["", "/skip"])
def test_item_ids_past_bigint_are_404(client, auth, engineer, item_id, action):
    response = client.post(
        f"/projects/news/annotate/{item_id}{action}",
        data={"label": "sport", "csrf_token": auth.csrf()},
    )
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("path", ["/admin/users/{}/disable", "/admin/keys/{}/revoke"])
def test_admin_ids_past_the_column_are_404(client, auth, app, path):
    make_user("root@example.com", PASSWORD, "admin")
    auth.login("root@example.com", PASSWORD)
    response = client.post(path.format(2**31), data={"csrf_token": auth.csrf()})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "email",
    ["expert\x00@example.com", "\x00", "a" * 300 + "@example.com", "ex\npert@example.com"],
)
def test_bad_login_emails_are_a_400_before_any_lookup(client, auth, app, email):
    make_user()
    response = auth.login(email, PASSWORD)
    assert response.status_code == 400
    assert "Wrong email or password." in response.text


@pytest.mark.parametrize(
    "target",
    [
        "/projects\r\nSet-Cookie: x=1",
        "/projects\nLocation: https://evil.example",
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/projects\x00",
    ],
)
def test_next_never_leaves_the_site_nor_splits_headers(client, auth, app, target):
    make_user()
    client.get("/login")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": "expert@example.com", "password": PASSWORD, "csrf_token": auth.csrf()},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/projects"
    assert client.get_cookie("x") is None


def test_next_still_leads_to_a_page_of_this_site(client, auth, app):
    make_project()
    make_user()
    client.get("/login")
    response = client.post(
        "/login?next=/projects/news/annotate",
        data={"email": "expert@example.com", "password": PASSWORD, "csrf_token": auth.csrf()},
    )
    assert response.headers["Location"] == "/projects/news/annotate"
