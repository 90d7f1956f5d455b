"""The whole loop through HTTP, with a real RQ worker (burst mode) against a real Redis:
import items, label through the queue until a retrain triggers, see a promoted champion,
predict, post feedback that disputes an item, and see that item first in the queue."""

from tests.factories import make_key, make_project, text_for


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_the_closed_loop_over_http(app, client, run_jobs):
    project = make_project(settings={"retrain_every": 120, "gate": {"min_heldout": 10}})
    admin = _auth(make_key(project, ["admin", "predict", "feedback"]))
    expert = _auth(make_key(project, ["label"]))
    labels = project.labels

    # 1. An app imports items.
    items = [
        {"external_id": f"doc-{i}", "data": {"text": text_for(labels[i % 3], i)}}
        for i in range(200)
    ]
    resp = client.post("/api/v1/projects/news/items", json={"items": items}, headers=admin)
    assert resp.status_code == 201, resp.json
    assert len(set(resp.json["ids"])) == 200
    truth = {i: labels[n % 3] for n, i in enumerate(resp.json["ids"])}

    # No model yet: predict says so.
    resp = client.post(
        "/api/v1/projects/news/predict", json={"data": {"text": "goal"}}, headers=admin
    )
    assert resp.status_code == 409
    assert resp.mimetype == "application/problem+json"

    # 2. An expert labels through the queue until the automatic retrain triggers.
    for _ in range(120):
        resp = client.get("/api/v1/projects/news/queue/next", headers=expert)
        assert resp.status_code == 200, resp.json
        assert resp.json["reason"] == "cold-start"
        item_id = resp.json["item_id"]
        resp = client.post(
            f"/api/v1/items/{item_id}/annotations", json={"label": truth[item_id]}, headers=expert
        )
        assert resp.status_code == 201, resp.json

    # 3. The worker retrains, the gate promotes, and the pool is rescored.
    run_jobs()
    resp = client.get("/api/v1/projects/news/models", headers=admin)
    models = resp.json["models"]
    assert [(m["version"], m["status"]) for m in models] == [(1, "champion")]
    assert models[0]["metrics"]["macro_f1"] > 0.8

    # 4. The app predicts with the champion.
    resp = client.post(
        "/api/v1/projects/news/predict",
        json={"data": {"text": "the minister lost the vote in parliament"}, "external_id": "p-1"},
        headers=admin,
    )
    assert resp.status_code == 200, resp.json
    prediction = resp.json
    assert prediction["label"] == "politics" and prediction["model_version"] == 1
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-3

    # 5. An end user says the prediction was wrong: the item becomes disputed …
    resp = client.post(
        f"/api/v1/predictions/{prediction['prediction_id']}/feedback",
        json={"correct": False, "label": "tech", "comment": "it was about e-voting"},
        headers={**admin, "Idempotency-Key": "fb-1"},
    )
    assert resp.status_code == 201, resp.json

    # … and it is first in the queue of the next expert.
    other_expert = _auth(make_key(project, ["label"]))
    resp = client.get("/api/v1/projects/news/queue/next", headers=other_expert)
    assert resp.status_code == 200
    assert (resp.json["item_id"], resp.json["reason"]) == (prediction["item_id"], "disputed")

    # Everyone else's queue now follows the model's uncertainty (or a random audit).
    resp = client.get("/api/v1/projects/news/queue/next", headers=expert)
    assert resp.json["reason"] in ("uncertain", "audit")
    assert resp.json["item_id"] != prediction["item_id"], "leased to the other expert"
    assert resp.json["suggestion"]["label"] in labels
