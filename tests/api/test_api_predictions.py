"""Predict, log predictions, and feedback with idempotency."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from tests.api.helpers import assert_problem, item_count
from webapp.extensions import db
from webapp.models import Feedback, Item, Prediction
from webapp.pool import items


def count(model) -> int:
    """Rows in a table."""
    return db.session.scalar(select(func.count()).select_from(model))


def log_one(api, text="phone chip software", slug="news") -> int:
    """Log one prediction of the app's own model through the API; return its id."""
    row = {"data": {"text": text}, "label": "tech"}
    resp = api.post(f"/projects/{slug}/predictions", {"predictions": [row]})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["ids"][0]


def test_predict_before_any_model_is_409_and_writes_nothing(api, project):
    doc = assert_problem(api.post("/projects/news/predict", {"data": {"text": "a goal"}}), 409)
    assert "no model" in doc["detail"]
    assert item_count(project) == 0 and count(Prediction) == 0


def test_predict_with_the_champion(api, project, champion):
    resp = api.post(
        "/projects/news/predict",
        {"data": {"text": "the team won the cup match with a late goal"}, "external_id": "req-1"},
    )
    assert resp.status_code == 200
    out = resp.get_json()
    assert out["label"] == "sport"
    assert out["model_version"] == champion.version == 1
    assert set(out["probabilities"]) == {"sport", "politics", "tech"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert max(out["probabilities"], key=out["probabilities"].get) == "sport"
    prediction = db.session.get(Prediction, out["prediction_id"])
    assert prediction.item_id == out["item_id"] and prediction.label == "sport"
    again = api.post(
        "/projects/news/predict", {"data": {"text": "a goal"}, "external_id": "req-1"}
    ).get_json()
    assert again["item_id"] == out["item_id"] and again["prediction_id"] != out["prediction_id"]


BAD_PREDICT = [
    ({}, "data"),
    ({"data": None}, "data"),
    ({"data": ["a"]}, "data"),
    ({"data": {"text": 3}}, "data.text"),
    ({"data": {"text": "a"}, "external_id": 12}, "external_id"),
    ({"data": {"text": "a"}, "unit": ["u"]}, "unit"),
    ({"data": {"text": "a"}, "label": "sport"}, "label"),
]


def test_predict_rejects_bad_input_by_field(api, project):
    for payload, field in BAD_PREDICT:
        assert_problem(api.post("/projects/news/predict", payload), 422, field, case=payload)
    assert item_count(project) == 0


def test_log_predictions_records_each_row(api, project):
    rows = [
        {"data": {"text": "vote"}, "label": "politics", "probabilities": {"politics": 0.7}},
        {
            "data": {"text": "chip"},
            "label": "tech",
            "external_id": "e1",
            "model": "v7",
            "unit": "u",
        },
    ]
    resp = api.post("/projects/news/predictions", {"predictions": rows})
    assert resp.status_code == 201
    ids = resp.get_json()["ids"]
    first, second = (db.session.get(Prediction, i) for i in ids)
    assert (first.label, first.probabilities, first.model_version_id) == (
        "politics",
        {"politics": 0.7},
        None,
    )
    assert (second.label, second.model_name, second.unit) == ("tech", "v7", "u")
    assert db.session.get(Item, second.item_id).external_id == "e1"


BAD_LOG_ROWS = [
    ({"label": "tech"}, "predictions[1].data"),
    ({"data": {"text": "a"}}, "predictions[1].label"),
    ({"data": {"text": "a"}, "label": "weather"}, "predictions[1].label"),
    ({"data": {"text": "a"}, "label": 3}, "predictions[1].label"),
    (
        {"data": {"text": "a"}, "label": "tech", "probabilities": [0.5]},
        "predictions[1].probabilities",
    ),
    (
        {"data": {"text": "a"}, "label": "tech", "probabilities": {"weather": 0.5}},
        "predictions[1].probabilities.weather",
    ),
    (
        {"data": {"text": "a"}, "label": "tech", "probabilities": {"tech": 1.5}},
        "predictions[1].probabilities.tech",
    ),
    ({"data": {"text": "a"}, "label": "tech", "model": 7}, "predictions[1].model"),
    ({"data": {"text": "a"}, "label": "tech", "score": 7}, "predictions[1].score"),
]


def test_log_predictions_rejects_the_batch_on_one_bad_row(api, project):
    good = {"data": {"text": "fine"}, "label": "sport"}
    for row, field in BAD_LOG_ROWS:
        resp = api.post("/projects/news/predictions", {"predictions": [good, row]})
        assert_problem(resp, 422, field, case=row)
    assert count(Prediction) == 0 and item_count(project) == 0


def test_log_predictions_caps_the_batch(api, project):
    rows = [{"data": {"text": "a"}, "label": "tech"}] * 1001
    assert_problem(
        api.post("/projects/news/predictions", {"predictions": rows}), 422, "predictions"
    )
    assert_problem(api.post("/projects/news/predictions", {"predictions": []}), 422, "predictions")
    assert count(Prediction) == 0


def test_feedback_is_recorded_and_a_wrong_verdict_disputes_the_item(api, project):
    prediction_id = log_one(api)
    resp = api.post(
        f"/predictions/{prediction_id}/feedback",
        {"correct": False, "label": "sport", "comment": "it was about football"},
    )
    assert resp.status_code == 201
    feedback = db.session.get(Feedback, resp.get_json()["feedback_id"])
    assert (feedback.correct, feedback.label, feedback.comment) == (
        False,
        "sport",
        "it was about football",
    )
    item = db.session.get(Item, db.session.get(Prediction, prediction_id).item_id)
    assert item.disputed_at is not None


def test_positive_feedback_disputes_nothing(api, project):
    prediction_id = log_one(api)
    assert api.post(f"/predictions/{prediction_id}/feedback", {"correct": True}).status_code == 201
    assert db.session.scalar(select(Item.disputed_at)) is None


def test_a_retry_with_the_same_idempotency_key_creates_nothing(api, project):
    prediction_id = log_one(api)
    headers = {"Idempotency-Key": "retry-7f3a"}
    first = api.post(f"/predictions/{prediction_id}/feedback", {"correct": False}, headers=headers)
    second = api.post(f"/predictions/{prediction_id}/feedback", {"correct": False}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count(Feedback) == 1


def test_without_a_key_each_feedback_is_new(api, project):
    prediction_id = log_one(api)
    ids = {
        api.post(f"/predictions/{prediction_id}/feedback", {"correct": True}).get_json()[
            "feedback_id"
        ]
        for _ in range(2)
    }
    assert len(ids) == 2 and count(Feedback) == 2


def test_the_same_idempotency_key_with_another_request_is_422(api, project):
    first_id, second_id = log_one(api), log_one(api, text="other")
    headers = {"Idempotency-Key": "k-1"}
    api.post(f"/predictions/{first_id}/feedback", {"correct": True}, headers=headers)
    other_body = api.post(f"/predictions/{first_id}/feedback", {"correct": False}, headers=headers)
    assert_problem(other_body, 422, "Idempotency-Key")
    other_prediction = api.post(
        f"/predictions/{second_id}/feedback", {"correct": True}, headers=headers
    )
    assert_problem(other_prediction, 422, "Idempotency-Key")
    assert count(Feedback) == 1


def test_an_overlong_idempotency_key_is_422(api, project):
    prediction_id = log_one(api)
    resp = api.post(
        f"/predictions/{prediction_id}/feedback",
        {"correct": True},
        headers={"Idempotency-Key": "k" * 201},
    )
    assert_problem(resp, 422, "Idempotency-Key")
    assert count(Feedback) == 0


BAD_FEEDBACK = [
    ({}, "correct"),
    ({"comment": "only a comment"}, "correct"),
    ({"correct": "no"}, "correct"),
    ({"correct": 0}, "correct"),
    ({"label": "weather"}, "label"),
    ({"label": ["sport"]}, "label"),
    ({"correct": True, "comment": 5}, "comment"),
    ({"correct": True, "rating": 5}, "rating"),
]


def test_feedback_rejects_bad_input_by_field(api, project):
    prediction_id = log_one(api)
    for payload, field in BAD_FEEDBACK:
        resp = api.post(f"/predictions/{prediction_id}/feedback", payload)
        assert_problem(resp, 422, field, case=payload)
    assert count(Feedback) == 0
    assert db.session.scalar(select(Item.disputed_at)) is None


def test_feedback_on_a_prediction_of_another_project_is_404(api, other, project):
    prediction_id = log_one(other, text="a goal", slug="sports")
    assert_problem(api.post(f"/predictions/{prediction_id}/feedback", {"correct": False}), 404)
    assert count(Feedback) == 0


def test_a_concurrent_insert_of_the_same_external_id_is_answered_not_500(api, project, monkeypatch):
    """Another request creates the item between our look-up and our insert: we use theirs."""
    original = items.known_external_ids
    raced = []

    def racing(project_, external_ids):
        """Let a competitor insert the item right after our look-up, as a concurrent request."""
        known = original(project_, external_ids)
        if not raced:
            raced.append(True)
            with db.engine.begin() as conn:
                conn.execute(
                    insert(Item).values(
                        project_id=project_.id,
                        external_id="shared",
                        data={"text": "chip"},
                        rand=0.5,
                    )
                )
        return known

    monkeypatch.setattr(items, "known_external_ids", racing)
    row = {"data": {"text": "chip"}, "label": "tech", "external_id": "shared"}
    resp = api.post("/projects/news/predictions", {"predictions": [row]})
    assert resp.status_code == 201
    prediction = db.session.get(Prediction, resp.get_json()["ids"][0])
    assert db.session.get(Item, prediction.item_id).external_id == "shared"
    assert item_count(project) == 1
    assert raced  # the competitor really went first


def test_logged_predictions_keep_their_own_timestamp_for_backfill(api, project):
    rows = [
        {"data": {"text": "a goal"}, "label": "sport", "timestamp": "2026-11-01T10:15:00Z"},
        {"data": {"text": "a vote"}, "label": "politics", "timestamp": "2026-11-01T12:15:00+02:00"},
        {"data": {"text": "a chip"}, "label": "tech", "timestamp": "2026-11-02T08:00:00"},
        {"data": {"text": "an app"}, "label": "tech"},
    ]
    resp = api.post("/projects/news/predictions", {"predictions": rows})
    assert resp.status_code == 201, resp.get_json()
    stamps = [db.session.get(Prediction, i).created_at for i in resp.get_json()["ids"]]
    assert [s.isoformat() for s in stamps[:3]] == [
        "2026-11-01T10:15:00",
        "2026-11-01T10:15:00",  # +02:00 stored as UTC
        "2026-11-02T08:00:00",  # no offset: UTC
    ]
    assert stamps[3] > stamps[2]  # no timestamp: now


@pytest.mark.parametrize(
    "stamp, message",
    [("2999-01-01T00:00:00Z", "future"), ("yesterday", "ISO 8601"), (1733400000, "string")],
)
def test_a_bad_timestamp_is_refused_naming_the_row_and_nothing_is_logged(
    api, project, stamp, message
):
    rows = [
        {"data": {"text": "a goal"}, "label": "sport"},
        {"data": {"text": "a vote"}, "label": "politics", "timestamp": stamp},
    ]
    doc = assert_problem(
        api.post("/projects/news/predictions", {"predictions": rows}),
        422,
        "predictions[1].timestamp",
    )
    assert message.lower() in str(doc).lower()
    assert count(Prediction) == 0
