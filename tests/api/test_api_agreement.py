"""Agreement between experts over HTTP (`GET /projects/{slug}/agreement`): the figures of
answers given through the product's path, checked against values worked out by hand."""

from __future__ import annotations

import pytest

from labeling.stats import wilson_interval
from tests.api.helpers import SETTINGS, assert_problem
from tests.factories import answer_overlap, make_items
from webapp import pool
from webapp.extensions import db
from webapp.models import Item

EXPERTS = {"ann": "expert:ann", "bob": "expert:bob", "cy": "expert:cy"}


@pytest.fixture
def answered(project):
    """`tests.factories.OVERLAP`'s answers in `news`, item 6 excluded (no automatic retrain)."""
    project.settings = dict(SETTINGS, retrain_every=0)
    db.session.commit()
    return answer_overlap(project, EXPERTS)


def test_kappa_alpha_and_agreement_with_final_labels_match_the_hand_computed_values(api, answered):
    resp = api.post(f"/items/{answered[6]}/exclusion", {"reason": "garbled text"})
    assert resp.status_code == 201, resp.get_json()
    body = api.get("/projects/news/agreement").get_json()

    assert body["answers"] == 7 + 6 + 3  # bob's first answer on item 3 was replaced
    assert body["items"] == 7 and body["items_with_several_answers"] == 6
    assert body["alpha"] == pytest.approx(16 / 37)

    pairs = {(p["a"], p["b"]): p for p in body["pairs"]}
    assert list(pairs) == [
        ("expert:ann", "expert:bob"),
        ("expert:ann", "expert:cy"),
        ("expert:bob", "expert:cy"),
    ]
    ann_bob = pairs["expert:ann", "expert:bob"]
    assert (ann_bob["shared_items"], ann_bob["agreement"]) == (6, pytest.approx(4 / 6))
    assert ann_bob["kappa"] == pytest.approx(0.5)
    for pair in ("expert:ann", "expert:cy"), ("expert:bob", "expert:cy"):
        assert pairs[pair]["shared_items"] == 3
        assert pairs[pair]["agreement"] == pytest.approx(2 / 3)
        assert pairs[pair]["kappa"] == pytest.approx(0.4)

    experts = {e["annotator"]: e for e in body["experts"]}
    assert [experts[a]["answers"] for a in EXPERTS.values()] == [7, 6, 3]
    assert [experts[a]["shared_items"] for a in EXPERTS.values()] == [6, 6, 3]
    # Against the final labels on shared items only: ann's lone item 7 is not counted.
    for annotator, (agreed, items) in zip(EXPERTS.values(), [(3, 6), (5, 6), (3, 3)], strict=True):
        final = experts[annotator]["final"]
        low, high = wilson_interval(agreed, items)
        assert (final["agreed"], final["items"]) == (agreed, items), annotator
        assert final["rate"] == pytest.approx(agreed / items)
        assert (final["low"], final["high"]) == (pytest.approx(low), pytest.approx(high))


def test_an_excluded_item_is_left_out(api, answered):
    before = api.get("/projects/news/agreement").get_json()
    assert before["items_with_several_answers"] == 7  # item 6 counts until it is excluded
    api.post(f"/items/{answered[6]}/exclusion", {"reason": "garbled text"})
    after = api.get("/projects/news/agreement").get_json()
    assert after["items_with_several_answers"] == 6
    assert after["alpha"] == pytest.approx(16 / 37) != before["alpha"]


def test_an_empty_project_has_no_figures(api, project):
    make_items(project, 3)
    body = api.get("/projects/news/agreement").get_json()
    assert body == {
        "answers": 0,
        "items": 0,
        "items_with_several_answers": 0,
        "alpha": None,
        "experts": [],
        "pairs": [],
    }


def test_answers_without_overlap_have_no_alpha_nor_pairs(api, project):
    project.settings = dict(SETTINGS, retrain_every=0)
    db.session.commit()
    first, second = make_items(project, 2)
    pool.annotate(project, db.session.get(Item, first), "expert:ann", "sport")
    pool.annotate(project, db.session.get(Item, second), "expert:bob", "tech")
    body = api.get("/projects/news/agreement").get_json()
    assert (body["answers"], body["items_with_several_answers"]) == (2, 0)
    assert body["alpha"] is None and body["pairs"] == []
    assert [(e["annotator"], e["final"]) for e in body["experts"]] == [
        ("expert:ann", None),
        ("expert:bob", None),
    ]


def test_one_label_throughout_leaves_alpha_and_kappa_undefined(api, project):
    project.settings = dict(SETTINGS, retrain_every=0)
    db.session.commit()
    for item_id in make_items(project, 2):
        for expert in ("expert:ann", "expert:bob"):
            pool.annotate(project, db.session.get(Item, item_id), expert, "sport")
    body = api.get("/projects/news/agreement").get_json()
    assert body["alpha"] is None
    (pair,) = body["pairs"]
    assert (pair["agreement"], pair["kappa"]) == (1.0, None)


def test_another_projects_slug_is_404(api, other, answered):
    assert_problem(api.get("/projects/sports/agreement"), 404)
    assert_problem(other.get("/projects/news/agreement"), 404)
    assert_problem(api.get("/projects/nope/agreement"), 404)


def test_it_takes_the_admin_scope(api_for, client, answered):
    weaker = api_for("predict", "feedback", "label")
    doc = assert_problem(weaker.get("/projects/news/agreement"), 403)
    assert "`admin`" in doc["detail"]
    assert api_for("admin").get("/projects/news/agreement").status_code == 200
    assert_problem(client.get("/api/v1/projects/news/agreement"), 401)


def test_the_operation_is_documented_with_its_scope(api):
    doc = api.get("/openapi.json").get_json()
    operation = doc["paths"]["/projects/{slug}/agreement"]["get"]
    assert operation["operationId"] == "showAgreement"
    assert operation["x-required-scope"] == "admin"
    assert {"200", "401", "403", "404"} <= set(operation["responses"])
