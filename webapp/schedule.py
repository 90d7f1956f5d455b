"""The clock: what runs on a schedule (retrains, monitoring windows, experiments' looks and
shadow scoring, webhook retries).

`tick` is one pass of the `clock` process (`corrigo clock`, in the Procfile). Schedules live in
the database (the project setting `retrain_schedule`, a cron expression in UTC), so a change
needs no restart. A due retrain is recorded as a queued `RetrainRun` in the same transaction
that moves the schedule's `last_due` on: the run row is the durable intent, so a schedule that
fires while Redis is unreachable is not lost (the workers' sweep enqueues the run later), and
firings missed while the clock was down are caught up once, not once per missed time.
"""

from __future__ import annotations

import logging
from datetime import datetime

from cronsim import CronSim, CronSimError
from sqlalchemy import select

from . import abtests, jobs, webhooks
from .enums import Trigger
from .extensions import db
from .models import Project, ScheduleState, utcnow
from .training import trigger_retrain
from .transaction import unit_of_work

log = logging.getLogger(__name__)

RETRAIN = "retrain"  # ScheduleState.name
MONITOR_JOB = "worker.jobs.compute_monitoring"


def check_cron(expression: str) -> str:
    """A valid cron expression (5 fields, UTC), stripped; raises ValueError naming the fault."""
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5:
        raise ValueError("a cron expression has 5 fields: minute hour day month weekday")
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"not a cron expression: {exc}") from None
    return expression


def latest_due(expression: str, after: datetime, now: datetime) -> datetime | None:
    """The last time `expression` fires in (after, now], or None if it does not."""
    last = None
    for due in CronSim(expression, after):
        if due > now:
            break
        last = due
    return last


def fire_schedules(now: datetime | None = None) -> list[int]:
    """Queue a retrain for every project whose schedule came due; return their run ids.

    Flushed, not committed: the caller (the clock's `tick`) commits each project on its own.
    """
    now = now or utcnow()
    runs = []
    for project in db.session.scalars(select(Project).order_by(Project.id)).all():
        expression = project.setting("retrain_schedule")
        state = db.session.get(ScheduleState, (project.id, RETRAIN))
        if not expression:
            if state is not None:
                db.session.delete(state)
                db.session.flush()
            continue
        if state is None or state.expression != expression:
            # A new or changed schedule counts from now: it does not fire for the past.
            if state is None:
                state = ScheduleState(project_id=project.id, name=RETRAIN)
                db.session.add(state)
            state.expression, state.last_due = expression, now
            continue
        due = latest_due(expression, state.last_due, now)
        if due is None:
            continue
        state.last_due = due
        run = trigger_retrain(project, Trigger.SCHEDULE)
        runs.append(run.id)
        log.info("schedule %r of %s queued retrain run %s", expression, project.slug, run.id)
    return runs


def request_monitoring() -> int:
    """Enqueue a monitoring pass per project unless one is waiting; how many were enqueued."""
    count = 0
    for project_id in db.session.scalars(select(Project.id).order_by(Project.id)).all():
        job_id = f"monitor-{project_id}"
        if jobs.job_status(job_id) == "queued":
            continue
        count += jobs.enqueue(MONITOR_JOB, project_id, job_id=job_id) is not None
    return count


@unit_of_work
def tick(now: datetime | None = None, monitor: bool = True) -> dict[str, int]:
    """One pass of the clock: schedules, then monitoring and experiments, then due webhook
    deliveries.

    Each part commits on its own, so a fault in one (Redis unreachable) costs the others
    nothing; what could not be enqueued is enqueued by a later pass or the workers' sweep.
    """
    done = {"retrains": 0, "monitoring": 0, "experiments": 0, "deliveries": 0}
    done["retrains"] = len(fire_schedules(now))
    db.session.commit()
    try:
        if monitor:
            done["monitoring"] = request_monitoring()
            done["experiments"] = abtests.request_steps()
        for delivery_id in webhooks.due_deliveries():
            if jobs.job_status(f"webhook-{delivery_id}") == "queued":
                continue
            job = jobs.enqueue(webhooks.DELIVER_JOB, delivery_id, job_id=f"webhook-{delivery_id}")
            done["deliveries"] += job is not None
    except jobs.UNREACHABLE as exc:
        log.warning("clock: Redis is unreachable, trying again next tick: %s", exc)
    db.session.commit()
    return done
