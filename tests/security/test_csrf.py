"""CSRF probes: every state-changing form of the web side refuses a POST without the session's
own token (missing, wrong, or another session's), and changes nothing."""

from __future__ import annotations

import pytest

from tests.security.test_access_matrix import OPS, _contexts, _logged_in, csrf_of

POSTS = [op for op in OPS if op.method == "POST"]


@pytest.mark.parametrize("probe", ["missing", "wrong", "another session's", "header of another"])
def test_every_form_refuses_a_foreign_or_missing_token(app, team, probe):
    admin = _logged_in(app, "admin@news.example")
    other = _logged_in(app, "engineer@news.example")
    stolen = csrf_of(other)
    for op, ctx in zip(POSTS, _contexts(team, len(POSTS)), strict=True):
        data = op.data(ctx)
        headers = {}
        if probe == "wrong":
            data["csrf_token"] = "not-the-token"
        elif probe == "another session's":
            data["csrf_token"] = stolen
        elif probe == "header of another":
            headers = {"X-CSRF-Token": stolen, "HX-Request": "true"}
        response = admin.post(op.path(ctx), data=data, headers=headers)
        assert response.status_code == 400, f"{op.endpoint}: {response.status_code}"
        assert "reload the page" in response.text
        if op.effect is not None:
            assert not op.effect(ctx), f"{op.endpoint} changed something without a token"


def test_logout_needs_the_token(app, team):
    client = _logged_in(app, "annotator@news.example")
    assert client.post("/logout").status_code == 400
    assert client.get("/projects").status_code == 200


def test_the_same_forms_work_with_the_token(app, team):
    """The probes above can fail: with the right token the admin's POSTs go through."""
    admin = _logged_in(app, "admin@news.example")
    for op, ctx in zip(POSTS, _contexts(team, len(POSTS)), strict=True):
        response = admin.post(op.path(ctx), data={**op.data(ctx), "csrf_token": csrf_of(admin)})
        assert response.status_code < 400, op.endpoint


@pytest.mark.parametrize("token", ["é", "\x00", "x" * 10_000])
def test_an_odd_token_is_refused_not_a_500(app, team, token):
    client = _logged_in(app, "annotator@news.example")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 400
