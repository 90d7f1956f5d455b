"""Logging in from the browser: redirects, wrong passwords, and the CSRF check."""

import pytest

from tests.factories import make_items, make_project, make_user
from webapp.extensions import db
from webapp.models import Annotation


@pytest.mark.parametrize(
    "path", ["/projects", "/projects/news", "/projects/news/annotate", "/projects/news/runs"]
)
def test_pages_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_login_lands_on_the_project_list(client, auth):
    make_project(name="Newsroom")
    make_user()
    response = auth.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/projects"
    page = client.get("/projects").text
    assert "Newsroom" in page
    assert "expert@example.com" in page


def test_login_follows_next_only_on_this_site(client, auth):
    make_user()
    client.get("/login")
    token = auth.csrf()
    form = {"email": "expert@example.com", "password": "secret-pass", "csrf_token": token}
    response = client.post("/login?next=https://evil.example/x", data=form)
    assert response.headers["Location"] == "/projects"


def test_wrong_password_rerenders_the_form_with_a_message(client, auth):
    make_user()
    response = auth.login("expert@example.com", "not-the-password")
    assert response.status_code == 400
    assert "Wrong email or password." in response.text
    assert 'value="expert@example.com"' in response.text
    assert client.get("/projects").status_code == 302


def test_a_post_without_the_csrf_token_is_refused(client, auth):
    make_user()
    client.get("/login")
    response = client.post(
        "/login", data={"email": "expert@example.com", "password": "secret-pass"}
    )
    assert response.status_code == 400
    assert "reload the page" in response.text
    assert client.get("/projects").status_code == 302


def test_a_label_without_the_csrf_token_records_nothing(client, login):
    project = make_project()
    (item_id,) = make_items(project, 1)
    login()
    client.get("/projects/news/annotate")
    response = client.post(
        f"/projects/news/annotate/{item_id}",
        data={"label": "sport"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert db.session.query(Annotation).count() == 0


def test_logout_ends_the_session(client, login, auth):
    login()
    response = client.post("/logout", data={"csrf_token": auth.csrf()})
    assert response.status_code == 302
    assert client.get("/projects").status_code == 302


def test_remember_me_is_a_checkbox_left_unticked(client):
    page = client.get("/login").text
    assert '<input type="checkbox" name="remember">' in page
    assert "Keep me logged in" in page


def test_the_account_page_changes_the_password(client, login, auth):
    user = login()
    response = client.post(
        "/account/password",
        data={
            "csrf_token": auth.csrf(),
            "current": "secret-pass",
            "new": "short",
            "confirm": "short",
        },
    )
    assert response.status_code == 400
    assert "at least 8 characters" in response.text
    db.session.expire_all()
    assert db.session.get(type(user), user.id).check_password("secret-pass")
