"""An experiment's life through the service and its jobs: what ends it, what it raises, what
engineers can change, and shadow mode."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.factories import TEXT_LABELS, make_experiment_row, text_for
from webapp import abtests, pool, registry, serving
from webapp.errors import Conflict, ValidationError
from webapp.extensions import db
from webapp.models import (
    Alert,
    Experiment,
    ModelEvent,
    ModelVersion,
    Prediction,
    ShadowPrediction,
    WebhookDelivery,
)


def version(number: int) -> ModelVersion:
    return db.session.scalar(select(ModelVersion).where(ModelVersion.version == number))


def start(project, **design) -> Experiment:
    experiment = abtests.start(project, "user:1", **design)
    db.session.commit()
    return experiment


def predict(project, units, prefix="u") -> list[dict]:
    answers = [
        serving.predict(project, {"text": text_for(TEXT_LABELS[i % 3], i) + prefix}, unit=unit)
        for i, unit in enumerate(units)
    ]
    db.session.commit()
    return answers


def test_the_design_is_checked_field_by_field(project):
    with pytest.raises(ValidationError) as bad:
        abtests.start(project, "user:1", share=1.0, primary_metric="clicks", mde=0)
    assert set(bad.value.errors) == {"share", "primary_metric", "mde"}
    with pytest.raises(ValidationError) as bad:
        abtests.start(project, "user:1", guardrails=["accuracy"])  # the primary metric
    assert "guardrails" in bad.value.errors
    with pytest.raises(ValidationError) as bad:
        abtests.start(project, "user:1", challenger=version(1))  # the champion itself
    assert "challenger_version" in bad.value.errors
    assert db.session.scalar(select(Experiment.id)) is None  # nothing half-written


def test_the_database_allows_one_running_experiment_per_project(project):
    first = start(project)
    second = make_experiment_row(project, status="running", name="sneaked in")
    db.session.add(second)
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    with pytest.raises(Conflict):
        abtests.start(project, "user:1")
    db.session.rollback()
    assert db.session.get(Experiment, first.id).status == "running"


def test_a_manual_promotion_supersedes_the_running_experiment(project):
    experiment = start(project)
    registry.promote(version(2), "user:7", "shipping it without waiting")
    db.session.commit()
    db.session.refresh(experiment)
    assert (experiment.status, experiment.decision) == ("stopped", "superseded")
    assert experiment.decided_by == "user:7" and "became the champion" in experiment.reasons[-1]
    # Units are no longer split: the new champion serves everyone.
    (answer,) = predict(project, ["u-1"])
    assert answer["model_version"] == 2 and answer["experiment"] is None


def test_the_maximum_duration_keeps_the_champion(project):
    experiment = start(project, max_days=1)
    predict(project, [f"u-{i}" for i in range(50)])
    for hours in (1, 2):
        assert abtests.step(experiment.id, now=experiment.started_at + timedelta(hours=hours)) == (
            "continue"
        )
    assert len(abtests.looks(experiment)) == 1
    predict(project, [f"u-{i}" for i in range(50, 60)])  # new units: the next look is kept
    later = experiment.started_at + timedelta(days=1, minutes=1)
    assert abtests.step(experiment.id, now=later) == "keep"
    db.session.refresh(experiment)
    assert experiment.decision == "keep" and experiment.decided_by == "auto"
    assert version(1).status == "champion" and version(2).status == "challenger"
    # Each look that saw something new is stored, for the page's curve over time; one that
    # saw nothing new (the clock looks every tick) only refreshes the latest figures.
    assert len(abtests.looks(experiment)) == 2


def test_a_broken_split_raises_one_srm_alert_and_holds_promotion(project, api):
    experiment = start(project, min_units=10)
    predict(project, [f"u-{i}" for i in range(400)])
    # Logging lost most of the challenger's exposures (a client bug, say).
    lost = db.session.scalars(
        select(Prediction).where(Prediction.arm == "challenger").limit(150)
    ).all()
    for row in lost:
        db.session.delete(row)
    db.session.commit()
    pool.label_unlabeled(
        project,
        [
            (p.item_id, p.label)
            for p in db.session.scalars(select(Prediction).where(Prediction.arm == "challenger"))
        ],
        "user:expert",
    )
    for _ in range(2):
        assert abtests.step(experiment.id) == "continue"
    alerts = db.session.scalars(select(Alert).where(Alert.metric == "experiment.srm")).all()
    assert len(alerts) == 1 and "sample ratio mismatch" in alerts[0].message
    db.session.refresh(experiment)
    assert experiment.analysis["srm"]["mismatch"] is True
    assert any("held" in r for r in experiment.analysis["proposal"]["reasons"])
    # The alert is the project's like any other: in the API (and on the alerts page).
    listed = api.get("/projects/news/alerts").get_json()["alerts"]
    assert [a["metric"] for a in listed] == ["experiment.srm"] and listed[0]["rule"] is None


def test_an_engineer_stops_and_overrides_through_the_registry(project):
    experiment = start(project)
    with pytest.raises(ValidationError):
        abtests.stop(experiment, "user:3", "promote", "")  # a reason is required
    db.session.rollback()
    abtests.stop(experiment, "user:3", "promote", "the challenger reads better")
    db.session.commit()
    assert version(2).status == "champion"
    with pytest.raises(Conflict):
        abtests.stop(experiment, "user:3", "keep", "again")
    db.session.rollback()
    # Overriding the promotion brings the old champion back, through the registry.
    abtests.override(experiment, "user:4", "keep", "complaints came in overnight")
    db.session.commit()
    db.session.expire_all()
    assert version(1).status == "champion" and version(2).status == "retired"
    actions = [
        (e.action, e.actor) for e in db.session.scalars(select(ModelEvent).order_by(ModelEvent.id))
    ][-2:]
    assert actions == [("promote", "user:3"), ("rollback", "user:4")]
    db.session.refresh(experiment)
    assert experiment.decision == "keep" and experiment.decided_by == "user:4"
    assert "overrode promote with keep" in " ".join(experiment.reasons)


def test_decisions_send_webhook_events(project):
    from webapp.models import Webhook

    db.session.add(Webhook(project_id=project.id, url="http://127.0.0.1:9/hook", secret="s" * 16))
    db.session.commit()
    experiment = start(project)
    abtests.stop(experiment, "user:3", "rollback", "it mislabels sport")
    db.session.commit()
    events = [d.event for d in db.session.scalars(select(WebhookDelivery))]
    assert "experiment.started" in events and "experiment.decided" in events
    assert version(2).status == "rejected"


def test_shadow_mode_serves_the_champion_and_scores_in_the_background(project, run_jobs):
    from webapp import schedule

    experiment = start(project, mode="shadow")
    answers = predict(project, [None] * 30 + [f"u-{i}" for i in range(30)])
    assert {a["model_version"] for a in answers} == {1}  # the challenger serves nobody
    assert {a["experiment"]["arm"] for a in answers} == {"champion"}
    assert db.session.scalar(select(ShadowPrediction.prediction_id)) is None  # not in the request
    schedule.tick()
    run_jobs()
    db.session.expire_all()
    assert len(db.session.scalars(select(ShadowPrediction)).all()) == 60
    # Same model under both versions: it agrees with the champion on every request.
    pool.label_unlabeled(
        project,
        [(p.item_id, p.label) for p in db.session.scalars(select(Prediction)).all()],
        "user:expert",
    )
    abtests.step(experiment.id)
    db.session.refresh(experiment)
    shadow = experiment.analysis["shadow"]
    assert shadow["scored"] == 60 and shadow["agreement"]["value"] == 1.0
    assert shadow["accuracy"]["challenger"]["n"] == 60
    assert experiment.status == "running"  # a shadow experiment reports; engineers decide


def test_raising_the_share_only_moves_units_to_the_challenger_and_starts_a_phase(project):
    experiment = start(project, share=0.2)
    units = [f"u-{i}" for i in range(500)]
    before = {
        u: a["experiment"]["arm"] for u, a in zip(units, predict(project, units), strict=True)
    }
    with pytest.raises(ValidationError) as lower:
        abtests.raise_share(experiment, 0.1, "user:2")
    assert "stop this experiment" in lower.value.errors["share"]
    abtests.raise_share(experiment, 0.5, "user:2")
    db.session.commit()
    after = {
        u: a["experiment"]["arm"]
        for u, a in zip(units, predict(project, units, prefix="x"), strict=True)
    }
    moved = [u for u in units if before[u] != after[u]]
    assert all(before[u] == "champion" and after[u] == "challenger" for u in moved)
    assert 0.2 * len(units) < len(moved) < 0.4 * len(units)  # about 30% of units moved
    assert abtests.step(experiment.id) == "continue"
    db.session.refresh(experiment)
    # The analysis reads phase 2 alone: each unit once, in the arm it has now.
    assert experiment.phase == 2
    assert experiment.analysis["units"] == {
        arm: sum(a == arm for a in after.values()) for arm in ("champion", "challenger")
    }
    assert experiment.analysis["srm"]["mismatch"] is False
