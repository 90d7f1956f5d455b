"""The clock process: build the app once, then run `webapp.schedule.tick` every few seconds.

One clock per deployment (the Procfile's `clock:`). It only enqueues work and records due
schedules; the workers do the work. A Redis or database outage is logged and waited out.
"""

from __future__ import annotations

import logging
import signal
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from webapp import jobs, schedule
from webapp.extensions import db

log = logging.getLogger(__name__)


def run(app: Flask, once: bool = False) -> None:
    """Tick every `CLOCK_SECONDS` until SIGTERM or SIGINT (or once, with `once`)."""
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    interval = float(app.config["CLOCK_SECONDS"])
    log.info("clock started: a tick every %.0f s", interval)
    while not stopping:
        started = time.monotonic()
        with app.app_context():
            try:
                done = schedule.tick()
                if any(done.values()):
                    log.info("clock tick: %s", done)
            except (SQLAlchemyError, *jobs.UNREACHABLE) as exc:
                log.warning("clock tick failed, trying again: %s", exc)
            finally:
                db.session.remove()  # hold no transaction while sleeping
        if once:
            return
        while not stopping and time.monotonic() - started < interval:
            time.sleep(min(0.2, interval))
