"""A real `corrigo worker` holds no transaction open while it waits for jobs (PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis
from rq import Worker
from sqlalchemy import text

from webapp import jobs
from webapp.extensions import db

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgresql"),
    reason="pg_stat_activity is PostgreSQL's; run with DATABASE_URL=postgresql://…",
)


def _wait_until_idle(conn: redis.Redis, queue: str, pid: int, timeout: float = 60.0) -> None:
    """Wait until the worker process `pid` is registered and waiting for a job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in Worker.all(connection=conn):
            if worker.pid == pid and queue in worker.queue_names() and worker.get_state() == "idle":
                return
        time.sleep(0.2)
    raise AssertionError("the worker did not go idle")


def _sessions(name: str) -> list[tuple[str, str | None]]:
    """(state, query) of every PostgreSQL connection opened under this application_name."""
    rows = db.session.execute(
        text("SELECT state, query FROM pg_stat_activity WHERE application_name = :name"),
        {"name": name},
    ).all()
    db.session.rollback()
    return [tuple(r) for r in rows]


def test_an_idle_worker_holds_no_transaction_open(app, tmp_path):
    name = f"corrigo-worker-test-{os.getpid()}"
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    env = dict(
        os.environ,
        DATABASE_URL=f"{url}{'&' if '?' in url else '?'}application_name={name}",
        REDIS_URL=app.config["REDIS_URL"],
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        CORRIGO_INSTANCE=str(tmp_path),
        SECRET_KEY="test",
    )
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "webapp", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_idle(conn, app.config["RQ_QUEUE"], proc.pid)
        time.sleep(0.5)
        sessions = _sessions(name)
        assert sessions, "the worker's start (requeue_pending) should have used the database"
        assert [s for s in sessions if s[0] == "idle in transaction"] == [], sessions

        # And after a job: a rescore of a task that does not exist reads the database and ends.
        job_id = jobs.enqueue("worker.jobs.rescore", 2**31 - 1, job_id="rescore-session-test")
        deadline = time.monotonic() + 60
        while jobs.job_status(job_id) not in ("finished", "failed"):
            assert time.monotonic() < deadline, "the job did not run"
            time.sleep(0.2)
        assert jobs.job_status(job_id) == "finished"
        _wait_until_idle(conn, app.config["RQ_QUEUE"], proc.pid)
        time.sleep(0.5)
        sessions = _sessions(name)
        assert [s for s in sessions if s[0] == "idle in transaction"] == [], sessions
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        conn.close()
