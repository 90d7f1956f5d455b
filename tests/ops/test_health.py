"""/healthz and /readyz as a load balancer or Kubernetes probes them, with the database and
Redis up, down (a closed port) and silent (a port that never answers)."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import RedisServer
from tests.ops.conftest import call, scrape

PROBLEM = "application/problem+json"


def test_liveness_answers_without_looking_at_anything(make_app):
    # Neither store is reachable, and the process is still alive.
    client = make_app(
        REDIS_URL="redis://127.0.0.1:1/0", SQLALCHEMY_DATABASE_URI="sqlite:////nonexistent/x.db"
    ).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_ready_when_the_database_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
    }


def test_not_ready_names_redis_when_its_port_is_closed(make_app):
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 503 and "redis" in body["detail"]
    assert body["checks"]["redis"] == {"status": "failed", "error": "ConnectionError"}
    assert body["checks"]["database"]["status"] == "ok"
    assert "127.0.0.1" not in response.get_data(as_text=True)  # details stay in the log


@pytest.mark.parametrize(
    "url",
    ["sqlite:////nonexistent/dir/corrigo.db", "postgresql://postgres@127.0.0.1:1/corrigo"],
    ids=["sqlite", "postgresql"],
)
def test_not_ready_names_the_database_when_it_cannot_be_reached(make_app, url):
    client = make_app(SQLALCHEMY_DATABASE_URI=url).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert "database" in body["detail"] and "redis" not in body["detail"]
    assert body["checks"]["database"]["status"] == "failed"
    assert body["checks"]["redis"]["status"] == "ok"


@pytest.mark.parametrize("silent", ["redis", "database"])
def test_a_silent_store_fails_readiness_within_the_deadline(make_app, silent_port, silent):
    url = f"127.0.0.1:{silent_port}"
    if silent == "redis":
        app = make_app(REDIS_URL=f"redis://{url}/0", READY_TIMEOUT=0.5)
    else:  # PostgreSQL's own connect timeout is 2 s at least; the deadline does not wait
        app = make_app(SQLALCHEMY_DATABASE_URI=f"postgresql://postgres@{url}/x", READY_TIMEOUT=0.5)
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks[silent] == {"status": "failed", "error": "no answer within 0.5 s"}
    assert [name for name, check in checks.items() if check["status"] == "ok"] == [
        name for name in ("database", "redis") if name != silent
    ]


def test_requests_succeed_and_stay_fast_while_redis_is_down(make_app, silent_port):
    for url in ("redis://127.0.0.1:1/0", f"redis://127.0.0.1:{silent_port}/0"):
        client = make_app(REDIS_URL=url).test_client()
        started = time.monotonic()
        statuses = [call(client, "/healthz") for _ in range(20)]
        # One attempt waits at most METRICS_REDIS_TIMEOUT (0.25 s), then recording pauses.
        assert time.monotonic() - started < 2, url
        assert statuses == [200] * 20
        # The scrape still answers: the database's part, and Redis reported down.
        seen = scrape(client)
        assert seen.value("corrigo_scrape_source_up", source="redis") == 0
        assert seen.value("corrigo_scrape_source_up", source="database") == 1
        assert seen.series("corrigo_http_requests_total") == {}


def test_recording_resumes_when_redis_is_back(make_app, tmp_path):
    server = RedisServer(str(tmp_path))
    server.start()
    try:
        client = make_app(REDIS_URL=server.url, METRICS_BACKOFF=0.5).test_client()
        assert call(client, "/healthz") == 200
        server.stop()
        # Answered during the outage, and not counted (best effort: nothing is queued).
        assert [call(client, "/healthz") for _ in range(5)] == [200] * 5
        server.start()
        time.sleep(0.6)  # the backoff after the failed attempt
        assert [call(client, "/healthz") for _ in range(2)] == [200] * 2
        seen = scrape(client)
        assert (
            seen.value("corrigo_http_requests_total", method="GET", route="/healthz", status="200")
            == 1 + 2
        )
    finally:
        server.stop()
