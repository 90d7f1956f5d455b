"""A PostgreSQL server restarted under the app: the test starts its own cluster and restarts it
for real, under requests and under a retrain about to record its result."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from tests.factories import make_key, make_project, make_user, queue_retrain
from tests.faults.helpers import slow_project
from webapp import training
from webapp.extensions import db
from webapp.models import ModelVersion, Prediction, RetrainRun


def served(client, method: str, path: str, **kwargs):
    """Send a request from a thread of its own: it gets its own app context and session, which
    end with it, as under a real server (the test's own context would otherwise be reused)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(getattr(client, method), path, **kwargs).result()


def _api(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _prediction(n: int) -> dict:
    return {"predictions": [{"data": {"text": f"vote in parliament {n}"}, "label": "politics"}]}


def test_a_retrain_records_its_result_across_a_database_restart(pg_app, pg_cluster):
    project = slow_project(n=3000)
    run_id = queue_retrain(project).id
    stages = []

    def progress(stage: str) -> None:
        stages.append(stage)
        if stage == "recording":
            # The session holds a pooled connection in an open transaction (it just read the
            # champion): the restart cuts it off under the first write after training.
            pg_cluster.restart()

    assert training.run_retrain(run_id, progress=progress) == "succeeded"
    assert stages.count("training") == 1  # the write was retried, not the training
    db.session.rollback()
    run = db.session.get(RetrainRun, run_id)
    assert (run.status, run.decision, run.error) == ("succeeded", "promoted", None)
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 1


def test_the_first_request_after_a_restart_is_served(pg_app, pg_cluster):
    key = make_key(make_project("news"))
    db.session.remove()
    client = pg_app.test_client()
    path = "/api/v1/projects/news/predictions"
    first = served(client, "post", path, json=_prediction(0), headers=_api(key))
    assert first.status_code == 201
    pg_cluster.restart()  # every pooled connection is now dead
    resp = served(client, "post", path, json=_prediction(1), headers=_api(key))
    assert resp.status_code == 201, resp.get_json()


def test_an_unreachable_database_answers_503_with_retry_after(pg_app, pg_cluster):
    key = make_key(make_project("news"))
    make_user()
    db.session.remove()
    client = pg_app.test_client()
    served(client, "get", "/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    login = {"email": "expert@example.com", "password": "secret-pass", "csrf_token": token}
    served(client, "post", "/login", data=login)
    assert served(client, "get", "/projects").status_code == 200
    pg_cluster.stop()
    try:
        path = "/api/v1/projects/news/predictions"
        resp = served(client, "post", path, json=_prediction(0), headers=_api(key))
        assert resp.status_code == 503
        assert resp.mimetype == "application/problem+json"
        assert resp.headers["Retry-After"] == "2"
        assert resp.get_json()["status"] == 503
        page = served(client, "get", "/projects")
        assert page.status_code == 503 and page.mimetype == "text/html"
        assert page.headers["Retry-After"] == "2"
        assert "cannot be reached" in page.get_data(as_text=True)
    finally:
        pg_cluster.start()
    assert served(client, "get", "/projects").status_code == 200


def test_requests_during_a_restart_answer_201_or_503_and_every_201_is_kept(pg_app, pg_cluster):
    key = make_key(make_project("news"))
    acknowledged: list[int] = []
    statuses: list[int] = []
    stop = threading.Event()

    def client_loop(worker: int) -> None:
        client = pg_app.test_client()
        n = 0
        while not stop.is_set():
            n += 1
            resp = client.post(
                "/api/v1/projects/news/predictions",
                json=_prediction(worker * 100_000 + n),
                headers=_api(key),
            )
            statuses.append(resp.status_code)
            if resp.status_code == 201:
                acknowledged.extend(resp.get_json()["ids"])

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    pg_cluster.restart()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert set(statuses) <= {201, 503}, sorted(set(statuses))
    assert statuses.count(201) > 0
    db.session.rollback()
    kept = set(db.session.scalars(select(Prediction.id).where(Prediction.id.in_(acknowledged))))
    assert kept == set(acknowledged)  # nothing acknowledged was lost
