"""Reading the monitor API at 100k and 1M predictions: stored windows make it flat.

Per size: a project's app logs N predictions of its own model over 90 days through the
product's own bulk path (`serving.log_predictions`, 1,000 per call, each with its
`timestamp`), the monitoring job computes the windows (`monitoring.run_monitoring`, timed and
printed), then `GET /api/v1/projects/{slug}/monitor?limit=90` is timed through the WSGI app.
The baseline, in the same process: one raw SQL read of the same 90 rows (`SELECT stats, drift,
estimate FROM monitor_window …`) and their JSON decoding. The issue asks that the endpoint's
time at 1M be within 1.5x of its time at 100k.

    .venv/bin/python -m bench.monitor_read --db sqlite,postgresql --sizes 100000,1000000
"""

from __future__ import annotations

import json
import random
import statistics
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.common import bench_app, header, parse_args, repeat, timed
from tests.factories import WORDS, make_key, make_project
from webapp import monitoring, serving
from webapp.extensions import db

DAYS = 90
BATCH = 1000
READS = 20


def _log(project, n: int, seed: int = 0) -> None:
    """N predictions of the app's model, spread evenly over the last 90 days."""
    rng = random.Random(seed)
    words = " ".join(WORDS.values()).split()
    labels = list(project.labels)
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / n
    for first in range(0, n, BATCH):
        rows = []
        for i in range(first, min(first + BATCH, n)):
            label = labels[i % len(labels)]
            p = 0.5 + 0.5 * rng.random()
            rows.append(
                {
                    "data": {"text": " ".join(rng.choices(words, k=12))},
                    "label": label,
                    "probabilities": {
                        lab: (p if lab == label else (1 - p) / (len(labels) - 1)) for lab in labels
                    },
                    "model": "app-model",
                    "timestamp": start + step * i,
                }
            )
        serving.log_predictions(project, rows)
        db.session.commit()


def _raw_read(project_id: int) -> int:
    rows = db.session.execute(
        text(
            "SELECT stats, drift, estimate FROM monitor_window WHERE project_id = :p "
            "ORDER BY start DESC LIMIT 90"
        ),
        {"p": project_id},
    ).all()
    for row in rows:
        for value in row:
            if isinstance(value, str):
                json.loads(value)
    db.session.rollback()
    return len(rows)


def bench_size(app, n: int) -> dict:
    project = make_project(slug=f"mon{n}", settings={"retrain_every": 0})
    key = make_key(project, ("admin",))
    load_s, _ = timed(lambda: _log(project, n))
    compute_s, done = timed(lambda: monitoring.run_monitoring(project.id))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/api/v1/projects/{project.slug}/monitor?limit=90"

    def read():
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp

    windows = len(read().get_json()["windows"])
    api = repeat(read, READS, warmup=3)
    raw = repeat(lambda: _raw_read(project.id), READS, warmup=3)
    return {
        "n": n,
        "windows": windows,
        "load_s": load_s,
        "compute_s": compute_s,
        "computed": done["windows"],
        "api_ms": statistics.median(api) * 1000,
        "raw_ms": statistics.median(raw) * 1000,
    }


def main() -> None:
    args = parse_args(__doc__, sizes="100000,1000000")
    header("monitor API read time against the stored windows' raw read")
    for backend in args.db:
        results = []
        for n in args.sizes:
            with bench_app(backend, redis=True) as app:
                results.append(bench_size(app, n))
        print(f"\n## {backend}")
        print(
            "| predictions | windows | log s | monitoring job s | GET /monitor ms (median) "
            "| raw SQL ms | ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['n']:,} | {r['windows']} | {r['load_s']:.0f} | {r['compute_s']:.1f} | "
                f"{r['api_ms']:.1f} | {r['raw_ms']:.2f} | {r['api_ms'] / r['raw_ms']:.1f}x |"
            )
        if len(results) > 1:
            first, last = results[0], results[-1]
            print(
                f"\nGET /monitor at {last['n']:,} against {first['n']:,}: "
                f"{last['api_ms'] / first['api_ms']:.2f}x (target ≤ 1.5x)"
            )


if __name__ == "__main__":
    main()
