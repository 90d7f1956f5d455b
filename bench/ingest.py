"""Ingest over the API: `POST …/items` and `POST …/predictions` of 1,000 rows vs a raw executemany.

Per backend: a text project without a champion (so no rescore is queued), an admin + predict
key, and R requests of 1,000 rows each, every row with a fresh external id and a 16-word text.
Measured, interleaved request by request so that both sides share the machine's load:

  * `POST /api/v1/projects/<slug>/items` through the Flask test client (auth, JSON parsing,
    validation, `pool.import_items`, commit, the JSON answer); the request body is encoded
    before the clock starts, as a client would have it;
  * `POST /api/v1/projects/<slug>/predictions` the same way (`serving.log_predictions`: one
    item and one prediction row per row);
  * the baseline: the same rows written by a raw DBAPI `executemany` into the same tables of a
    scratch project, one commit per 1,000 rows (items; for predictions, items, then one SELECT
    of their ids, then the prediction rows). The baseline builds its tuples (and json.dumps)
    inside its timing.

Prints items/s for each and the ratio endpoint / raw (higher is better; 1.0 = as fast as raw).

    .venv/bin/python -m bench.ingest [--db sqlite,postgresql] [--requests 20]
"""

from __future__ import annotations

import json
import random

from bench.common import bench_app, header, load, parse_args, table, timed
from tests.factories import WORDS, make_key, make_project
from webapp.extensions import db
from webapp.models import utcnow

ROWS = 1000


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = " ".join(WORDS.values()).split()
    return [" ".join(rng.choices(words, k=16)) + f" #{i}" for i in range(n)]


def _raw_cursor():
    raw = db.engine.raw_connection()
    sqlite = db.engine.dialect.name == "sqlite"
    return raw, ("?" if sqlite else "%s")


def raw_items(project_id: int, rows: list[dict]) -> None:
    """The baseline for an import: one executemany INSERT of the rows and a commit."""
    raw, mark = _raw_cursor()
    try:
        cur = raw.cursor()
        now = utcnow()
        cur.executemany(
            "INSERT INTO item (project_id, external_id, data, source, created_at, rand) "
            f"VALUES ({', '.join([mark] * 6)})",
            [
                (
                    project_id,
                    r["external_id"],
                    json.dumps(r["data"]),
                    "import",
                    now,
                    random.random(),
                )
                for r in rows
            ],
        )
        raw.commit()
        cur.close()
    finally:
        raw.close()


def raw_predictions(project_id: int, rows: list[dict]) -> None:
    """The baseline for a prediction log: items, one SELECT of their ids, predictions, commit."""
    raw, mark = _raw_cursor()
    try:
        cur = raw.cursor()
        now = utcnow()
        cur.executemany(
            "INSERT INTO item (project_id, external_id, data, source, created_at, rand) "
            f"VALUES ({', '.join([mark] * 6)})",
            [
                (
                    project_id,
                    r["external_id"],
                    json.dumps(r["data"]),
                    "production",
                    now,
                    random.random(),
                )
                for r in rows
            ],
        )
        wanted = [r["external_id"] for r in rows]
        cur.execute(
            f"SELECT external_id, id FROM item WHERE project_id = {mark} "
            f"AND external_id IN ({', '.join([mark] * len(wanted))})",
            [project_id, *wanted],
        )
        ids = dict(cur.fetchall())
        cur.executemany(
            "INSERT INTO prediction (project_id, item_id, model_name, label, probabilities, "
            f"unit, created_at) VALUES ({', '.join([mark] * 7)})",
            [
                (
                    project_id,
                    ids[r["external_id"]],
                    r["model"],
                    r["label"],
                    json.dumps(r["probabilities"]),
                    None,
                    now,
                )
                for r in rows
            ],
        )
        raw.commit()
        cur.close()
    finally:
        raw.close()


def _item_rows(texts: list[str], prefix: str) -> list[dict]:
    return [{"external_id": f"{prefix}-{i}", "data": {"text": t}} for i, t in enumerate(texts)]


def _prediction_rows(texts: list[str], prefix: str, labels: list[str]) -> list[dict]:
    out = []
    for i, t in enumerate(texts):
        label = labels[i % len(labels)]
        probs = {lab: (0.8 if lab == label else 0.1) for lab in labels}
        out.append(
            {
                "external_id": f"{prefix}-{i}",
                "data": {"text": t},
                "label": label,
                "probabilities": probs,
                "model": "app-model-v7",
            }
        )
    return out


def bench_backend(app, requests: int) -> dict:
    project = make_project(slug="ingest", settings={"retrain_every": 0})
    scratch = make_project(slug="raw", settings={"retrain_every": 0})
    headers = {
        "Authorization": f"Bearer {make_key(project, scopes=('admin', 'predict'))}",
        "Content-Type": "application/json",
    }
    client = app.test_client()
    labels = list(project.labels)
    times = {"items": [], "raw items": [], "predictions": [], "raw predictions": []}

    def post(url: str, body: bytes) -> None:
        resp = client.post(url, data=body, headers=headers)
        if resp.status_code != 201:
            raise RuntimeError(f"{url}: {resp.status_code} {resp.get_data(as_text=True)[:500]}")

    for r in range(requests + 1):  # the first round warms up and is not counted
        texts = _texts(ROWS, seed=r)
        items = _item_rows(texts, f"i{r}")
        preds = _prediction_rows(texts, f"p{r}", labels)
        items_body = json.dumps({"items": items}).encode()
        preds_body = json.dumps({"predictions": preds}).encode()
        samples = {
            "items": timed(lambda: post(f"/api/v1/projects/{project.slug}/items", items_body))[0],  # noqa: B023
            "raw items": timed(lambda: raw_items(scratch.id, _item_rows(texts, f"i{r}")))[0],  # noqa: B023
            "predictions": timed(
                lambda: post(f"/api/v1/projects/{project.slug}/predictions", preds_body)  # noqa: B023
            )[0],
            "raw predictions": timed(
                lambda: raw_predictions(scratch.id, _prediction_rows(texts, f"p{r}", labels))  # noqa: B023
            )[0],
        }
        if r:
            for what, seconds in samples.items():
                times[what].append(seconds)
    return {what: requests * ROWS / sum(s) for what, s in times.items()}


def main() -> None:
    args = parse_args(__doc__, requests=(20, "timed requests of 1,000 rows per endpoint"))
    header("ingest over the API vs a raw executemany (1,000 rows a request)")
    results = {}
    for backend in args.db:
        with bench_app(backend) as app:
            print(f"\n## {backend}: {args.requests} requests of {ROWS:,} rows …", flush=True)
            results[backend] = bench_backend(app, args.requests)
            load()
    rows = []
    for backend, r in results.items():
        for what in ("items", "predictions"):
            rows.append(
                [
                    backend,
                    f"POST …/{what}",
                    f"{r[what]:,.0f}",
                    f"{r['raw ' + what]:,.0f}",
                    f"{r[what] / r['raw ' + what]:.0%}",
                ]
            )
    print()
    print(table(["backend", "endpoint", "items/s", "raw executemany items/s", "ratio"], rows))


if __name__ == "__main__":
    main()
