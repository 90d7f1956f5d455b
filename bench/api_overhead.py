"""The API schemas' request overhead: schema validation time against the request's total time.

The hand-written checks and the schemas cannot run in one process (the schemas replaced them),
so this measures what the schemas cost inside today's requests. Per backend, a `news` project
with a champion; through the Flask test client with an all-scope key:

  * `POST /api/v1/projects/news/predictions` with 1,000 rows (fresh texts each request);
  * `POST /api/v1/projects/news/predict` with one text.

For each, the same bodies are also loaded by the endpoint's own marshmallow schema alone
(`PredictionLogRequest().load`, `PredictRequest().load`), interleaved with the requests; the
ratio is the schema's median time over the request's median time.

    .venv/bin/python -m bench.api_overhead [--db sqlite,postgresql] [--batches 7] [--calls 200]
"""

from __future__ import annotations

from bench.common import bench_app, header, median, ms, parse_args, table, timed
from tests.factories import make_champion, make_key, make_project
from webapp.api.predictions import PredictionLogRequest, PredictRequest


def _rows(batch: int) -> list[dict]:
    """1,000 logged predictions with texts no earlier batch used."""
    return [
        {
            "data": {"text": f"phone chip software update {batch} {i}"},
            "label": "tech",
            "probabilities": {"tech": 0.8, "sport": 0.1, "politics": 0.1},
            "model": "app-v3",
            "unit": f"user-{i % 50}",
        }
        for i in range(1000)
    ]


def bench_backend(app, batches: int, calls: int) -> list[list[object]]:
    """Time both endpoints and their schemas on one backend; return table rows."""
    project = make_project(slug="news", settings={"gate": {"min_heldout": 5}, "retrain_every": 0})
    make_champion(project, n_labeled=60, n_pool=20)
    headers = {"Authorization": f"Bearer {make_key(project)}"}
    client = app.test_client()

    log_schema, log_request = [], []
    for batch in range(batches + 1):
        payload = {"predictions": _rows(batch)}
        schema_s, _ = timed(lambda p=payload: PredictionLogRequest().load(p))
        request_s, resp = timed(
            lambda p=payload: client.post(
                "/api/v1/projects/news/predictions", json=p, headers=headers
            )
        )
        assert resp.status_code == 201, resp.get_json()
        if batch:  # the first one warms caches
            log_schema.append(schema_s)
            log_request.append(request_s)

    one_schema, one_request = [], []
    for i in range(calls + 5):
        payload = {"data": {"text": f"the team won the cup match {i}"}, "unit": "user-1"}
        schema_s, _ = timed(lambda p=payload: PredictRequest().load(p))
        request_s, resp = timed(
            lambda p=payload: client.post("/api/v1/projects/news/predict", json=p, headers=headers)
        )
        assert resp.status_code == 200, resp.get_json()
        if i >= 5:
            one_schema.append(schema_s)
            one_request.append(request_s)

    out = []
    for what, schema_t, request_t in [
        ("POST /predictions, 1,000 rows", log_schema, log_request),
        ("POST /predict", one_schema, one_request),
    ]:
        s, r = median(schema_t), median(request_t)
        out.append([what, ms(r), ms(s), f"{100 * s / r:.1f}%"])
    return out


def main() -> None:
    """Run on each backend and print one table per backend."""
    args = parse_args(
        __doc__,
        batches=(7, "timed 1,000-row requests"),
        calls=(200, "timed single predictions"),
    )
    header("API schema overhead: schema validation vs the whole request")
    for backend in args.db:
        with bench_app(backend) as app:
            rows = bench_backend(app, args.batches, args.calls)
        print(f"\n## {backend}\n")
        print(table(["request", "request (median)", "schema load (median)", "ratio"], rows))


if __name__ == "__main__":
    main()
