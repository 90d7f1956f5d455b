"""A work horse killed (the OOM killer), a worker crashed with its horse, a rescore killed
mid-way, and SIGTERM to every process: real `corrigo worker` processes on a real Redis."""

from __future__ import annotations

import os
import signal
import time

from sqlalchemy import func, select

from tests.factories import queue_retrain
from tests.faults.conftest import fault_env, wait_until
from tests.faults.helpers import slow_project
from webapp import jobs, training
from webapp.extensions import db
from webapp.models import Item, RetrainRun, Task


def fresh(model, row_id):
    """The row as the database has it now (other processes write it)."""
    db.session.rollback()
    return db.session.get(model, row_id)


def status(model, row_id) -> str:
    return fresh(model, row_id).status


def test_a_killed_work_horse_fails_its_run_at_once_and_the_worker_lives_on(app, workers):
    project = slow_project()
    worker = workers.start(fault_env(app))
    run_id = queue_retrain(project).id
    wait_until(lambda: status(RetrainRun, run_id) == "running", 60, 0.02, what="the retrain")
    workers.horse(worker).kill()  # SIGKILL, as the OOM killer sends

    wait_until(lambda: status(RetrainRun, run_id) == "failed", 5, what="the run to fail")
    run = fresh(RetrainRun, run_id)
    assert "signal 9" in run.error and "stopped before it finished" in run.error
    assert worker.poll() is None, workers.output(worker)
    # The project is not stuck: the next trigger queues a new run, and the same worker runs it.
    again = queue_retrain(project).id
    assert again != run_id
    wait_until(lambda: status(RetrainRun, again) == "succeeded", 90, what="the next retrain")


def test_after_a_hard_crash_one_worker_start_recovers_within_the_heartbeat_timeout(app, workers):
    project = slow_project()
    env = fault_env(app)
    crashed = workers.start(env)
    run_id = queue_retrain(project).id
    wait_until(lambda: status(RetrainRun, run_id) == "running", 60, 0.02, what="the retrain")
    horse = workers.horse(crashed)
    os.kill(crashed.pid, signal.SIGKILL)  # the worker and its horse die together
    horse.kill()
    crashed.wait(timeout=10)
    waiting = queue_retrain(project).id  # queued behind the lost run
    assert waiting != run_id

    started = time.monotonic()
    survivor = workers.start(env)  # one start, no restart
    wait_until(lambda: status(RetrainRun, run_id) == "failed", 30, what="the lost run to fail")
    # Heartbeat every 1 s, abandoned 2 s after the last one, a sweep every second: the start
    # itself may come before the heartbeat expired, so the living worker's sweep settles it.
    assert time.monotonic() - started < 20
    assert "stopped before it finished" in fresh(RetrainRun, run_id).error
    wait_until(lambda: status(RetrainRun, waiting) == "succeeded", 90, what="the waiting run")
    assert survivor.poll() is None, workers.output(survivor)


def test_a_killed_rescore_is_requeued_and_finishes_the_pool(app, workers):
    project = slow_project(n=5000, labeled=1500)
    # The first champion, trained in this process; its promotion queues the pool's rescore.
    training.run_retrain(queue_retrain(project).id)
    task = db.session.scalar(select(Task).where(Task.project_id == project.id))
    assert task is not None and task.status == "queued"
    # Scores carry the champion's model version id (and the strategy).
    task_id, champion = task.id, training.champion_version(project.id).id
    worker = workers.start(fault_env(app, CORRIGO_RESCORE_CHUNK="100"))

    def scored_some() -> bool:
        task = fresh(Task, task_id)
        return task.status == "running" and task.progress > 0

    wait_until(scored_some, 60, 0.02, what="the rescore to start")
    workers.horse(worker).kill()
    left = db.session.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project.id, Item.label.is_(None), Item.scored_by.is_(None)
        )
    )
    assert left > 0  # killed mid-way

    wait_until(lambda: status(Task, task_id) == "succeeded", 90, what="the re-queued rescore")
    task = fresh(Task, task_id)
    assert task.args.get("requeues") == 1
    unscored = db.session.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project.id,
            Item.label.is_(None),
            Item.scored_by.is_distinct_from(champion),
        )
    )
    assert unscored == 0
    assert worker.poll() is None, workers.output(worker)


def _sigterm_everyone(worker, horse) -> None:
    """What `docker stop`, systemd and honcho do: SIGTERM to the worker's process group, and
    (systemd's control group) to the work horse in its own group too."""
    os.killpg(worker.pid, signal.SIGTERM)
    horse.send_signal(signal.SIGTERM)


def test_sigterm_lets_the_running_retrain_finish_within_the_grace_period(app, workers):
    project = slow_project()
    worker = workers.start(fault_env(app, CORRIGO_SHUTDOWN_GRACE="120"))
    run_id = queue_retrain(project).id
    wait_until(lambda: status(RetrainRun, run_id) == "running", 60, 0.02, what="the retrain")
    _sigterm_everyone(worker, workers.horse(worker))

    assert worker.wait(timeout=120) == 0, workers.output(worker)
    run = fresh(RetrainRun, run_id)
    assert (run.status, run.decision) == ("succeeded", "promoted"), run.error


def test_sigterm_past_the_grace_period_hands_the_retrain_back_to_the_queue(app, workers):
    project = slow_project()
    # Half a second of grace, heartbeats 30 s apart: the deadline is kept all the same.
    env = fault_env(app, CORRIGO_SHUTDOWN_GRACE="0.5", CORRIGO_HEARTBEAT_SECONDS="30")
    worker = workers.start(env)
    run_id = queue_retrain(project).id
    wait_until(lambda: status(RetrainRun, run_id) == "running", 60, 0.02, what="the retrain")
    _sigterm_everyone(worker, workers.horse(worker))

    assert worker.wait(timeout=15) == 0, workers.output(worker)
    run = fresh(RetrainRun, run_id)
    assert run.status == "queued" and run.started_at is None
    assert jobs.job_status(run.job_id) == "queued"  # handed back, not lost
    workers.start(fault_env(app))
    wait_until(lambda: status(RetrainRun, run_id) == "succeeded", 90, what="the handed-back run")
