"""The model versions pages: who sees what, and the registry's buttons for engineers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import make_project, make_version
from tests.web.html import table, text
from webapp.extensions import db
from webapp.models import ModelEvent, ModelVersion

BUTTONS = ("Promote to champion", "Make challenger", "Reject", "Roll back to")


def statuses() -> dict[int, str]:
    db.session.expire_all()
    return dict(db.session.execute(select(ModelVersion.version, ModelVersion.status)).all())


@pytest.fixture
def versions(app):
    """`news` with v1 retired, v2 the champion and v3 a candidate with lineage."""
    project = make_project()
    make_version(project, 1, "retired")
    make_version(project, 2, "champion")
    make_version(
        project,
        3,
        params={"clf__C": 10.0},
        library_versions={"scikit-learn": "1.8.0"},
        heldout_size=40,
        heldout_digest="a" * 64,
        training_seconds=2.5,
    )
    return project


def test_annotators_get_403(client, login, auth, versions):
    login("annotator")
    assert client.get("/projects/news/models").status_code == 403
    assert client.get("/projects/news/models/3").status_code == 403
    form = {"csrf_token": auth.csrf(), "reason": "x"}
    assert client.post("/projects/news/models/3/promote", data=form).status_code == 403
    assert statuses()[3] == "candidate"


def test_reviewers_read_without_buttons(client, login, versions):
    login("reviewer")
    listing = client.get("/projects/news/models")
    assert listing.status_code == 200
    rows = table(listing.text, "list")
    assert [r[:2] for r in rows[1:]] == [["v3", "candidate"], ["v2", "champion"], ["v1", "retired"]]
    page = client.get("/projects/news/models/3").text
    seen = text(page)
    assert "Held-out digest " + "a" * 64 in seen and "Training time 2.5 s" in seen
    assert "clf__C 10.0" in seen and "scikit-learn 1.8.0" in seen
    assert table(page, "per-class")[1][0] == "sport"
    for button in BUTTONS:
        assert button not in seen
    assert "Roll back to" not in text(listing.text)


def test_engineer_promotes_and_rolls_back_with_a_reason(client, login, auth, versions):
    user = login("engineer")
    page = text(client.get("/projects/news/models/3").text)
    assert "Promote to champion" in page and "Make challenger" in page and "Reject" in page
    form = {"csrf_token": auth.csrf(), "reason": "better on sport"}
    response = client.post("/projects/news/models/3/promote", data=form)
    assert response.headers["Location"] == "/projects/news/models/3"
    shown = text(client.get(response.headers["Location"]).text)
    assert "v3 is the champion now" in shown
    assert f"promote v3 v2 user:{user.id} better on sport" in shown
    assert statuses() == {1: "retired", 2: "retired", 3: "champion"}

    listing = text(client.get("/projects/news/models").text)
    assert "Roll back to v2" in listing
    form = {"csrf_token": auth.csrf(), "reason": "v3 misroutes politics"}
    response = client.post("/projects/news/models/rollback", data=form)
    assert response.headers["Location"] == "/projects/news/models/2"
    assert "Rolled back: v2 is the champion again." in text(
        client.get("/projects/news/models/2").text
    )
    assert statuses() == {1: "retired", 2: "champion", 3: "retired"}
    event = db.session.scalars(select(ModelEvent).order_by(ModelEvent.id.desc())).first()
    assert (event.action, event.actor, event.reason) == (
        "rollback",
        f"user:{user.id}",
        "v3 misroutes politics",
    )


def test_a_conflict_or_a_missing_reason_is_flashed_and_changes_nothing(
    client, login, auth, versions
):
    login("engineer")
    form = {"csrf_token": auth.csrf(), "reason": "no"}
    response = client.post("/projects/news/models/2/reject", data=form)
    assert response.status_code == 302
    page = text(client.get(response.headers["Location"]).text)
    assert "Nothing changed: Version 2 is the champion and cannot be rejected" in page
    response = client.post("/projects/news/models/3/reject", data={"csrf_token": auth.csrf()})
    page = text(client.get(response.headers["Location"]).text)
    assert "Nothing changed: Say why: a reason is required." in page
    assert client.get("/projects/news/models/9").status_code == 404
    assert statuses() == {1: "retired", 2: "champion", 3: "candidate"}
    assert db.session.scalar(select(ModelEvent)) is None


def test_the_project_page_links_the_models(client, login, versions):
    login("reviewer")
    page = client.get("/projects/news").text
    assert 'href="/projects/news/models"' in page
    assert 'href="/projects/news/models/2"' in page
