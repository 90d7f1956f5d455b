"""The worker's entry point: build the app once, then work the queue, riding out faults.

A Corrigo worker is RQ's forking `Worker` with four things added (see `FaultTolerance`):
- a sweep, when it starts and every `WORKER_SWEEP_SECONDS` after that (idle or busy): RQ's
  abandoned-job cleanup, then `training.requeue_pending`, which fails the runs and re-queues the
  rescores whose job died, and enqueues the intents that never reached Redis;
- a dead work horse (SIGKILL, the OOM killer) settles its run or task at once;
- a Redis outage is waited out: heartbeats and progress reports that cannot reach Redis are
  skipped, and the worker reconnects when Redis is back;
- SIGTERM (`docker stop`, systemd, honcho) is a warm shutdown: the work horse ignores it and
  finishes its job within `WORKER_SHUTDOWN_GRACE` seconds, or is stopped and its job handed back
  to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from flask import Flask
from rq import SimpleWorker, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy.exc import SQLAlchemyError

from webapp import create_app, jobs, ops, training
from webapp.extensions import db

from . import get_app, set_app

log = logging.getLogger(__name__)


class FaultTolerance:
    """What a Corrigo worker adds to RQ's workers; mixed in before `Worker` or `SimpleWorker`."""

    def __init__(self, queues, *, app: Flask | None = None, **kwargs):
        app = app or get_app()  # RQ itself builds workers without one (`Worker.all()`)
        config = app.config
        self.app = app
        # Set before RQ's __init__, which reads `dequeue_timeout` to size the socket timeout.
        self.sweep_seconds = max(float(config["WORKER_SWEEP_SECONDS"]), 0.5)
        self.heartbeat_grace = int(config["WORKER_HEARTBEAT_GRACE"])
        self.shutdown_grace = float(config["WORKER_SHUTDOWN_GRACE"])
        self.max_connection_wait_time = float(config["WORKER_REDIS_RETRY_MAX"])
        self._next_sweep = 0.0
        self._shutdown_deadline: float | None = None
        kwargs.setdefault("job_monitoring_interval", int(config["WORKER_HEARTBEAT_SECONDS"]))
        super().__init__(queues, serializer=JSONSerializer, **kwargs)

    # --- the sweep ------------------------------------------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        """Wake from waiting for a job at least once per sweep interval."""
        return max(1, min(self.worker_ttl - 15, int(self.sweep_seconds)))

    @property
    def sweep_due(self) -> bool:
        """Whether the sweep interval has passed since the last sweep."""
        return time.monotonic() >= self._next_sweep

    @property
    def should_run_maintenance_tasks(self) -> bool:
        """RQ's maintenance when it is due, or ours."""
        return super().should_run_maintenance_tasks or self.sweep_due

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning when due, then the sweep; a Redis outage only delays them."""
        if super().should_run_maintenance_tasks:
            try:
                super().run_maintenance_tasks()
            except jobs.UNREACHABLE as exc:
                log.warning("maintenance skipped, Redis is unreachable: %s", exc)
        if self.sweep_due:
            self.sweep()

    def sweep(self) -> int:
        """Settle what dead jobs left and enqueue lost intents; return how many were enqueued."""
        self._next_sweep = time.monotonic() + self.sweep_seconds
        try:
            # RQ's own cleanup first: a job whose worker died with its horse (a hard crash) is
            # failed here once its heartbeat expired, and the database sweep then sees it dead.
            for queue in self.queues:
                StartedJobRegistry(
                    queue.name, connection=self.connection, serializer=self.serializer
                ).cleanup(exception_handlers=self._exc_handlers)
            with self.app.app_context():
                count = training.requeue_pending()
        except jobs.UNREACHABLE as exc:
            log.warning("sweep skipped, Redis is unreachable: %s", exc)
            return 0
        except SQLAlchemyError as exc:
            log.warning("sweep skipped, the database is unreachable: %s", exc)
            return 0
        if count:
            log.info("sweep enqueued %d job(s) that had been lost", count)
        return count

    # --- a dead work horse ----------------------------------------------------------------

    def handle_work_horse_killed(self, job: Job, retpid, ret_val, rusage) -> None:
        """Settle the run or task of a job whose horse died, now rather than at the next sweep."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        handed_back = self._shutdown_requested_date is not None
        if handed_back:
            reason = "The worker was shut down before this job finished."
        else:
            how = f" (signal {os.WTERMSIG(ret_val)})" if ret_val and os.WIFSIGNALED(ret_val) else ""
            reason = f"The work horse running this job died{how}; it stopped before it finished."
        self.settle(job.id, handed_back, reason)

    def settle(self, job_id: str, handed_back: bool, reason: str) -> None:
        """`training.settle_job` in the app; a fault here is left to the next sweep."""
        try:
            with self.app.app_context():
                training.settle_job(job_id, handed_back, reason)
        except (SQLAlchemyError, *jobs.UNREACHABLE) as exc:
            log.warning("job %s left to the next sweep: %s", job_id, exc)

    # --- a Redis outage -------------------------------------------------------------------

    def heartbeat(self, timeout=None, pipeline=None):
        """RQ's heartbeat; one that cannot reach Redis is skipped (the next one catches up)."""
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline=pipeline)
        try:
            return super().heartbeat(timeout)
        except jobs.UNREACHABLE as exc:
            log.warning("heartbeat skipped, Redis is unreachable: %s", exc)

    def maintain_heartbeats(self, job: Job, execution) -> None:
        """While a horse works: heartbeat (best effort), enforce the shutdown grace, sweep."""
        try:
            super().maintain_heartbeats(job, execution)
        except jobs.UNREACHABLE as exc:
            log.warning("job %s heartbeat skipped, Redis is unreachable: %s", job.id, exc)
        if self._shutdown_deadline is not None and time.monotonic() >= self._shutdown_deadline:
            self._hand_back_now()
        elif self.sweep_due:
            self.sweep()

    def set_state(self, state, pipeline=None):
        """RQ's state report; one that cannot reach Redis is skipped."""
        if pipeline is not None:
            return super().set_state(state, pipeline=pipeline)
        try:
            return super().set_state(state)
        except jobs.UNREACHABLE as exc:
            self._state = state
            log.warning("state %s not reported, Redis is unreachable: %s", state, exc)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's `rq suspend` check; skipped while Redis is unreachable."""
        try:
            super().check_for_suspension(burst)
        except jobs.UNREACHABLE as exc:
            log.warning("suspension check skipped, Redis is unreachable: %s", exc)

    def execute_job(self, job: Job, queue) -> None:
        """Run one job; losing Redis around it leaves the rows to the sweep, not the worker dead.

        Its duration and outcome go to the shared metrics (best effort: see `webapp.ops`).
        """
        started = time.monotonic()
        try:
            super().execute_job(job, queue)
        except jobs.UNREACHABLE as exc:
            log.warning("job %s: Redis went away around it (%s); the sweep settles it", job.id, exc)
        ops.record_job(self.app, job, time.monotonic() - started)

    # --- shutdown ---------------------------------------------------------------------------

    def handle_warm_shutdown_request(self) -> None:
        """On SIGTERM, let the running job finish within the grace period, then hand it back."""
        super().handle_warm_shutdown_request()
        if not self.horse_pid:
            return
        if self.shutdown_grace <= 0:
            self._hand_back_now()
            return
        log.info("waiting up to %.0f s for the running job to finish", self.shutdown_grace)
        self._shutdown_deadline = time.monotonic() + self.shutdown_grace
        # Look at the deadline every second from now on, not every heartbeat interval: the
        # monitor's wait for the horse is bounded by SIGALRM, so the current wait ends in 1 s.
        self.job_monitoring_interval = 1
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.alarm(1)  # only while that wait (RQ's death penalty) is armed

    def _hand_back_now(self) -> None:
        """Stop the horse; `handle_work_horse_killed` then hands its job back to the queue."""
        self._shutdown_deadline = None
        log.warning("the running job did not finish within the grace period: handing it back")
        self.kill_horse()

    def request_force_stop(self, signum, frame):
        """A second signal (cold shutdown): stop the horse and hand its job back first."""
        job_id = self.get_current_job_id() if self.horse_pid else None
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            if job_id is not None:
                self.settle(job_id, True, "The worker was shut down before this job finished.")
            raise

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A job counts as abandoned `WORKER_HEARTBEAT_GRACE` s after its last heartbeat."""
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(job.timeout - working_time, interval)
        return int(interval) + self.heartbeat_grace


class CorrigoWorker(FaultTolerance, Worker):
    """RQ's forking worker, riding out faults; its work horse ignores SIGTERM and SIGINT."""

    def setup_work_horse_signals(self) -> None:
        """SIGTERM to the whole process group must not kill the job: the worker decides."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


class CorrigoSimpleWorker(FaultTolerance, SimpleWorker):
    """The same, running jobs in-process (the tests' burst worker)."""


def run(burst: bool = False, simple: bool = False, app=None) -> bool:
    """Work the Corrigo queue; `burst` stops when it is empty, `simple` runs jobs in-process."""
    app = app or create_app()
    set_app(app)
    with app.app_context():
        queue_name = app.config["RQ_QUEUE"]
        connection = jobs.get_redis()
        db.session.remove()  # no transaction stays open while the worker waits
    worker_class = CorrigoSimpleWorker if simple else CorrigoWorker
    max_wait = float(app.config["WORKER_REDIS_RETRY_MAX"])
    while True:
        worker = None
        try:
            worker = worker_class([queue_name], connection=connection, app=app)
            # The first turn of the loop sweeps: runs and intents lost before this start.
            return worker.work(burst=burst, logging_level="INFO")
        except jobs.UNREACHABLE as exc:
            if worker is not None and worker._shutdown_requested_date is not None:
                raise  # asked to stop: stop, even if Redis cannot hear of it
            # Redis was down as the worker started, or went away as it stopped on a fault:
            # start afresh (a new name, a clean registration) once it answers again.
            log.warning("Redis is unreachable (%s); the worker starts when it is back", exc)
            _wait_for(connection, max_wait)


def _wait_for(connection, max_wait: float) -> None:
    """Block until Redis answers a PING, backing off up to `max_wait` seconds."""
    wait = 0.5
    while True:
        try:
            connection.ping()
            return
        except jobs.UNREACHABLE:
            time.sleep(wait)
            wait = min(wait * 2, max_wait)
