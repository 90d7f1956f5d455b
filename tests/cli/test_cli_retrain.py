"""`corrigo retrain` (with and without --wait) and `corrigo worker` as real processes."""

from __future__ import annotations

import redis
from rq.job import Job
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import ModelVersion, RetrainRun


def labeled_project(make, slug="news", n=150):
    """A text project with `n` labeled items, enough for a first champion (no automatic runs)."""
    project = make.make_project(slug, settings={"retrain_every": 0})
    make.label_all(project, make.make_items(project, n))
    return project


def test_retrain_queues_a_run_and_prints_its_id(corrigo, make, app):
    labeled_project(make)
    result = corrigo("retrain", "news")
    assert result.exit_code == 0, result.output
    run = db.session.scalar(select(RetrainRun))
    assert result.stdout == f"{run.id}\n"
    assert (run.status, run.trigger) == ("queued", "cli")
    assert "No worker listens on queue 'corrigo-test'" in result.stderr
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    assert Job.exists(run.job_id, connection=conn)
    # A second trigger joins the queued run instead of queueing another.
    again = corrigo("retrain", "news")
    assert again.exit_code == 0
    assert again.stdout == f"{run.id}\n"
    assert "already queued" in again.stderr
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1


def test_worker_burst_runs_the_queued_retrain(corrigo, make, corrigo_process):
    labeled_project(make)
    run_id = int(corrigo("retrain", "news").stdout)
    worker = corrigo_process("worker", "--burst")
    output, _ = worker.communicate(timeout=180)
    assert worker.returncode == 0, output
    db.session.expire_all()
    run = db.session.get(RetrainRun, run_id)
    assert run.status == "succeeded", (run.error, output)
    assert run.decision == "promoted"
    assert db.session.scalar(select(ModelVersion.status)) == "champion"


def test_retrain_wait_prints_the_verdict_and_every_reason(corrigo, make, corrigo_process):
    labeled_project(make)
    corrigo_process("worker")
    result = corrigo("retrain", "news", "--wait", "--timeout", "180", "--poll", "0.2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    run_id = int(lines[0])
    assert lines[1] == f"run {run_id} succeeded: promoted model v1"
    assert "cross-validated macro-F1" in lines[2]  # no held-out audits yet: the first model
    assert [line.split(":")[0].split() for line in lines[3:]] == [
        ["pass", "judged_by_cross_validation"],
        ["pass", "heldout_size"],
        ["pass", "beats_baseline"],
        ["pass", "no_class_regression"],
    ]


def test_retrain_wait_gives_up_after_the_timeout(corrigo, make):
    labeled_project(make)
    result = corrigo("retrain", "news", "--wait", "--timeout", "0.3", "--poll", "0.1")
    assert result.exit_code == 1
    assert "is still queued after 0.3 s" in result.stderr
    assert db.session.scalar(select(RetrainRun.status)) == "queued"


def test_retrain_bad_input(corrigo, make):
    result = corrigo("retrain", "nope")
    assert result.exit_code == 2 and "no project 'nope'" in result.stderr
    labeled_project(make)
    result = corrigo("retrain", "news", "--timeout", "5")
    assert result.exit_code == 2 and "only makes sense with --wait" in result.stderr
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 0


def test_retrain_without_two_labels_says_why_and_queues_nothing(corrigo, make):
    project = make.make_project("news")
    result = corrigo("retrain", "news")
    assert result.exit_code == 1 and result.stdout == ""
    assert "cannot retrain news: Nothing to train on" in result.stderr
    make.label_all(project, make.make_items(project, 4), label="tech")
    result = corrigo("retrain", "news")
    assert result.exit_code == 1
    assert "at least two labels" in result.stderr and "all carry 'tech'" in result.stderr
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 0
