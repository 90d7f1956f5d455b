"""Concurrent retries of one Idempotency-Key: every one answers the same feedback, none a 500."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from tests.factories import make_key, make_project
from webapp.extensions import db
from webapp.models import Feedback

THREADS = 16
ROUNDS = 5


@pytest.fixture(params=["suite database", "own postgresql"])
def race_app(request):
    """The suite's database (SQLite, or PostgreSQL with DATABASE_URL), and PostgreSQL always."""
    return request.getfixturevalue("app" if request.param == "suite database" else "pg_app")


def _log_prediction(client, key: str, n: int) -> int:
    """Log one prediction through the API; return its id."""
    resp = client.post(
        "/api/v1/projects/news/predictions",
        json={"predictions": [{"data": {"text": f"the team won match {n}"}, "label": "sport"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["ids"][0]


def test_concurrent_retries_of_one_key_all_answer_the_same_feedback(race_app):
    key = make_key(make_project("news"))
    for n in range(ROUNDS):
        prediction_id = _log_prediction(race_app.test_client(), key, n)
        answers = _race(race_app, key, prediction_id, f"retry-{n}")
        assert sorted({r.status_code for r in answers}) == [201], [r.get_json() for r in answers]
        assert len({r.get_json()["feedback_id"] for r in answers}) == 1
        replayed = [r.headers.get("Idempotent-Replayed") for r in answers]
        assert replayed.count("true") == THREADS - 1 and replayed.count(None) == 1
        db.session.rollback()
        count = db.session.scalar(
            select(func.count(Feedback.id)).where(Feedback.idempotency_key == f"retry-{n}")
        )
        assert count == 1


def _race(app, key: str, prediction_id: int, idempotency_key: str) -> list:
    """POST the same feedback from THREADS threads released at once; return the answers."""
    barrier = threading.Barrier(THREADS)

    def post(_):
        client = app.test_client()
        barrier.wait()
        return client.post(
            f"/api/v1/predictions/{prediction_id}/feedback",
            # "The model was wrong" also disputes the item: the path that autoflushed.
            json={"correct": False, "label": "tech", "comment": "not sport"},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
        )

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(post, range(THREADS)))
