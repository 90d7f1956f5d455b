"""The labeling queue over HTTP: next item, leases, disputes, annotations, skips, auto-retrain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.api.helpers import assert_problem
from tests.factories import make_items
from webapp.extensions import db
from webapp.models import Annotation, Item, RetrainRun, utcnow


def import_texts(api, n: int) -> list[int]:
    """Import n distinct text items through the API; return their ids."""
    rows = [{"external_id": f"ext-{i}", "data": {"text": f"item number {i}"}} for i in range(n)]
    resp = api.post("/projects/news/items", {"items": rows})
    assert resp.status_code == 201
    return resp.get_json()["ids"]


def next_item(api) -> dict | None:
    """The queue's next item for this client's key, or None on 204."""
    resp = api.get("/projects/news/queue/next")
    assert resp.status_code in (200, 204), resp.get_json()
    return resp.get_json() if resp.status_code == 200 else None


def test_next_item_before_any_model(api, project):
    ids = import_texts(api, 3)
    got = next_item(api)
    assert got["item_id"] in ids
    assert got["reason"] == "cold-start"
    assert got["suggestion"] is None
    assert got["data"] == db.session.get(Item, got["item_id"]).data


def test_the_same_key_gets_its_leased_item_again_and_another_key_a_different_one(
    api, api_for, project
):
    import_texts(api, 3)
    first = next_item(api)
    assert next_item(api)["item_id"] == first["item_id"]
    assert next_item(api_for("label"))["item_id"] != first["item_id"]


def test_an_empty_queue_is_204(api, project):
    resp = api.get("/projects/news/queue/next")
    assert resp.status_code == 204 and resp.get_data() == b""


def test_the_queue_is_204_once_everything_is_labeled(api, project):
    import_texts(api, 2)
    for _ in range(2):
        got = next_item(api)
        assert (
            api.post(f"/items/{got['item_id']}/annotations", {"label": "tech"}).status_code == 201
        )
    assert next_item(api) is None


def test_a_negative_feedback_puts_its_item_first(api, project):
    ids = import_texts(api, 10)
    logged = api.post(
        "/projects/news/predictions",
        {
            "predictions": [
                {"data": {"text": "item number 7"}, "external_id": "ext-7", "label": "tech"}
            ]
        },
    )
    prediction_id = logged.get_json()["ids"][0]
    api.post(f"/predictions/{prediction_id}/feedback", {"correct": False})
    got = next_item(api)
    assert got["item_id"] == ids[7]
    assert got["reason"] == "disputed"
    api.post(f"/items/{ids[7]}/annotations", {"label": "sport"})
    assert next_item(api)["reason"] == "cold-start"


def test_an_annotation_resolves_the_item_and_frees_the_queue_for_the_next(api, project):
    import_texts(api, 3)
    got = next_item(api)
    resp = api.post(f"/items/{got['item_id']}/annotations", {"label": "politics"})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["item_id"] == got["item_id"] and body["label"] == "politics"
    annotation = db.session.get(Annotation, body["annotation_id"])
    assert annotation.annotator.startswith("key:") and annotation.reason == "cold-start"
    assert db.session.get(Item, got["item_id"]).label == "politics"
    assert next_item(api)["item_id"] != got["item_id"]


def test_an_item_leased_to_another_annotator_is_409(api, api_for, project):
    import_texts(api, 1)
    got = next_item(api)
    resp = api_for("label").post(f"/items/{got['item_id']}/annotations", {"label": "sport"})
    assert_problem(resp, 409)
    assert db.session.get(Item, got["item_id"]).label is None
    assert db.session.scalar(select(func.count(Annotation.id))) == 0


def test_an_expired_lease_no_longer_blocks_others(api, api_for, project):
    import_texts(api, 1)
    got = next_item(api)
    db.session.get(Item, got["item_id"]).lease_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    resp = api_for("label").post(f"/items/{got['item_id']}/annotations", {"label": "sport"})
    assert resp.status_code == 201


def test_annotation_rejects_bad_input_by_field(api, project):
    (item_id,) = make_items(project, 1)
    cases = [
        ({}, "label"),
        ({"label": None}, "label"),
        ({"label": "weather"}, "label"),
        ({"label": ["sport"]}, "label"),
        ({"label": "sport", "confidence": 1}, "confidence"),
    ]
    for payload, field in cases:
        resp = api.post(f"/items/{item_id}/annotations", payload)
        assert_problem(resp, 422, field, case=payload)
    assert db.session.get(Item, item_id).label is None


def test_annotation_body_that_is_not_json_is_400(api, project):
    (item_id,) = make_items(project, 1)
    resp = api.post(f"/items/{item_id}/annotations", data=b"label=sport")
    assert_problem(resp, 400)


def test_annotating_another_projects_item_is_404(api, other, project):
    item_id = db.session.scalar(select(Item.id).where(Item.project_id != project.id))
    assert_problem(api.post(f"/items/{item_id}/annotations", {"label": "sport"}), 404)
    assert db.session.get(Item, item_id).label is None


def test_skip_hides_the_item_from_this_annotator_only(api, api_for, project):
    ids = import_texts(api, 2)
    first = next_item(api)["item_id"]
    resp = api.post(f"/items/{first}/skip")
    assert resp.status_code == 204 and resp.get_data() == b""
    second = next_item(api)["item_id"]
    assert second != first and {first, second} == set(ids)
    # The other item is leased to the first key, and the skipped one is free for everyone else.
    assert next_item(api_for("label"))["item_id"] == first


def test_labels_trigger_an_automatic_retrain_every_n(api, project):
    project.settings = dict(project.settings, retrain_every=3)
    db.session.commit()
    import_texts(api, 5)
    for n in range(1, 4):
        assert db.session.scalar(select(func.count(RetrainRun.id))) == 0, n
        got = next_item(api)
        api.post(f"/items/{got['item_id']}/annotations", {"label": ["sport", "tech"][n % 2]})
    run = db.session.scalar(select(RetrainRun))
    assert (run.trigger, run.status) == ("auto", "queued")
    shown = api.get(f"/projects/news/runs/{run.id}").get_json()
    assert (shown["trigger"], shown["status"], shown["decision"]) == ("auto", "queued", None)


def test_with_a_champion_the_queue_suggests_a_label(api, project, champion):
    got = next_item(api)
    assert got["reason"] in ("uncertain", "audit")
    suggestion = got["suggestion"]
    assert set(suggestion["probabilities"]) == set(project.labels)
    assert sum(suggestion["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert suggestion["label"] == max(
        suggestion["probabilities"], key=suggestion["probabilities"].get
    )
    assert db.session.get(Item, got["item_id"]).label is None
