"""An A/B experiment end to end over HTTP: start at 50%, 2,000 units predicting three times
each, sticky arms and a clean split; labels and feedback that favour the challenger promote it
through the registry; a guardrail breach rolls a challenger back. The looks run as the clock
and the workers run them (`schedule.tick`, then the RQ jobs)."""

from __future__ import annotations

import random
from collections import defaultdict

from sqlalchemy import select

from tests.factories import TEXT_LABELS, make_version, text_for
from webapp import pool, schedule
from webapp.extensions import db
from webapp.models import Experiment, Item, ModelEvent, ModelVersion, Prediction

UNITS = 2000


def serve(api, units: range, prefix: str, calls: int = 3) -> dict[str, list[dict]]:
    """Every unit predicts `calls` times, each on a text of its own; the answers by unit."""
    answers = defaultdict(list)
    for call in range(calls):
        for u in units:
            i = u * calls + call
            text = text_for(TEXT_LABELS[i % 3], i) + f" {prefix}"
            resp = api.post(
                "/projects/news/predict",
                json={"data": {"text": text}, "unit": f"{prefix}-{u}"},
            )
            assert resp.status_code == 200, resp.get_json()
            answers[f"{prefix}-{u}"].append(resp.get_json())
    return answers


def look(api, run_jobs, experiment_id: int) -> dict:
    """One clock tick, the workers' jobs, then the experiment as the API shows it."""
    schedule.tick()
    run_jobs()
    db.session.expire_all()
    return api.get(f"/projects/news/experiments/{experiment_id}").get_json()


def label_arms(project, experiment_id: int, champion_right: float, rng) -> None:
    """Experts label every item served in the experiment: the challenger's answers are all
    right, the champion's right with probability `champion_right`."""
    rows = db.session.execute(
        select(Prediction.item_id, Prediction.arm, Prediction.label).where(
            Prediction.experiment_id == experiment_id
        )
    ).all()
    pairs = []
    for item_id, arm, predicted in rows:
        right = arm == "challenger" or rng.random() < champion_right
        truth = predicted if right else next(lab for lab in TEXT_LABELS if lab != predicted)
        pairs.append((item_id, truth))
    pool.label_unlabeled(project, pairs, "user:expert")


def test_a_challenger_that_wins_is_promoted_and_one_that_breaks_a_guardrail_is_rolled_back(
    api, project, run_jobs
):
    resp = api.post(
        "/projects/news/experiments",
        json={"share": 0.5, "min_units": 200, "mde": 0.05, "guardrails": ["correction_rate"]},
    )
    assert resp.status_code == 201, resp.get_json()
    experiment = resp.get_json()
    assert (experiment["champion_version"], experiment["challenger_version"]) == (1, 2)
    assert experiment["status"] == "running" and experiment["design"]["units"] > 0
    # One experiment at a time, enforced by the database.
    again = api.post("/projects/news/experiments", json={})
    assert again.status_code == 409 and "already runs" in again.get_json()["detail"]

    answers = serve(api, range(UNITS), "u")
    arms = {}
    for unit, got in answers.items():
        seen = {(a["model_version"], a["experiment"]["arm"]) for a in got}
        assert len(seen) == 1, (unit, seen)  # sticky: the same version and arm every time
        arms[unit] = seen.pop()
    assert {arm for arm in arms.values()} == {(1, "champion"), (2, "challenger")}
    # A request without a unit is the champion's, outside the experiment.
    anonymous = api.post("/projects/news/predict", json={"data": {"text": "a match report"}})
    assert anonymous.get_json()["model_version"] == 1
    assert anonymous.get_json()["experiment"] is None

    shown = look(api, run_jobs, experiment["id"])
    analysis = shown["analysis"]
    assert sum(analysis["units"].values()) == UNITS
    assert analysis["exposures"] == {
        arm: 3 * n for arm, n in analysis["units"].items()
    }  # every call recorded its exposure
    assert analysis["srm"]["mismatch"] is False and analysis["srm"]["p_value"] > 0.001
    assert shown["status"] == "running"  # no labels yet: nothing to decide on

    # Users accept both arms' answers alike, and experts find the challenger right more often.
    rng = random.Random(1)
    for unit, got in list(answers.items())[:300]:
        resp = api.post(
            f"/predictions/{got[0]['prediction_id']}/feedback",
            json={"correct": True},
            headers={"Idempotency-Key": f"fb-{unit}"},
        )
        assert resp.status_code == 201
    label_arms(project, experiment["id"], champion_right=0.8, rng=rng)

    shown = look(api, run_jobs, experiment["id"])
    assert shown["status"] == "stopped" and shown["decision"] == "promote", shown["reasons"]
    assert shown["decided_by"] == "auto"
    primary = shown["analysis"]["primary"]
    assert primary["verdict"] == "better" and primary["sequential"]["lo"] > 0
    assert any("accuracy" in reason for reason in shown["reasons"])
    # Promoted through the registry, as a person's promotion would be.
    db.session.expire_all()
    v2 = db.session.scalar(select(ModelVersion).where(ModelVersion.version == 2))
    assert v2.status == "champion"
    event = db.session.scalars(select(ModelEvent).order_by(ModelEvent.id.desc())).first()
    assert (event.action, event.actor) == ("promote", f"experiment:{experiment['id']}")
    # After the experiment, units are served by the new champion alone.
    after = api.post(
        "/projects/news/predict", json={"data": {"text": "late"}, "unit": "u-1"}
    ).get_json()
    assert after["model_version"] == 2 and after["experiment"] is None

    # A new candidate, tried at 30%: its users correct it far more often.
    v3 = make_version(project, 3, status="candidate", artifact=v2.artifact, metrics=v2.metrics)
    resp = api.post(
        "/projects/news/experiments",
        json={"challenger_version": 3, "share": 0.3, "min_units": 10000},
    )
    assert resp.status_code == 201, resp.get_json()
    second = resp.get_json()
    answers = serve(api, range(600), "w", calls=1)
    for unit, (got,) in answers.items():
        arm = got["experiment"]["arm"]
        correct = arm == "champion" or rng.random() < 0.5
        resp = api.post(
            f"/predictions/{got['prediction_id']}/feedback",
            json={"correct": correct},
            headers={"Idempotency-Key": f"fb-{unit}"},
        )
        assert resp.status_code == 201
    shown = look(api, run_jobs, second["id"])
    # Rolled back at once, far below the 10,000 units the primary metric waits for.
    assert shown["decision"] == "rollback", shown["reasons"]
    assert any("correction_rate" in reason for reason in shown["reasons"])
    db.session.refresh(v3)
    assert v3.status == "rejected"
    champion = db.session.scalar(select(ModelVersion).where(ModelVersion.status == "champion"))
    assert champion.version == 2


def test_the_audit_lane_samples_both_arms_evenly_whatever_the_split(api, project, run_jobs):
    resp = api.post("/projects/news/experiments", json={"share": 0.1})
    experiment_id = resp.get_json()["id"]
    serve(api, range(400), "a", calls=1)
    arms = defaultdict(int)
    for seed in range(40):
        item, reason = pool.next_item(project, "user:auditor", _Audit(seed))
        assert reason == "audit"
        arm = db.session.scalar(
            select(Prediction.arm).where(
                Prediction.item_id == item.id, Prediction.experiment_id == experiment_id
            )
        )
        arms[arm] += 1
        pool.annotate(project, item, "user:auditor", TEXT_LABELS[0])
    # The challenger serves 10% of units but gets about half the audits.
    assert 12 <= arms["challenger"] <= 28 and arms[None] == 0, dict(arms)
    assert db.session.scalar(select(Experiment.status)) == "running"
    assert db.session.scalar(select(Item.id).where(Item.label.is_(None))) is not None


class _Audit(random.Random):
    """The queue's random source for one call: its first draw (audit or uncertain?) says
    audit, the rest (which arm, where on the `rand` index) are random."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.first = True

    def random(self) -> float:
        if self.first:
            self.first = False
            return 0.0
        return super().random()
