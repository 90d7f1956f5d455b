"""Reading the monitor API at 100k and 1M predictions: stored windows make it flat.

Per size, in one database: a project's app logs N predictions of its own model over 90 days
through the product's own bulk path (`serving.log_predictions`, 1,000 per call, each with its
`timestamp`), the monitoring job computes the windows (`alerts.run_monitoring`, timed and
printed), then `GET /api/v1/projects/{slug}/monitor?limit=90` is timed through the WSGI app.
Reads of the sizes are interleaved, so the machine's load hits them alike. The baseline, in
the same process: one raw SQL read of the same 90 rows (`SELECT stats, drift,
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
from webapp import alerts, serving
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


def setup_size(n: int) -> dict:
    """A project whose app logged `n` predictions, and its windows computed."""
    project = make_project(slug=f"mon{n}", settings={"retrain_every": 0})
    key = make_key(project, ("admin",))
    load_s, _ = timed(lambda: _log(project, n))
    compute_s, done = timed(lambda: alerts.run_monitoring(project.id))
    return {
        "n": n,
        "project": project,
        "key": key,
        "load_s": load_s,
        "compute_s": compute_s,
        "computed": done["windows"],
        "api": [],
        "raw": [],
    }


def read_rounds(app, sizes: list[dict]) -> None:
    """Time the reads of every size in interleaved rounds, so load on the machine hits all."""
    client = app.test_client()

    def reader(size):
        url = f"/api/v1/projects/{size['project'].slug}/monitor?limit=90"
        headers = {"Authorization": f"Bearer {size['key']}"}

        def read():
            resp = client.get(url, headers=headers)
            assert resp.status_code == 200, resp.get_data(as_text=True)
            return resp

        return read

    for size in sizes:
        size["windows"] = len(reader(size)().get_json()["windows"])
    for _ in range(READS):
        for size in sizes:
            size["api"] += repeat(reader(size), 1, warmup=1)
            project_id = size["project"].id
            size["raw"] += repeat(lambda p=project_id: _raw_read(p), 1, warmup=1)


def main() -> None:
    args = parse_args(__doc__, sizes="100000,1000000")
    header("monitor API read time against the stored windows' raw read")
    for backend in args.db:
        with bench_app(backend, redis=True) as app:
            sizes = [setup_size(n) for n in args.sizes]
            read_rounds(app, sizes)
        print(f"\n## {backend} (every size in one database; reads interleaved, {READS} each)")
        print(
            "| predictions | windows | log s | monitoring job s | GET /monitor ms (median) "
            "| raw SQL ms | ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in sizes:
            api, raw = statistics.median(r["api"]) * 1000, statistics.median(r["raw"]) * 1000
            r["api_ms"] = api
            print(
                f"| {r['n']:,} | {r['windows']} | {r['load_s']:.0f} | {r['compute_s']:.1f} | "
                f"{api:.1f} | {raw:.2f} | {api / raw:.1f}x |"
            )
        if len(sizes) > 1:
            first, last = sizes[0], sizes[-1]
            print(
                f"\nGET /monitor at {last['n']:,} against {first['n']:,}: "
                f"{last['api_ms'] / first['api_ms']:.2f}x (target ≤ 1.5x)"
            )


if __name__ == "__main__":
    main()
