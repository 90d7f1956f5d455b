"""The model registry over HTTP: one version, promote, reject, challenger and rollback."""

from __future__ import annotations

from sqlalchemy import select

from tests.api.helpers import assert_problem
from tests.factories import make_version
from webapp.extensions import db
from webapp.models import ApiKey, ModelVersion

WHY = {"reason": "checked on last week's traffic"}


def second_version(project, champion) -> ModelVersion:
    """A candidate v2 that serves like the champion (a copy of its artifact)."""
    artifact = db.session.scalar(
        select(ModelVersion.artifact).where(ModelVersion.id == champion.id)
    )
    return make_version(project, 2, artifact=artifact)


def served(api) -> int:
    """The model version a prediction is made with."""
    out = api.post("/projects/news/predict", {"data": {"text": "election vote in parliament"}})
    assert out.status_code == 200, out.get_json()
    return out.get_json()["model_version"]


def test_one_version_shows_its_metrics_lineage_and_events(api, project, champion):
    shown = api.get("/projects/news/models/1").get_json()
    assert (shown["version"], shown["status"]) == (1, "champion")
    assert shown["metrics"] == champion.metrics and shown["metrics"]["macro_f1"] > 0
    assert shown["run_id"] == champion.run_id and shown["template"] == "text-logreg"
    # The gate promoted the first model: its event says who (the gate) and why.
    (event,) = shown["events"]
    assert (event["action"], event["actor"], event["version"]) == ("auto_promote", "gate", 1)
    assert shown["params"] and shown["library_versions"]["scikit-learn"]
    assert shown["training_seconds"] is not None and shown["heldout_size"] == 0
    (listed,) = api.get("/projects/news/models").get_json()["models"]
    assert {k: v for k, v in shown.items() if k != "events"} == listed
    assert_problem(api.get("/projects/news/models/7"), 404)
    assert_problem(api.get("/projects/news/models/99999999999"), 404)


def test_promote_then_roll_back_changes_what_predictions_use(api, project, champion):
    second_version(project, champion)
    assert served(api) == 1
    resp = api.post("/projects/news/models/2/promote", WHY)
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["champion"], body["challenger"]) == (2, None)
    event = body["event"]
    assert (event["action"], event["version"], event["from_version"]) == ("promote", 2, 1)
    key_id = db.session.scalar(select(ApiKey.id))
    assert event["actor"] == f"key:{key_id}" and event["reason"] == WHY["reason"]
    assert event["created_at"].endswith("Z")
    assert served(api) == 2

    resp = api.post("/projects/news/models/rollback", {"reason": "v2 misroutes politics"})
    assert resp.status_code == 200
    assert resp.get_json()["champion"] == 1
    assert served(api) == 1
    models = api.get("/projects/news/models").get_json()["models"]
    assert [(m["version"], m["status"]) for m in models] == [(2, "retired"), (1, "champion")]
    history = api.get("/projects/news/models/2").get_json()["events"]
    assert [(e["action"], e["version"], e["from_version"]) for e in history] == [
        ("rollback", 1, 2),
        ("promote", 2, 1),
    ]


def test_challenger_then_reject(api, project, champion):
    second_version(project, champion)
    make_version(project, 3)
    body = api.post("/projects/news/models/2/challenger", WHY).get_json()
    assert (body["champion"], body["challenger"]) == (1, 2)
    body = api.post("/projects/news/models/3/challenger", WHY).get_json()
    assert body["challenger"] == 3 and body["event"]["from_version"] == 2
    assert api.get("/projects/news/models/2").get_json()["status"] == "candidate"
    body = api.post("/projects/news/models/3/reject", {"reason": "worse on tech"}).get_json()
    assert (body["event"]["action"], body["challenger"]) == ("reject", None)
    assert served(api) == 1


def test_conflicts_are_409_with_a_reason_and_change_nothing(api, project, champion):
    second_version(project, champion)
    doc = assert_problem(api.post("/projects/news/models/1/reject", WHY), 409)
    assert "champion and cannot be rejected" in doc["detail"]
    assert (
        "already the champion"
        in assert_problem(api.post("/projects/news/models/1/promote", WHY), 409)["detail"]
    )
    assert (
        "Nothing to roll back to"
        in assert_problem(api.post("/projects/news/models/rollback", WHY), 409)["detail"]
    )
    doc = assert_problem(api.post("/projects/news/models/rollback", {**WHY, "to_version": 2}), 409)
    assert "a rollback goes back to a retired" in doc["detail"]
    assert_problem(
        api.post("/projects/news/models/rollback", {**WHY, "to_version": 9}),
        422,
        field="to_version",
    )
    assert_problem(api.post("/projects/news/models/9/promote", WHY), 404)
    assert served(api) == 1
    models = api.get("/projects/news/models").get_json()["models"]
    assert [(m["version"], m["status"]) for m in models] == [(2, "candidate"), (1, "champion")]


def test_a_reason_is_required(api, project, champion):
    for body in [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 2001}]:
        assert_problem(api.post("/projects/news/models/1/reject", body), 422, "reason", case=body)
    assert_problem(api.post("/projects/news/models/1/reject", {**WHY, "extra": 1}), 422, "extra")


def test_another_projects_version_is_404(api, other, project):
    make_version(project, 1, "champion")
    make_version(project, 2)
    assert_problem(other.post("/projects/news/models/2/promote", WHY), 404)
    assert_problem(other.get("/projects/sports/models/2"), 404)
    assert api.get("/projects/news/models/2").get_json()["status"] == "candidate"
