"""What the ops endpoints keep per app: Redis clients that give up quickly, a readiness engine."""

from __future__ import annotations

import atexit
import math
import threading
import weakref

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .. import jobs


class OpsState:
    """Per app (so per gunicorn worker): bounded Redis clients and the readiness engine.

    The app's own connection (`jobs.get_redis()`) has no socket timeout and retries with
    back-off, which suits the queue; metrics and probes must answer in a fraction of a second
    even when Redis does not, so they reach the same Redis through clients of their own.
    """

    def __init__(self, app: Flask):
        self.app = app
        self._lock = threading.Lock()
        self._clients: dict[float, redis.Redis] = {}
        self._engine: Engine | None = None
        # Recording is skipped until this time.monotonic() after a failure (see metrics).
        self.paused_until = 0.0

    def redis(self, timeout: float) -> redis.Redis:
        """A client for the app's Redis whose calls give up after `timeout` s, never retried."""
        client = self._clients.get(timeout)
        if client is None:
            with self._lock:
                client = self._clients.get(timeout)
                if client is None:
                    client = redis.Redis.from_url(
                        self._redis_url(),
                        socket_timeout=timeout,
                        socket_connect_timeout=timeout,
                        retry=Retry(NoBackoff(), 0),
                    )
                    self._clients[timeout] = client
        return client

    def _redis_url(self) -> str:
        """REDIS_URL, or the unix socket of the embedded Redis (started here if need be)."""
        url = self.app.config.get("REDIS_URL")
        if url:
            return url
        with self.app.app_context():
            embedded = jobs.redis_url_of(jobs.get_redis())
        # The embedded server is stopped at exit only if its starter is its last client; this
        # hook, registered after the starter's, runs before it (atexit runs in reverse order).
        atexit.register(_disconnect, weakref.ref(self))
        return embedded

    def engine(self) -> Engine:
        """An engine on the app's database for readiness: no pool, a short connect timeout.

        The app's pool would wait for the driver's default connect timeout (minutes on
        PostgreSQL when packets are dropped); a probe needs its own bound.
        """
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    url = make_url(self.app.config["SQLALCHEMY_DATABASE_URI"])
                    timeout = float(self.app.config["READY_TIMEOUT"])
                    connect_args: dict = {}
                    if url.get_backend_name() == "postgresql":
                        # libpq (and psycopg) count whole seconds and treat less than 2 as 2.
                        connect_args["connect_timeout"] = max(2, math.ceil(timeout))
                    elif url.get_backend_name() == "sqlite":
                        connect_args["timeout"] = timeout
                    self._engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        return self._engine

    def close(self) -> None:
        """Drop the clients' connections and the engine (tests end an app this way)."""
        for client in list(self._clients.values()):
            client.connection_pool.disconnect()
        if self._engine is not None:
            self._engine.dispose()


def _disconnect(ref: weakref.ref[OpsState]) -> None:
    """At exit: close the connections of an app's clients, if the app is still around."""
    state = ref()
    if state is not None:
        state.close()
