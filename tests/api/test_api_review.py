"""The review of a gate decision and the learning curve over HTTP (`…/models/{version}/review`,
`…/models/learning-curve`): the same facts as the run and models pages."""

from __future__ import annotations

import pytest

from labeling import evaluation, split
from labeling import training as models
from tests.api.helpers import assert_problem, label_all
from tests.factories import (
    REVIEW_SETTINGS,
    make_champion,
    make_reviewed_candidate,
    make_version,
)
from webapp import training
from webapp.extensions import db
from webapp.models import Item


@pytest.fixture
def reviewed(project):
    """Champion v1 and the rejected v2 that fixed the tech audits and broke the politics ones."""
    project.settings = dict(REVIEW_SETTINGS)
    db.session.commit()
    return make_reviewed_candidate(project)


def test_the_review_lists_the_items_fixed_and_broken_with_their_labels(api, reviewed):
    body = api.get("/projects/news/models/2/review").get_json()
    run = reviewed.runs[1]
    assert (body["version"], body["run_id"], body["decision"]) == (2, run.id, "rejected")
    assert (body["judged_by"], body["judged_n"], body["champion_version"]) == (
        "heldout_unseen",
        15,
        1,
    )
    assert body["fixed"] == [
        {"item_id": i, "label": "tech", "candidate": "tech", "champion": "sport"}
        for i in reviewed.fixed
    ]
    assert body["broken"] == [
        {"item_id": i, "label": "politics", "candidate": "sport", "champion": "politics"}
        for i in reviewed.broken
    ]
    assert body["agreement"] == {"fixed": 5, "broken": 5, "both_right": 5, "both_wrong": 0}
    assert body["paired_items"] == 15
    assert body["gate"] == run.reasons


def test_the_review_counts_the_snapshot_changes_against_the_champion_judged_against(api, reviewed):
    changes = api.get("/projects/news/models/2/review").get_json()["changes"]
    assert (changes["against"], changes["why"]) == (1, None)
    assert (changes["added"], changes["corrected"], changes["removed"]) == (6, 40, 2)
    tech = set(reviewed.relabeled_tech)
    assert changes["corrected_items"] == [
        {"item_id": i, "old": "sport", "new": "tech"}
        if i in tech
        else {"item_id": i, "old": "politics", "new": "sport"}
        for i in reviewed.corrected
    ]
    assert [row["item_id"] for row in changes["added_items"]] == reviewed.added
    assert changes["removed_items"] == [{"item_id": i, "label": "sport"} for i in reviewed.removed]


def test_the_review_sets_both_models_and_their_class_deltas_side_by_side(api, reviewed):
    body = api.get("/projects/news/models/2/review").get_json()
    metrics = reviewed.runs[1].metrics
    for who in ("candidate", "champion"):
        stored, shown = metrics[who], body[who]
        assert shown["n"] == 15 and shown["confusion"] == stored["confusion"]
        for key in ("accuracy", "macro_f1", "balanced_accuracy"):
            bounds = stored["intervals"][key]
            assert shown[key] == {"value": stored[key], **bounds}
        assert shown["brier"] == stored["calibration"]["brier"]
        assert shown["ece"] == stored["calibration"]["ece"]
    assert body["candidate"]["accuracy"]["method"] == "wilson"
    by_class = {row["label"]: row for row in body["class_deltas"]}
    assert list(by_class) == ["sport", "politics", "tech"]
    for label, row in by_class.items():
        new, old = metrics["candidate"]["per_class"][label], metrics["champion"]["per_class"][label]
        for key in ("precision", "recall", "f1"):
            assert row["candidate"][key] == new[key] and row["champion"][key] == old[key]
            assert row["delta"][key] == pytest.approx(new[key] - old[key])
        assert (
            row["candidate"]["recall_lo"]
            == metrics["candidate"]["intervals"]["recall"][label]["lo"]
        )
    assert by_class["tech"]["delta"]["recall"] == 1.0
    assert by_class["politics"]["delta"]["recall"] == -1.0
    assert {label: (row["gate"], row["flagged"]) for label, row in by_class.items()} == {
        "sport": ("passed", False),
        "politics": ("failed", True),
        "tech": ("passed", False),
    }
    assert by_class["politics"]["p_worse"] == pytest.approx(0.5**5)


def test_the_run_leaves_the_per_item_predictions_to_the_review(api, reviewed):
    run = api.get(f"/projects/news/runs/{reviewed.runs[1].id}").get_json()
    assert set(run["metrics"]) == {"candidate", "champion", "baseline", "champion_version"}


def test_a_first_model_and_a_version_no_retrain_made_have_little_to_review(api, project):
    project.settings = dict(REVIEW_SETTINGS)
    db.session.commit()
    make_champion(project, n_labeled=60, n_pool=10)
    body = api.get("/projects/news/models/1/review").get_json()
    assert (body["judged_by"], body["champion_version"], body["champion"]) == (
        "cross_validation",
        None,
        None,
    )
    assert body["paired_items"] == 60  # the cross-validated predictions of its training labels
    assert (body["fixed"], body["broken"], body["agreement"]) == ([], [], None)
    assert body["changes"]["why"].startswith("There was no champion when this run was judged")
    assert body["changes"]["added"] is None
    assert [row["champion"] for row in body["class_deltas"]] == [None, None, None]
    make_version(project, 2)
    body = api.get("/projects/news/models/2/review").get_json()
    assert (body["version"], body["run_id"], body["candidate"], body["gate"]) == (2, None, None, [])
    assert_problem(api.get("/projects/news/models/3/review"), 404)


def _measured(version, project, audits):
    """The version's macro-F1 on the audits, computed here from its artifact."""
    model = training.load_model(version)
    rows = [db.session.get(Item, i) for i in audits]
    X = models.to_matrix(project.kind, [r.data for r in rows], project.features)
    proba = models.predict_proba_for(model, X, project.labels)
    predicted = [project.labels[k] for k in proba.argmax(axis=1)]
    return evaluation.evaluate([r.label for r in rows], predicted, project.labels)


def test_the_learning_curve_measures_every_version_on_todays_audits(api, project, reviewed):
    curve = api.get("/projects/news/models/learning-curve").get_json()
    audits = sorted(i for rows in reviewed.audits.values() for i in rows)
    labels = [db.session.get(Item, i).label for i in audits]
    assert (curve["metric"], curve["heldout_size"], curve["versions"]) == ("macro_f1", 15, 2)
    assert curve["heldout_digest"] == split.snapshot_digest(audits, labels)
    assert [
        (p["version"], p["status"], p["promoted"], p["train_size"]) for p in curve["points"]
    ] == [
        (1, "champion", True, 60),
        (2, "rejected", False, 64),
    ]
    for point, version in zip(curve["points"], reviewed.versions, strict=True):
        expected = _measured(version, project, audits)
        bounds = expected["intervals"]["macro_f1"]
        assert (point["value"], point["lo"], point["hi"]) == (
            expected["macro_f1"],
            bounds["lo"],
            bounds["hi"],
        )
        assert point["lo"] <= point["value"] <= point["hi"]
        assert (point["n"], point["source"], point["judged_by"]) == (15, "current_heldout", None)

    # One more audit is a new held-out snapshot: every point is measured on it.
    (more,) = [i for i in db.session.scalars(db.select(Item.id).where(Item.label.is_(None)))][:1]
    label_all(project, [more], lane="audit")
    curve = api.get("/projects/news/models/learning-curve").get_json()
    assert curve["heldout_size"] == 16
    assert [p["n"] for p in curve["points"]] == [16, 16]


def test_before_any_audit_the_curve_gives_each_versions_stored_metrics(api, project):
    champion = make_champion(project, n_labeled=60, n_pool=10)
    curve = api.get("/projects/news/models/learning-curve").get_json()
    assert (curve["heldout_size"], curve["heldout_digest"]) == (0, None)
    (point,) = curve["points"]
    bounds = champion.metrics["intervals"]["macro_f1"]
    assert point == {
        "version": 1,
        "status": "champion",
        "promoted": True,
        "train_size": 60,
        "value": champion.metrics["macro_f1"],
        "lo": bounds["lo"],
        "hi": bounds["hi"],
        "n": 60,
        "source": "stored",
        "judged_by": "cross_validation",
    }


def test_another_projects_key_sees_neither(other, project):
    make_version(project, 1, "champion")
    assert_problem(other.get("/projects/news/models/1/review"), 404)
    assert_problem(other.get("/projects/news/models/learning-curve"), 404)
