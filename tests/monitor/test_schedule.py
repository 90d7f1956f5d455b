"""Scheduled retrains: cron schedules in the database, fired by the real clock process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.faults.conftest import fault_env, free_port, wait_until
from webapp import create_app, schedule, training
from webapp.extensions import db
from webapp.models import RetrainRun, ScheduleState, utcnow

# Labels arrive without starting automatic retrains: only the schedule retrains.
NO_AUTO = {"retrain_every": 0, "first_retrain_at": 100000}


def _scheduled_project(make, expression="*/5 * * * *"):
    project = make.make_project(settings={**NO_AUTO, "retrain_schedule": expression})
    ids = make.make_items(project, 60)
    make.label_all(project, ids[:40])
    return project


def _due_now(project) -> None:
    """The project's every-minute schedule last fired two minutes ago: it is due."""
    db.session.add(
        ScheduleState(
            project_id=project.id,
            name="retrain",
            expression="* * * * *",
            last_due=utcnow() - timedelta(minutes=2),
        )
    )
    db.session.commit()


def test_a_schedule_fires_once_per_due_time_and_catches_up_once(app, make):
    project = _scheduled_project(make)
    start = datetime(2026, 12, 6, 10, 1)
    assert schedule.fire_schedules(start) == []  # a new schedule counts from now
    db.session.commit()
    assert schedule.fire_schedules(start + timedelta(minutes=3)) == []  # 10:05 not yet
    (run_id,) = schedule.fire_schedules(start + timedelta(minutes=4))
    db.session.commit()
    run = db.session.get(RetrainRun, run_id)
    assert (run.trigger, run.status) == ("schedule", "queued")
    assert schedule.fire_schedules(start + timedelta(minutes=5)) == []  # 10:05 fired already
    # The clock was down for an hour: one run, not twelve (and the queued one absorbs it).
    later = schedule.fire_schedules(start + timedelta(hours=1, minutes=4))
    assert later == [run_id]
    state = db.session.get(ScheduleState, (project.id, "retrain"))
    assert state.last_due == datetime(2026, 12, 6, 11, 5)


def test_a_changed_or_removed_schedule_takes_effect_without_a_restart(app, make, client):
    project = _scheduled_project(make)
    schedule.fire_schedules(datetime(2026, 12, 6, 10, 1))
    db.session.commit()
    project.settings = {**NO_AUTO, "retrain_schedule": "0 3 * * *"}
    db.session.commit()
    # The new expression counts from the tick that sees it.
    assert schedule.fire_schedules(datetime(2026, 12, 6, 10, 6)) == []
    assert db.session.get(ScheduleState, (project.id, "retrain")).expression == "0 3 * * *"
    project.settings = dict(NO_AUTO)
    db.session.commit()
    schedule.fire_schedules(datetime(2026, 12, 7, 4, 0))
    assert db.session.get(ScheduleState, (project.id, "retrain")) is None
    assert db.session.scalar(select(RetrainRun)) is None


@pytest.mark.parametrize("value", ["every day", "61 * * * *", "* * * *", 5, "0 3 * * * *"])
def test_a_bad_cron_expression_is_refused_naming_the_setting(app, make, value):
    from webapp import settings
    from webapp.errors import ValidationError

    project = make.make_project()
    with pytest.raises(ValidationError) as err:
        settings.apply(project, {"retrain_schedule": value})
    assert "retrain_schedule" in str(err.value.args[0]) and "cron" in str(err.value.args[0])


def test_off_turns_a_schedule_off(app, make):
    from webapp import settings

    project = make.make_project()
    settings.apply(project, {"retrain_schedule": " 0  3 * * * "})
    assert project.setting("retrain_schedule") == "0 3 * * *"
    settings.apply(project, {"retrain_schedule": "off"})
    assert project.setting("retrain_schedule") == ""


def test_a_schedule_that_fires_while_redis_is_down_is_not_lost(app, make, run_jobs):
    project = _scheduled_project(make, "* * * * *")
    _due_now(project)
    down = create_app(
        {
            **{k: app.config[k] for k in ("SQLALCHEMY_DATABASE_URI", "RQ_QUEUE", "SECRET_KEY")},
            "TESTING": True,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    with down.app_context():
        try:
            done = schedule.tick()
        finally:
            db.session.remove()
            db.engine.dispose()
            down.extensions["redis"].connection_pool.disconnect()
    assert done["retrains"] == 1
    run = db.session.scalar(select(RetrainRun))
    assert (run.trigger, run.status) == ("schedule", "queued")
    # Redis is back: the workers' sweep enqueues the intent, and the retrain runs.
    assert training.requeue_pending() == 1
    run_jobs()
    db.session.expire_all()
    assert db.session.get(RetrainRun, run.id).status == "succeeded"


def test_the_clock_process_fires_a_scheduled_retrain(app, make, run_jobs):
    project = _scheduled_project(make, "* * * * *")
    _due_now(project)
    env = fault_env(app, CORRIGO_CLOCK_SECONDS="0.5")
    with tempfile.TemporaryFile(mode="w+") as out:
        clock = subprocess.Popen(
            [sys.executable, "-m", "webapp", "clock"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def scheduled_run():
                db.session.expire_all()
                db.session.commit()
                return db.session.scalar(select(RetrainRun).where(RetrainRun.trigger == "schedule"))

            run = wait_until(scheduled_run, 60, poll=0.2, what="the clock to queue a retrain")
        finally:
            clock.terminate()
            status = clock.wait(timeout=20)
            out.seek(0)
            output = out.read()
    assert status == 0, output
    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert run.status == "succeeded", (run.error, output)
    assert training.champion_version(project.id) is not None
