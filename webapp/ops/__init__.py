"""For operators: Prometheus metrics at /metrics, liveness at /healthz, readiness at /readyz.

The counters live in the app's own Redis (see `metrics`), so every gunicorn worker and every
`corrigo worker` process, on any host, adds to the same totals and a scrape answered by any
web worker sees all of them.
"""

from __future__ import annotations

import os

from flask import Blueprint, Flask

bp = Blueprint("ops", __name__)

from . import routes  # noqa: E402,F401
from .metrics import RequestMetrics, record_job, remember_route  # noqa: E402
from .state import OpsState  # noqa: E402

__all__ = ["bp", "init_app", "record_job"]


def init_app(app: Flask) -> None:
    """Read the settings, time every request, and register the endpoints."""
    env = os.environ.get
    # Empty: /metrics answers anyone who can reach it (the Procfile binds 127.0.0.1).
    app.config.setdefault("METRICS_TOKEN", env("CORRIGO_METRICS_TOKEN", ""))
    # Recording a request waits at most this long for Redis, then pauses for the backoff.
    app.config.setdefault("METRICS_REDIS_TIMEOUT", float(env("CORRIGO_METRICS_TIMEOUT", 0.25)))
    app.config.setdefault("METRICS_BACKOFF", float(env("CORRIGO_METRICS_BACKOFF", 5)))
    # Each readiness check (and a scrape's Redis reads) gives up after this many seconds.
    app.config.setdefault("READY_TIMEOUT", float(env("CORRIGO_READY_TIMEOUT", 1)))
    app.extensions["ops"] = OpsState(app)
    app.wsgi_app = RequestMetrics(app.wsgi_app, app)
    app.after_request(remember_route)
    app.register_blueprint(bp)
