"""Redis stopped under two `corrigo worker` processes and the web app, for real (a redis-server
the test starts, stops and starts again on the same port)."""

from __future__ import annotations

import time

import pytest

from tests.factories import make_key, queue_retrain
from tests.faults.conftest import fault_env, wait_until
from tests.faults.helpers import slow_project
from webapp import create_app, jobs
from webapp.extensions import db
from webapp.models import RetrainRun

OUTAGE = 6  # seconds; long enough for a retrain to run into it, short enough for a test


@pytest.fixture
def outage_app(database_url, redis_server):
    """The app on the suite's database and the test's own redis-server."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_server.url,
            "RQ_QUEUE": "corrigo-outage",
        }
    )
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
        if app.extensions.get("redis") is not None:
            app.extensions["redis"].connection_pool.disconnect()


def status(run_id: int) -> str:
    db.session.rollback()
    return db.session.get(RetrainRun, run_id).status


def test_workers_ride_out_a_redis_outage_and_lose_nothing(outage_app, redis_server, workers):
    project = slow_project()
    key = make_key(project, ["admin"])
    client = outage_app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    # A long heartbeat grace: a job is not "abandoned" for the outage's sake.
    env = fault_env(outage_app, CORRIGO_HEARTBEAT_GRACE="60")
    both = [workers.start(env), workers.start(env)]

    first = client.post("/api/v1/projects/slow/retrain", headers=headers)
    assert first.status_code == 202
    first_id = first.get_json()["run_id"]
    wait_until(lambda: status(first_id) == "running", 60, 0.02, what="the retrain")
    redis_server.stop()
    stopped = time.monotonic()

    # HTTP keeps answering, and what it acknowledges is recorded.
    during = client.post("/api/v1/projects/slow/retrain", headers=headers)
    assert during.status_code == 202
    during_id = during.get_json()["run_id"]
    assert during_id != first_id
    during_job = db.session.get(RetrainRun, during_id).job_id
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    assert [w.poll() for w in both] == [None, None], [workers.output(w) for w in both]

    redis_server.start()
    back = time.monotonic()
    assert jobs.fetch_job(during_job) is None  # Redis never heard of it
    # The retrain caught in the outage finished (its progress reports were skipped) ...
    wait_until(lambda: status(first_id) in ("succeeded", "failed"), 60, what="the first run")
    run = db.session.get(RetrainRun, first_id)
    assert (run.status, run.error) == ("succeeded", None)
    # ... and the run recorded during the outage was swept into Redis and ran, within a minute.
    wait_until(lambda: status(during_id) == "succeeded", 60, what="the outage's run")
    assert time.monotonic() - back < 60
    assert [w.poll() for w in both] == [None, None], [workers.output(w) for w in both]


def test_a_trigger_coalescing_into_an_unenqueued_run_enqueues_it(outage_app, redis_server):
    project = slow_project(n=50)
    redis_server.stop()
    run = queue_retrain(project)
    lost_job = run.job_id  # recorded, not enqueued
    redis_server.start()
    assert jobs.fetch_job(lost_job) is None

    again = queue_retrain(project)
    assert again.id == run.id  # the trigger coalesced ...
    assert again.job_id != lost_job  # ... and enqueued the run nobody had enqueued
    job = jobs.fetch_job(again.job_id)
    assert job.get_status().value == "queued" and job.args == [run.id]
