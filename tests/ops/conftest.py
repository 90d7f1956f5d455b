"""Helpers for the ops tests: read /metrics as an operator's Prometheus would, and make
requests the way a WSGI server does (closing each response, which is when it is recorded)."""

from __future__ import annotations

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from webapp import create_app
from webapp.extensions import db


class Scrape(dict):
    """One scrape's samples: `(name, sorted label pairs) -> value`."""

    def value(self, name: str, **labels: str) -> float:
        """The sample's value, 0 if the scrape has no such sample."""
        return self.get((name, tuple(sorted(labels.items()))), 0.0)

    def series(self, name: str) -> dict[tuple, float]:
        """Every sample of `name`, by its label pairs."""
        return {labels: v for (n, labels), v in self.items() if n == name}


def scrape(client, **headers: str) -> Scrape:
    """GET /metrics and parse it with prometheus_client's own parser (so the text is valid)."""
    with client.get("/metrics", headers=headers) as response:
        assert response.status_code == 200, response.data
        assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
        text = response.get_data(as_text=True)
    samples = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def call(client, path: str, method: str = "GET", **kwargs) -> int:
    """Make one request, close its response (as a server does) and return the status."""
    with client.open(path, method=method, **kwargs) as response:
        return response.status_code


@pytest.fixture
def app(app):
    """The suite's app (on an emptied Redis); its metrics and probe connections dropped after."""
    yield app
    app.extensions["ops"].close()


@pytest.fixture
def make_app(app, database_url, redis_url):
    """Build more apps on the test app's database and Redis (each like another gunicorn
    worker)."""
    made = []

    def build(**config):
        settings = {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE": "corrigo-test",
        }
        settings.update(config)
        app = create_app(settings)
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["ops"].close()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections (the kernel's backlog) but never answers: a Redis
    whose packets vanish, as behind a dead route or a full firewall."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]
