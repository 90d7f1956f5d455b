"""Monitoring on synthetic streams with known truth, through the product's own path.

A tabular project learns y = a when x1 + x2 / 2 is high (labels drawn from a logistic of it, so
the model is well specified). Its champion serves `predict`; the predictions are moved into
daily windows (a time machine: `created_at` set to the day they stand for), experts label them
(a share through the audit lane, the rest in bulk), and the monitoring job computes windows and
evaluates the project's default alert rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from labeling import monitoring as stats
from tests.factories import _AuditLane
from webapp import pool, serving, training, webhooks
from webapp.alerts import run_monitoring
from webapp.extensions import db
from webapp.models import Alert, Item, MonitorWindow, Prediction, RetrainRun, Webhook

DAY = timedelta(days=1)
T0 = datetime(2026, 11, 1)
# A new auditor labels each day's audits: with second opinions (two experts label here) each
# day's auditor would first be sent the day before's audits, so each audit takes one answer.
SETTINGS = {"retrain_every": 0, "first_retrain_at": 100000, "second_opinion": 1}


def truth(x1: float, x2: float, rng: np.random.Generator, flip: bool = False) -> str:
    """The labelling function: P(a) = sigmoid(3 (x1 + x2 / 2)); `flip` inverts it for x1 > 0
    (a concept shift: the same inputs now mean the other label there)."""
    p = 1 / (1 + np.exp(-3 * (x1 + x2 / 2)))
    label = "a" if rng.random() < p else "b"
    if flip and x1 > 0:
        label = "b" if label == "a" else "a"
    return label


@pytest.fixture
def stream(app, make):
    """A tabular project with a champion trained on 800 labeled items from N(0, 1)."""
    project = make.make_project(slug="stream", kind="tabular", settings=dict(SETTINGS))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 2))
    rows = [{"data": {"features": {"x1": float(a), "x2": float(b)}}} for a, b in X]
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    pool.label_unlabeled(
        project, [(i, truth(a, b, rng)) for i, (a, b) in zip(ids, X, strict=True)], "import"
    )
    run = training.trigger_retrain(project)
    db.session.commit()
    training.run_retrain(run.id)
    db.session.expire_all()
    champion = training.champion_version(project.id)
    assert champion is not None, db.session.get(RetrainRun, run.id).reasons
    assert champion.calibrator and champion.reference
    return project, rng


def serve_day(project, day: int, X: np.ndarray) -> list[int]:
    """Predict every row with the champion, as `predict` does, dated `day` days after T0."""
    ids = [
        serving.predict(project, {"features": {"x1": float(a), "x2": float(b)}})["prediction_id"]
        for a, b in X
    ]
    db.session.execute(
        update(Prediction)
        .where(Prediction.id.in_(ids))
        .values(created_at=T0 + day * DAY + timedelta(hours=12))
    )
    db.session.commit()
    return ids


def label_day(project, prediction_ids, rng, audits: int, flip: bool = False) -> None:
    """Experts label every predicted item: `audits` of them through the audit lane (the
    uniform random held-out sample of production), the rest in bulk."""
    items = db.session.execute(
        select(Item.id, Item.data)
        .join(Prediction, Prediction.item_id == Item.id)
        .where(Prediction.id.in_(prediction_ids))
    ).all()
    answer = {i: truth(d["features"]["x1"], d["features"]["x2"], rng, flip) for i, d in items}
    lane = _AuditLane()
    annotator = f"user:auditor-{prediction_ids[0]}"
    for _ in range(audits):
        item, reason = pool.next_item(project, annotator, lane)
        assert reason == "audit"
        pool.annotate(project, item, annotator, answer[item.id])
    pool.label_unlabeled(project, list(answer.items()), "user:bulk")


def windows(project, key="v1") -> list[MonitorWindow]:
    return db.session.scalars(
        select(MonitorWindow)
        .where(MonitorWindow.project_id == project.id, MonitorWindow.model_key == key)
        .order_by(MonitorWindow.start)
    ).all()


def test_covariate_shift_raises_drift_and_cbpe_tracks_the_realised_accuracy(stream):
    project, rng = stream
    days = [rng.normal(size=(600, 2)) for _ in range(2)]
    # Then inputs crowd the decision boundary: x1 loses most of its spread.
    days += [np.column_stack([rng.normal(0, 0.25, 2500), rng.normal(0, 1, 2500)]) for _ in "xy"]
    for day, X in enumerate(days):
        label_day(project, serve_day(project, day, X), rng, audits=40)
    done = run_monitoring(project.id, now=T0 + 4 * DAY + timedelta(minutes=5))
    assert done["windows"] == 4

    w = windows(project)
    assert [x.start for x in w] == [T0 + d * DAY for d in range(4)]
    assert [x.stats["volume"] for x in w] == [600, 600, 2500, 2500]
    severity = {x.start.day: x.drift["features"] for x in w}
    assert severity[1]["x1"] == severity[2]["x1"] == "none"
    assert severity[3]["x1"] == severity[4]["x1"] == "drift"
    assert severity[3]["x2"] == "none"  # only x1 moved
    # The shift costs accuracy, and CBPE sees it coming without labels: over the two shifted
    # days (5,000 predictions, merged from the stored windows) it is within 2 points.
    realised = stats.merge_windows([x.stats for x in w[2:]])["labeled"]["all"]["accuracy"]
    estimated = stats.merge_estimates([x.estimate for x in w[2:]])["accuracy"]
    assert realised["value"] < 0.8 < w[0].stats["labeled"]["all"]["accuracy"]["value"]
    assert abs(estimated["value"] - realised["value"]) <= 0.02, (estimated, realised)

    alerts = db.session.scalars(select(Alert).order_by(Alert.id)).all()
    drift = [a for a in alerts if a.metric == "drift.severity"]
    assert len(drift) == 1 and drift[0].window_start == T0 + 3 * DAY  # two windows in a row
    assert drift[0].state == "firing"
    assert project.audit_boost_share == 0.3  # the drift rule asks for fresh audits


def test_no_shift_raises_no_alert(stream):
    project, rng = stream
    for day in range(4):
        label_day(project, serve_day(project, day, rng.normal(size=(400, 2))), rng, audits=40)
    run_monitoring(project.id, now=T0 + 4 * DAY + timedelta(minutes=5))
    assert [x.drift["severity"] for x in windows(project)] == ["none"] * 4
    assert [a.message for a in db.session.scalars(select(Alert))] == []


def test_concept_shift_fires_the_accuracy_alert_signs_the_webhook_and_retrains(
    stream, receiver, run_jobs
):
    project, rng = stream
    db.session.add(
        Webhook(project_id=project.id, url=receiver.url, secret="shh-" + "x" * 16, events=[])
    )
    db.session.commit()
    for day in range(2):
        label_day(project, serve_day(project, day, rng.normal(size=(400, 2))), rng, audits=100)
    # The world changes: the same inputs now mean the other label where x1 > 0 (half the
    # traffic): about half the predictions turn wrong.
    label_day(project, serve_day(project, 2, rng.normal(size=(400, 2))), rng, 100, flip=True)
    run_monitoring(project.id, now=T0 + 3 * DAY + timedelta(minutes=5))

    w = windows(project)
    audited = [x.stats["labeled"]["audit"]["accuracy"]["value"] for x in w]
    # 100 audits a day (a standard error near 0.04): the model's accuracy is about 0.83 before
    # the shift and about 0.5 after it, each more than 3 standard errors from 0.7.
    assert min(audited[:2]) > 0.7 > audited[2], audited
    # The inputs did not move: CBPE still expects the old accuracy, and no drift is seen.
    assert w[2].estimate["accuracy"]["value"] > 0.8 and w[2].drift["features"]["x1"] == "none"

    (alert,) = db.session.scalars(select(Alert).where(Alert.metric == "accuracy")).all()
    assert alert.state == "firing" and alert.window_start == T0 + 2 * DAY
    run = db.session.scalar(select(RetrainRun).where(RetrainRun.alert_id == alert.id))
    assert run is not None and run.trigger == "alert" and run.status == "queued"

    run_jobs()  # the webhook delivery and the alert's retrain
    firing = [r for r in receiver.requests if r["headers"]["X-Corrigo-Event"] == "alert.firing"]
    (request,) = [r for r in firing if b'"metric":"accuracy"' in r["body"]]
    assert webhooks.verify(
        "shh-" + "x" * 16, request["body"], request["headers"]["X-Corrigo-Signature"]
    )
    db.session.expire_all()
    assert db.session.get(RetrainRun, run.id).status == "succeeded"


def test_windows_are_only_recomputed_when_something_reaches_them(stream):
    project, rng = stream
    first = serve_day(project, 0, rng.normal(size=(50, 2)))
    serve_day(project, 1, rng.normal(size=(50, 2)))
    assert run_monitoring(project.id, now=T0 + 2 * DAY)["windows"] == 2
    assert run_monitoring(project.id, now=T0 + 2 * DAY)["windows"] == 0
    # A label on a day-0 item recomputes day 0 only.
    item_id = db.session.get(Prediction, first[0]).item_id
    pool.label_unlabeled(project, [(item_id, "a")], "user:late")
    assert run_monitoring(project.id, now=T0 + 2 * DAY)["windows"] == 1
    assert windows(project)[0].stats["labeled"]["all"]["n"] == 1
