"""Settings read from the environment, each with a safe default for the embedded demo."""

import os
import secrets


def _database_url(instance_path: str) -> str:
    """Return the SQLAlchemy URL: DATABASE_URL, or a SQLite file in the instance folder."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return "sqlite:///" + os.path.join(instance_path, "corrigo.sqlite")
    # Heroku-style URLs still say postgres://, which SQLAlchemy no longer accepts.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    return url


def from_environment(instance_path: str) -> dict:
    """Build the config mapping for `create_app` from environment variables."""
    return {
        "SECRET_KEY": os.environ.get("SECRET_KEY") or _dev_secret(instance_path),
        "SQLALCHEMY_DATABASE_URI": _database_url(instance_path),
        # Empty means: start an embedded Redis under the instance folder.
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "RQ_QUEUE": os.environ.get("CORRIGO_QUEUE", "corrigo"),
        "MAX_CONTENT_LENGTH": int(os.environ.get("CORRIGO_MAX_BODY", 8 * 1024 * 1024)),
        "LEASE_SECONDS": int(os.environ.get("CORRIGO_LEASE_SECONDS", 600)),
        "RESCORE_CHUNK": int(os.environ.get("CORRIGO_RESCORE_CHUNK", 2000)),
        # A pooled connection is tested before use, so one left dead by a database restart is
        # replaced instead of failing the request (or the retrain) that drew it.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # Seconds a client is told to wait (Retry-After) when the database is unreachable.
        "DB_RETRY_AFTER": int(os.environ.get("CORRIGO_DB_RETRY_AFTER", 2)),
        # A retrain's writes after training are retried this many times on a lost connection.
        "RETRAIN_WRITE_RETRIES": int(os.environ.get("CORRIGO_RETRAIN_WRITE_RETRIES", 4)),
        # The worker's fault handling, in seconds (see worker/main.py):
        # how often a worker sweeps for runs and tasks left behind by a dead work horse and
        # for intents that never reached Redis;
        "WORKER_SWEEP_SECONDS": float(os.environ.get("CORRIGO_SWEEP_SECONDS", 30)),
        # how often a busy worker heartbeats its job, and how long after a missed heartbeat a
        # job counts as abandoned (its run failed, its rescore re-queued);
        "WORKER_HEARTBEAT_SECONDS": int(os.environ.get("CORRIGO_HEARTBEAT_SECONDS", 10)),
        "WORKER_HEARTBEAT_GRACE": int(os.environ.get("CORRIGO_HEARTBEAT_GRACE", 60)),
        # how long a job may run on after SIGTERM before it is stopped and handed back (under
        # the 10 s `docker stop` waits before its SIGKILL);
        "WORKER_SHUTDOWN_GRACE": float(os.environ.get("CORRIGO_SHUTDOWN_GRACE", 8)),
        # the longest wait between two attempts to reach Redis again during an outage.
        "WORKER_REDIS_RETRY_MAX": float(os.environ.get("CORRIGO_REDIS_RETRY_MAX", 5)),
        # The clock process ticks this often (schedules, monitoring windows, webhook retries).
        "CLOCK_SECONDS": float(os.environ.get("CORRIGO_CLOCK_SECONDS", 30)),
        # A killed rescore is re-queued (it resumes) at most this many times.
        "RESCORE_REQUEUES": int(os.environ.get("CORRIGO_RESCORE_REQUEUES", 3)),
    }


def _dev_secret(instance_path: str) -> str:
    """Return a per-install secret kept in the instance folder, so sessions survive restarts."""
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        os.makedirs(instance_path, exist_ok=True)
        key = secrets.token_hex(32)
        with open(path, "w") as fh:
            fh.write(key)
        os.chmod(path, 0o600)
        return key
