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
