"""Security headers on pages, partials, API answers and errors alike."""

from __future__ import annotations

import pytest

from tests.factories import make_key, make_project, make_user

PASSWORD = "secret-pass"


@pytest.fixture
def signed_in(client, auth):
    """An engineer's logged-in client, with a project `news`."""
    make_project()
    make_user("eng@example.com", PASSWORD, "engineer")
    auth.login("eng@example.com", PASSWORD)
    return client


@pytest.mark.parametrize(
    "path", ["/login", "/projects", "/projects/news/runs", "/projects/nope", "/static/corrigo.css"]
)
def test_pages_carry_the_security_headers(signed_in, path):
    response = signed_in.get(path)
    response.close()  # a static file is streamed
    csp = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["script-src"].startswith("'self' 'nonce-")
    assert "unsafe-inline" not in directives["script-src"]
    assert "unsafe-eval" not in directives["script-src"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_nonce_is_new_for_each_page_and_on_each_inline_script(signed_in):
    first = signed_in.get("/projects")
    second = signed_in.get("/projects")
    nonce = first.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert nonce not in second.headers["Content-Security-Policy"]
    scripts = first.text.count("<script")
    assert scripts >= 2  # htmx and the page's own
    assert first.text.count(f'nonce="{nonce}"') == scripts - 1  # all but htmx, which has a src


def test_api_answers_carry_them_too(client):
    key = make_key(make_project())
    response = client.get(
        "/api/v1/projects/news/models", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    problem = client.get("/api/v1/projects/news/models")
    assert problem.status_code == 401
    assert problem.headers["X-Frame-Options"] == "DENY"


def test_only_the_packaged_api_docs_may_run_inline_code(client):
    response = client.get("/api/docs")
    response.close()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in csp and "nonce" not in csp
    assert "frame-ancestors 'none'" in csp
    assert (
        "unsafe-inline"
        not in client.get("/login").headers["Content-Security-Policy"].split("style-src-attr")[0]
    )
