"""Views: /metrics for Prometheus, /healthz for liveness, /readyz for readiness."""

from __future__ import annotations

import hmac

from flask import Response, current_app, json, jsonify, request

from ..errors import PROBLEM, problem
from . import bp, checks, metrics

NO_STORE = {"Cache-Control": "no-store"}


def _token_ok() -> bool:
    """Whether the request may read the metrics: no METRICS_TOKEN set, or it is the bearer."""
    token = current_app.config.get("METRICS_TOKEN") or ""
    if not token:
        return True
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    # Bytes: compare_digest refuses non-ASCII str, and a stray header must not answer 500.
    sent_bytes = sent.strip().encode("utf-8", "replace")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent_bytes, token.encode())


@bp.get("/metrics")
def scrape():
    """The Prometheus text: totals of every web and worker process, from Redis and the DB."""
    if not _token_ok():
        return problem(
            401,
            "Unauthorized",
            "This endpoint needs `Authorization: Bearer <METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"', **NO_STORE},
        )
    return Response(metrics.scrape(), content_type=metrics.CONTENT_TYPE, headers=NO_STORE)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers (no dependency is checked)."""
    return jsonify(status="ok"), 200, NO_STORE


@bp.get("/readyz")
def readyz():
    """Readiness: the database and Redis both answer in time; 503 names the one that did not."""
    results = checks.run(current_app.extensions["ops"])
    failed = [name for name, result in results.items() if result["status"] != "ok"]
    if not failed:
        return jsonify(status="ok", checks=results), 200, NO_STORE
    body = {
        "type": "about:blank",
        "status": 503,
        "title": "Service Unavailable",
        "detail": f"Not ready: {', '.join(failed)} failed.",
        "checks": results,
    }
    return Response(json.dumps(body), status=503, mimetype=PROBLEM, headers=NO_STORE)
