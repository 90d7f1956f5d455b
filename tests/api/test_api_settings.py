"""Project settings over the API: read them, change some; a bad value is a problem naming it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.api.helpers import SETTINGS, assert_problem
from tests.factories import make_items
from webapp.extensions import db
from webapp.models import Project, Task


def _queued_rescores(project) -> int:
    return len(
        db.session.scalars(
            select(Task).where(
                Task.project_id == project.id, Task.name == "rescore", Task.status == "queued"
            )
        ).all()
    )


def test_the_settings_show_every_key_with_its_default(api, project):
    body = api.get("/projects/news/settings").get_json()
    assert body["query_strategy"] == "margin"
    assert body["batch_diversity"] in (True, False)
    assert body["gate.min_heldout"] == SETTINGS["gate"]["min_heldout"]
    assert body["retrain_every"] == 25


def test_a_committee_strategy_is_stored_and_queues_a_rescore(api, project):
    make_items(project, 5)
    resp = api.patch(
        "/projects/news/settings",
        {"query_strategy": "qbc_vote_entropy", "batch_diversity": True, "gate.mode": "superiority"},
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["query_strategy"], body["batch_diversity"]) == ("qbc_vote_entropy", True)
    db.session.expire_all()
    stored = db.session.get(Project, project.id).settings
    assert stored["query_strategy"] == "qbc_vote_entropy" and stored["batch_diversity"] is True
    assert stored["gate"]["mode"] == "superiority"
    assert _queued_rescores(project) == 1
    # The same values again change nothing and queue nothing more.
    assert api.patch("/projects/news/settings", {"query_strategy": "qbc_kl"}).status_code == 200
    assert _queued_rescores(project) == 1, "a queued rescore absorbs the second change"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"query_strategy": "random"}, "query_strategy"),
        ({"query_strategy": "kl_max_disagreement"}, "query_strategy"),
        ({"query_strategy": 3}, "query_strategy"),
        ({"batch_diversity": "yes"}, "batch_diversity"),
        ({"retrain_every": -1}, "retrain_every"),
        ({"retrain_every": 2.5}, "retrain_every"),
        ({"gate.alpha": 0.9}, "gate.alpha"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_setting_is_a_problem_naming_it_and_nothing_changes(api, project, change, field):
    resp = api.patch("/projects/news/settings", {"audit_share": 0.3, **change})
    doc = assert_problem(resp, 422, field, case=change)
    assert field in doc["detail"]
    db.session.expire_all()
    assert db.session.get(Project, project.id).settings == SETTINGS, "no partial update"
    assert _queued_rescores(project) == 0


def test_the_heldout_share_is_fixed_once_labels_exist(api, project):
    from tests.factories import label_all

    label_all(project, make_items(project, 2))
    doc = assert_problem(
        api.patch("/projects/news/settings", {"heldout_share": 0.3}), 422, "heldout_share"
    )
    assert "leak" in doc["errors"]["heldout_share"]
