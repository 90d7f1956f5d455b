"""Retrain, runs and model versions over HTTP, with a real RQ worker."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.api.helpers import assert_problem, label_all
from tests.factories import make_items, queue_retrain
from webapp.extensions import db
from webapp.models import Item, Project, RetrainRun


def test_retrain_is_accepted_and_points_at_its_run(api, project):
    project.settings = dict(project.settings, retrain_every=0)  # no automatic run to join
    db.session.commit()
    label_all(project, make_items(project, 12))  # trainable: a retrain without labels is a 409
    resp = api.post("/projects/news/retrain")
    assert resp.status_code == 202
    run_id = resp.get_json()["run_id"]
    assert resp.headers["Location"].endswith(f"/api/v1/projects/news/runs/{run_id}")
    shown = api.get(f"/projects/news/runs/{run_id}").get_json()
    assert shown["run_id"] == run_id
    assert (shown["status"], shown["trigger"], shown["decision"]) == ("queued", "manual", None)
    assert shown["reasons"] == [] and shown["model_version"] is None
    assert shown["finished_at"] is None and shown["created_at"].endswith("Z")


def test_retrain_triggers_coalesce_while_one_is_queued(api, project):
    label_all(project, make_items(project, 12))
    first = api.post("/projects/news/retrain").get_json()["run_id"]
    second = api.post("/projects/news/retrain").get_json()["run_id"]
    assert first == second
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1


def test_a_retrain_promotes_and_then_serves_predictions(api, project, run_jobs):
    labeled = make_items(project, 60)
    make_items(project, 30, start=60)
    label_all(project, labeled)
    assert_problem(api.post("/projects/news/predict", {"data": {"text": "a goal"}}), 409)
    assert api.get("/projects/news/models").get_json() == {"models": []}

    run_id = api.post("/projects/news/retrain").get_json()["run_id"]
    run_jobs()
    db.session.expire_all()

    run = api.get(f"/projects/news/runs/{run_id}").get_json()
    assert run["status"] == "succeeded", run["error"]
    assert run["decision"] == "promoted", run["reasons"]
    assert run["model_version"] == 1 and run["error"] is None and run["finished_at"]
    rules = {r["rule"]: r["passed"] for r in run["reasons"]}
    # No held-out audits yet: the first model is judged by cross-validation on its labels.
    assert rules == {
        "judged_by_cross_validation": True,
        "heldout_size": True,
        "beats_baseline": True,
        "no_class_regression": True,
    }
    assert all(r["numbers"] is not None for r in run["reasons"])
    assert run["metrics"]["candidate"]["judged_by"] == "cross_validation"
    assert run["metrics"]["champion"] is None

    (model,) = api.get("/projects/news/models").get_json()["models"]
    assert (model["version"], model["status"]) == (1, "champion")
    assert model["promoted_at"] and model["train_size"] > 0 and len(model["snapshot_digest"]) == 64
    assert model["metrics"] == run["metrics"]["candidate"]

    out = api.post("/projects/news/predict", {"data": {"text": "election vote in parliament"}})
    assert out.status_code == 200
    assert (out.get_json()["label"], out.get_json()["model_version"]) == ("politics", 1)

    # A second retrain on the same training labels ties the champion on the audits labeled
    # since: a tie is not promoted.
    audits = db.session.scalars(select(Item.id).where(Item.label.is_(None))).all()
    label_all(project, audits, lane="audit")
    second = api.post("/projects/news/retrain").get_json()["run_id"]
    assert second != run_id
    run_jobs()
    db.session.expire_all()
    models = api.get("/projects/news/models").get_json()["models"]
    assert [(m["version"], m["status"]) for m in models] == [(2, "rejected"), (1, "champion")]
    tied = api.get(f"/projects/news/runs/{second}").get_json()
    assert tied["metrics"]["champion_version"] == 1 and tied["decision"] == "rejected"
    (gain,) = [r for r in tied["reasons"] if r["rule"] == "observed_gain"]
    assert not gain["passed"] and "a tie is not an improvement" in gain["detail"]
    assert tied["metrics"]["candidate"]["judged_by"] == "heldout_unseen"


def test_a_retrain_that_cannot_train_reads_failed_with_its_error(api, project, run_jobs):
    # Queued without the API's check (an automatic trigger does that); the job refuses it.
    run_id = queue_retrain(project).id
    run_jobs()
    db.session.expire_all()
    run = api.get(f"/projects/news/runs/{run_id}").get_json()
    assert run["status"] == "failed" and run["decision"] is None
    assert run["error"] and run["finished_at"]
    assert api.get("/projects/news/models").get_json() == {"models": []}


def test_another_projects_run_is_404(api, other, project):
    sports = db.session.scalar(select(Project).where(Project.slug == "sports"))
    other_run = queue_retrain(sports).id
    assert_problem(api.get(f"/projects/news/runs/{other_run}"), 404)
    assert_problem(other.get(f"/projects/news/runs/{other_run}"), 404)
