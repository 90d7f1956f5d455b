"""A retrain stores the per-item predictions its decision was made on, which the review reads;
the learning curve measures each model once per held-out snapshot."""

from __future__ import annotations

import json
import zlib

from sqlalchemy import select

from labeling import evaluation, review
from labeling import training as models
from tests.factories import REVIEW_SETTINGS, label_all, make_project, make_reviewed_candidate
from webapp import training
from webapp.extensions import db
from webapp.models import Item
from webapp.runs import curve


def test_a_retrain_stores_both_models_predictions_on_the_items_it_was_judged_on(app):
    project = make_project(settings=REVIEW_SETTINGS)
    made = make_reviewed_candidate(project)
    first, second = made.runs

    # The first model was judged by cross-validation over its 60 training labels: those items,
    # and no champion. The stored predictions are the ones its metrics were computed from.
    paired = review.unpack_paired(first.metrics["items"])
    trained = [i for i, _ in json.loads(zlib.decompress(first.snapshot))]
    assert sorted(paired["ids"]) == sorted(trained) and paired["champion"] is None
    redone = evaluation.evaluate(paired["truth"], paired["candidate"], project.labels)
    assert redone["confusion"] == first.metrics["candidate"]["confusion"]

    # The second was judged on the 15 audits, paired: both models' predictions, as each model
    # predicts them when loaded again.
    paired = review.unpack_paired(second.metrics["items"])
    audits = sorted(i for rows in made.audits.values() for i in rows)
    assert sorted(paired["ids"]) == audits
    rows = [db.session.get(Item, i) for i in paired["ids"]]
    assert paired["truth"] == [row.label for row in rows]
    X = models.to_matrix(project.kind, [row.data for row in rows], project.features)
    for version, stored in zip(
        made.versions, (paired["champion"], paired["candidate"]), strict=True
    ):
        proba = models.predict_proba_for(training.load_model(version), X, project.labels)
        assert stored == [project.labels[k] for k in proba.argmax(axis=1)]
    for who in ("candidate", "champion"):
        redone = evaluation.evaluate(paired["truth"], paired[who], project.labels)
        assert redone["confusion"] == second.metrics[who]["confusion"]
    # Compact: labels are indices into one list.
    assert second.metrics["items"]["labels"] == project.labels
    assert set(second.metrics["items"]["truth"]) <= {0, 1, 2}


def test_the_learning_curve_loads_each_model_once_per_heldout_snapshot(app, monkeypatch):
    project = make_project(settings=REVIEW_SETTINGS)
    make_reviewed_candidate(project)
    loads = []
    load = curve.load_model
    monkeypatch.setattr(curve, "load_model", lambda v: loads.append(v.version) or load(v))
    first = curve.learning_curve(project)
    assert sorted(loads) == [1, 2]
    assert curve.learning_curve(project) == first and sorted(loads) == [1, 2]
    # A new audit is a new held-out snapshot: each version is measured on it once.
    unlabeled = db.session.scalar(select(Item.id).where(Item.label.is_(None)).limit(1))
    label_all(project, [unlabeled], lane="audit")
    assert [p["n"] for p in curve.learning_curve(project)["points"]] == [16, 16]
    assert sorted(loads) == [1, 1, 2, 2]
