"""/metrics as an operator reads it: requests by route template, latencies, queue depth, job
durations and failures, champion versions; the totals of every process; a token if set."""

from __future__ import annotations

import pytest

from tests.conftest import work
from tests.factories import make_key, make_project, make_version
from tests.ops.conftest import call, scrape
from webapp import jobs, registry
from webapp.extensions import db
from webapp.ops.metrics import HTTP_DURATION

MODELS = "/api/v1/projects/<slug>/models"
REQUESTS = "corrigo_http_requests_total"
LATENCY = "corrigo_http_request_duration_seconds"


def test_requests_are_counted_by_route_template_and_status(client):
    project = make_project("news")
    make_project("other")
    key = {"Authorization": f"Bearer {make_key(project)}"}
    for _ in range(3):
        assert call(client, "/api/v1/projects/news/models", headers=key) == 200
    # Another project's page: the same route, refused (the key is not of that project).
    assert call(client, "/api/v1/projects/other/models", headers=key) == 404
    for _ in range(2):
        assert call(client, "/healthz") == 200
    assert call(client, "/no/such/page") == 404
    assert call(client, "/healthz", method="BREW") == 405

    seen = scrape(client)
    assert seen.value(REQUESTS, method="GET", route=MODELS, status="200") == 3
    assert seen.value(REQUESTS, method="GET", route=MODELS, status="404") == 1
    assert seen.value(REQUESTS, method="GET", route="/healthz", status="200") == 2
    # Raw paths and invented methods never become label values: cardinality stays bounded.
    assert seen.value(REQUESTS, method="GET", route="(unmatched)", status="404") == 1
    assert seen.value(REQUESTS, method="other", route="(unmatched)", status="405") == 1
    routes = {dict(labels)["route"] for labels in seen.series(REQUESTS)}
    assert routes == {MODELS, "/healthz", "(unmatched)"}


def test_the_latency_histogram_is_cumulative_and_counts_every_request(client):
    for _ in range(7):
        assert call(client, "/healthz") == 200
    seen = scrape(client)
    labels = {"method": "GET", "route": "/healthz"}
    bounds = [*(repr(b) for b in HTTP_DURATION.buckets), "+Inf"]
    buckets = [seen.value(f"{LATENCY}_bucket", le=le, **labels) for le in bounds]
    assert buckets == sorted(buckets), "buckets must be cumulative"
    assert buckets[-1] == 7
    assert seen.value(f"{LATENCY}_count", **labels) == 7
    assert 0 < seen.value(f"{LATENCY}_sum", **labels) < 7 * 10


def test_a_scrape_on_either_of_two_workers_sees_the_sum(make_app):
    # Two apps in one process, each with its own state, like two gunicorn workers.
    first, second = make_app().test_client(), make_app().test_client()
    for _ in range(4):
        assert call(first, "/healthz") == 200
    for _ in range(6):
        assert call(second, "/healthz") == 200
    for client in (first, second):
        seen = scrape(client)
        assert seen.value(REQUESTS, method="GET", route="/healthz", status="200") == 10
        assert seen.value(f"{LATENCY}_count", method="GET", route="/healthz") == 10


def test_queue_depth_reflects_enqueued_jobs(app, client):
    for task in range(3):
        jobs.enqueue("worker.jobs.rescore", 2**31 - 1 - task)
    seen = scrape(client)
    assert seen.value("corrigo_queue_depth", queue="corrigo-test") == 3

    work(app)
    assert scrape(client).value("corrigo_queue_depth", queue="corrigo-test") == 0


def test_the_queue_shows_before_any_job_was_ever_enqueued(client):
    assert scrape(client).series("corrigo_queue_depth") == {(("queue", "corrigo-test"),): 0}


def fail_on_purpose(reason: str) -> None:
    """A job that raises (enqueued by dotted path, like Corrigo's own)."""
    raise RuntimeError(reason)


def test_jobs_run_by_the_worker_record_durations_and_failures(app, client):
    missing = 2**31 - 1  # a rescore of a task that does not exist reads the database and ends
    jobs.enqueue("worker.jobs.rescore", missing)
    jobs.enqueue("worker.jobs.rescore", missing - 1)
    jobs.enqueue("tests.ops.test_metrics.fail_on_purpose", "for the failure count")
    work(app)  # the real worker path: CorrigoSimpleWorker in burst mode, on the real Redis

    seen = scrape(client)
    rescore = {"function": "worker.jobs.rescore"}
    failing = {"function": "tests.ops.test_metrics.fail_on_purpose"}
    assert seen.value("corrigo_job_duration_seconds_count", **rescore) == 2
    assert seen.value("corrigo_job_duration_seconds_bucket", le="+Inf", **rescore) == 2
    assert seen.value("corrigo_job_duration_seconds_sum", **rescore) > 0
    assert seen.value("corrigo_job_failures_total", **rescore) == 0
    assert seen.value("corrigo_job_duration_seconds_count", **failing) == 1
    assert seen.value("corrigo_job_failures_total", **failing) == 1


def test_the_champion_version_per_project_follows_promotions(client):
    news = make_project("news")
    make_project("fresh")
    make_version(news, 1, "champion")
    v2 = make_version(news, 2)
    seen = scrape(client)
    assert seen.value("corrigo_champion_version", project="news") == 1
    assert seen.series("corrigo_champion_version")[(("project", "fresh"),)] == 0

    registry.promote(v2, "user:1", "better on the audits")
    db.session.commit()
    assert scrape(client).value("corrigo_champion_version", project="news") == 2


def test_every_source_is_reported_up(client):
    seen = scrape(client)
    assert seen.value("corrigo_scrape_source_up", source="redis") == 1
    assert seen.value("corrigo_scrape_source_up", source="database") == 1


@pytest.mark.parametrize("configured", [False, True])
def test_a_metrics_token_is_required_once_set(make_app, configured):
    token = "s3cret-metrics-token"
    client = make_app(METRICS_TOKEN=token if configured else "").test_client()
    bare = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-it"})
    if not configured:
        assert (bare.status_code, wrong.status_code) == (200, 200)
        return
    for refused in (bare, wrong, client.get("/metrics", headers={"Authorization": token})):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"corrigo_" not in refused.data
    seen = scrape(client, Authorization=f"Bearer {token}")
    assert seen.value("corrigo_scrape_source_up", source="redis") == 1
