"""Prometheus metrics whose counters live in the app's Redis.

Why Redis and not prometheus_client's in-process registry: gunicorn runs several worker
processes, and jobs run in `corrigo worker` processes that may be on other hosts. In-process
counters would show a scrape only the worker that answered it; prometheus_client's
multiprocess mode shares files between the processes of one host only, and needs its
directory set before import and cleaned at every start. Redis is already shared by all of
them, so each observation is one pipelined round trip of HINCRBY/HINCRBYFLOAT on hash fields
(a histogram keeps one field per bucket), and a scrape reads the hashes, adds what only exists
at scrape time (queue depths from Redis, champion versions from the database) and renders the
text with prometheus_client's metric families.

Recording is best effort: it waits for Redis at most METRICS_REDIS_TIMEOUT seconds, never
retries, and after a failure records nothing for METRICS_BACKOFF seconds, so a Redis outage
costs requests no errors and no time (what happens during it is not counted). A request is
recorded when the server closes its response, after the body has been sent.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import redis
from flask import Flask, current_app, request
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import and_, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wsgi import ClosingIterator

from ..enums import ModelStatus
from ..extensions import db
from ..models import ModelVersion, Project
from .state import OpsState

log = logging.getLogger(__name__)

PREFIX = "corrigo:metrics:"
# The text format's content type; prometheus_client's "latest" is version 1.0.0 now.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Methods outside this set are counted as "other": a client must not mint label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The route label of a request no URL rule matched (a 404, or a 405 for a known path).
UNMATCHED = "(unmatched)"
ROUTE_KEY = "corrigo.route"


def _field(values: Sequence[str]) -> str:
    """A hash field naming one series: its label values as a JSON list (any text is safe)."""
    return json.dumps(list(values), separators=(",", ":"))


def _le(bound: float) -> str:
    """A bucket's upper bound as Prometheus writes it."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


@dataclass(frozen=True)
class Counter:
    """A counter kept as one Redis hash: a field per label set."""

    name: str
    help: str
    labels: tuple[str, ...]

    @property
    def key(self) -> str:
        return PREFIX + self.name

    def inc(self, pipe: redis.client.Pipeline, values: Sequence[str], amount: int = 1) -> None:
        """Add `amount` to the series `values` (0 creates it, so it shows before any event)."""
        pipe.hincrby(self.key, _field(values), amount)

    def family(self, raw: dict[bytes, bytes]) -> Metric:
        """The counter's metric family from the hash as HGETALL returns it."""
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for field, value in sorted(raw.items()):
            family.add_metric(json.loads(field), int(value))
        return family


@dataclass(frozen=True)
class Histogram:
    """A histogram kept as two Redis hashes: a count per (labels, bucket), a sum per labels.

    An observation increments only the smallest bucket that holds it; the scrape adds them up
    into Prometheus's cumulative buckets, so `_count` is the `+Inf` bucket.
    """

    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return PREFIX + self.name

    @property
    def sum_key(self) -> str:
        return PREFIX + self.name + ":sum"

    def observe(self, pipe: redis.client.Pipeline, values: Sequence[str], seconds: float) -> None:
        """Count one observation of `seconds` in the series `values`."""
        bound = next((b for b in self.buckets if seconds <= b), math.inf)
        pipe.hincrby(self.key, _field([*values, _le(bound)]), 1)
        pipe.hincrbyfloat(self.sum_key, _field(values), seconds)

    def family(self, raw: dict[bytes, bytes], raw_sums: dict[bytes, bytes]) -> Metric:
        """The histogram's metric family from its two hashes as HGETALL returns them."""
        bounds = (*self.buckets, math.inf)
        counts: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(bounds))
        for field, value in raw.items():
            *values, le = json.loads(field)
            # A bound no longer configured (the buckets changed) counts in the next one up.
            slot = next(i for i, b in enumerate(bounds) if float(le) <= b)
            counts[tuple(values)][slot] += int(value)
        sums = {tuple(json.loads(field)): float(value) for field, value in raw_sums.items()}
        family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        for values in sorted(counts.keys() | sums.keys()):
            per_bucket = counts[values]
            cumulative = [sum(per_bucket[: i + 1]) for i in range(len(bounds))]
            buckets = [(_le(b), c) for b, c in zip(bounds, cumulative, strict=True)]
            family.add_metric(list(values), buckets, sums.get(values, 0.0))
        return family


HTTP_REQUESTS = Counter(
    "corrigo_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"),
)
HTTP_DURATION = Histogram(
    "corrigo_http_request_duration_seconds",
    "Time from receiving a request to closing its response, by method and route template.",
    ("method", "route"),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOB_DURATION = Histogram(
    "corrigo_job_duration_seconds",
    "Wall time of RQ job executions in `corrigo worker`, by job function.",
    ("function",),
    (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
JOB_FAILURES = Counter(
    "corrigo_job_failures",
    "RQ job executions that ended failed (an exception, a timeout, a dead work horse).",
    ("function",),
)


# --- recording -------------------------------------------------------------------------------


def _write(state: OpsState, fill: Callable[[redis.Redis, redis.client.Pipeline], None]) -> None:
    """Send one pipeline of increments (`fill` adds them; it may read through the connection
    first); on failure, log and pause recording for the backoff."""
    now = time.monotonic()
    if now < state.paused_until:
        return
    config = state.app.config
    try:
        conn = state.redis(float(config["METRICS_REDIS_TIMEOUT"]))
        pipe = conn.pipeline()
        fill(conn, pipe)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        backoff = float(config["METRICS_BACKOFF"])
        state.paused_until = now + backoff
        log.warning("metrics not recorded for %.0f s, Redis is unreachable: %s", backoff, exc)


def record_request(state: OpsState, method: str, route: str, status: str, seconds: float) -> None:
    """Count one answered request and its duration."""
    method = method if method in METHODS else "other"

    def fill(_conn: redis.Redis, pipe: redis.client.Pipeline) -> None:
        HTTP_REQUESTS.inc(pipe, (method, route, status))
        HTTP_DURATION.observe(pipe, (method, route), seconds)

    _write(state, fill)


def record_job(app: Flask, job: Job, seconds: float) -> None:
    """Count one execution of `job` (it has just ended, one way or another) and its duration.

    It failed if RQ says so now (in the job's hash: the work horse wrote it); a job already
    gone (a result TTL of 0) did not.
    """
    function = job.func_name

    def fill(conn: redis.Redis, pipe: redis.client.Pipeline) -> None:
        failed = conn.hget(job.key, "status") == JobStatus.FAILED.value.encode()
        JOB_DURATION.observe(pipe, (function,), seconds)
        JOB_FAILURES.inc(pipe, (function,), int(failed))

    _write(app.extensions["ops"], fill)


class RequestMetrics:
    """WSGI middleware: time each request and record it once the server closes the response."""

    def __init__(self, wsgi_app, app: Flask):
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["500"]

        def capture(status_line: str, headers, exc_info=None):
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        def record() -> None:
            route = environ.get(ROUTE_KEY, UNMATCHED)
            method = environ.get("REQUEST_METHOD", "")
            seconds = time.perf_counter() - started
            record_request(self.app.extensions["ops"], method, route, status[0], seconds)

        try:
            body = self.wsgi_app(environ, capture)
        except BaseException:
            record()
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            record()  # keep the server's sendfile path for files: record before sending
            return body
        return ClosingIterator(body, record)


def remember_route(response):
    """Leave the matched URL rule's template where the middleware reads it (after_request)."""
    rule = request.url_rule
    request.environ[ROUTE_KEY] = rule.rule if rule is not None else UNMATCHED
    return response


# --- the scrape ------------------------------------------------------------------------------


def _gauge(name: str, help: str, label: str, rows: Iterable[tuple[str, float]]) -> Metric:
    """A gauge family with one label."""
    family = GaugeMetricFamily(name, help, labels=[label])
    for value, number in rows:
        family.add_metric([value], number)
    return family


def _from_redis(state: OpsState) -> list[Metric]:
    """The counters, histograms and queue depths, read in two round trips."""
    conn = state.redis(float(state.app.config["READY_TIMEOUT"]))
    pipe = conn.pipeline(transaction=False)
    for key in (HTTP_REQUESTS.key, HTTP_DURATION.key, HTTP_DURATION.sum_key):
        pipe.hgetall(key)
    for key in (JOB_DURATION.key, JOB_DURATION.sum_key, JOB_FAILURES.key):
        pipe.hgetall(key)
    requests_, duration, duration_sum, jobs_, jobs_sum, failures = pipe.execute()

    names = {q.name for q in Queue.all(connection=conn)} | {state.app.config["RQ_QUEUE"]}
    queues = [Queue(name, connection=conn) for name in sorted(names)]
    pipe = conn.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue.key)
    depths = pipe.execute()
    return [
        HTTP_REQUESTS.family(requests_),
        HTTP_DURATION.family(duration, duration_sum),
        _gauge(
            "corrigo_queue_depth",
            "Jobs waiting in each RQ queue (read from Redis at scrape time).",
            "queue",
            [(q.name, depth) for q, depth in zip(queues, depths, strict=True)],
        ),
        JOB_DURATION.family(jobs_, jobs_sum),
        JOB_FAILURES.family(failures),
    ]


def _from_database() -> list[Metric]:
    """The champion's version per project (0 before the first promotion)."""
    rows = db.session.execute(
        select(Project.slug, ModelVersion.version)
        .outerjoin(
            ModelVersion,
            and_(
                ModelVersion.project_id == Project.id,
                ModelVersion.status == ModelStatus.CHAMPION,
            ),
        )
        .order_by(Project.slug)
    ).all()
    return [
        _gauge(
            "corrigo_champion_version",
            "Version number of each project's champion model (0: none promoted yet).",
            "project",
            [(slug, version or 0) for slug, version in rows],
        )
    ]


class _Families:
    """What `generate_latest` renders: a fixed list of metric families."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def scrape() -> bytes:
    """The Prometheus text for the current app; a source that cannot be read is reported down
    (`corrigo_scrape_source_up`) and its metrics left out, rather than failing the scrape."""
    state: OpsState = current_app.extensions["ops"]
    families: list[Metric] = []
    up = []
    try:
        families += _from_redis(state)
        up.append(("redis", 1))
    except (redis.RedisError, OSError) as exc:
        log.warning("metrics from Redis left out of the scrape: %s", exc)
        up.append(("redis", 0))
    try:
        families += _from_database()
        up.append(("database", 1))
    except SQLAlchemyError as exc:
        log.warning("metrics from the database left out of the scrape: %s", exc)
        up.append(("database", 0))
    families.append(
        _gauge(
            "corrigo_scrape_source_up",
            "Whether this scrape could read the source (1) or left its metrics out (0).",
            "source",
            up,
        )
    )
    return generate_latest(_Families(families))
