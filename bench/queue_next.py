"""Queue latency: what an expert waits for the next item, at 10k and 100k unlabeled items.

Per backend and pool size, one project holds N scored unlabeled items (as after a rescore), N/10
labeled ones, 20 disputed ones that other experts hold leases on, a champion, N/20 skips by ten
other experts, and the five top-scored items leased to other experts (so the uncertain lane has
to step over live leases).

Measured (the three request kinds interleaved, so they share whatever load the machine has):
  * `pool.next_item(project, annotator)`: each call leases an item (uncertain lane, or the 10%
    random audit lane); the expert then annotates it (untimed), as a real session does. Median and
    p95 per call, against the baseline in the same process: the bare indexed query
    `SELECT id FROM item WHERE project_id=:p AND label IS NULL ORDER BY score DESC LIMIT 1`.
  * `GET /api/v1/projects/<slug>/queue/next` through the Flask test client with a `label` key
    (includes the champion's suggestion for the item), when the API has the route.
  * The uncertain lane again after rounding every score to two decimals (100 distinct values),
    as a tree model or coarse probabilities would leave them: ties in the ORDER BY.
  * Import throughput of `pool.import_items` (batches of 1,000 with external ids) against a raw
    DBAPI `executemany` INSERT of the same rows into the same table, same batches and commits.
  * The query plan of every SELECT one `next_item` call runs (uncertain lane, audit lane, with
    ties), so an index scan vs. a sort of the pool is visible; PostgreSQL plans are EXPLAIN
    ANALYZE (after VACUUM ANALYZE, as autovacuum would have run), SQLite's EXPLAIN QUERY PLAN.

    .venv/bin/python -m bench.queue_next [--db sqlite,postgresql] [--sizes 10000,100000]
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta

from sqlalchemy import insert, select, text, update

from bench.common import (
    add_champion,
    analyze,
    bench_app,
    explain,
    header,
    median,
    ms,
    p95,
    parse_args,
    ratio,
    table,
    timed,
)
from labeling import artifacts, training
from tests.factories import TEXT_LABELS, WORDS, make_key, make_project
from webapp import pool
from webapp.extensions import db
from webapp.models import Annotation, ApiKey, Item, Project, Skip, utcnow

RAW_NEXT = (
    "SELECT id FROM item WHERE project_id=:p AND label IS NULL AND scored_by = "
    "(SELECT id FROM model_version WHERE project_id=:p AND status='champion') "
    "AND score_strategy = 'margin' ORDER BY score DESC LIMIT 1"
)
DISPUTED = 20
LEASED_TOP = 5


class FixedRng:
    """An rng whose draws are fixed, to force a lane of the queue when explaining it."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


def _rows(n: int, prefix: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = " ".join(WORDS.values()).split()
    return [
        {
            "external_id": f"{prefix}-{i}",
            "data": {"text": " ".join(rng.choices(words, k=16)) + f" #{i}"},
        }
        for i in range(n)
    ]


def _raw_import(project_id: int, rows: list[dict], batch: int = pool.IMPORT_BATCH) -> None:
    """The baseline: DBAPI executemany INSERT, same columns, batches and commits as import."""
    sqlite = db.engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    sql = (
        "INSERT INTO item (project_id, external_id, data, source, created_at, rand) "
        f"VALUES ({', '.join([mark] * 6)})"
    )
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        for start in range(0, len(rows), batch):
            now = utcnow()
            cur.executemany(
                sql,
                [
                    (project_id, r["external_id"], json.dumps(r["data"]), "import", now, rnd)
                    for r, rnd in zip(rows[start : start + batch], _draws(batch), strict=False)
                ],
            )
            raw.commit()
        cur.close()
    finally:
        raw.close()


def _draws(n: int) -> list[float]:
    return [random.random() for _ in range(n)]


def _import(project: Project, rows: list[dict]) -> list[int]:
    ids: list[int] = []
    for batch in pool.import_items(project, rows):
        ids.extend(batch)
    return ids


def _setup_pool(project: Project, ids: list[int], n_unlabeled: int) -> None:
    """Label the extra items, dispute some, add a champion, score the pool, lease the top."""
    now = utcnow()
    labeled = ids[n_unlabeled:]
    db.session.execute(
        update(Item),
        [{"id": i, "label": TEXT_LABELS[k % 3], "labeled_at": now} for k, i in enumerate(labeled)],
    )
    db.session.execute(
        insert(Annotation),
        [
            {
                "project_id": project.id,
                "item_id": i,
                "annotator": "user:seed",
                "label": TEXT_LABELS[k % 3],
                "created_at": now,
            }
            for k, i in enumerate(labeled)
        ],
    )
    # Disputed after labeling (feedback disagreed); other experts are on them right now.
    hour = now + timedelta(hours=1)
    db.session.execute(
        update(Item),
        [
            {
                "id": i,
                "disputed_at": now,
                "lease_owner": f"user:other-{k}",
                "lease_until": hour,
                "lease_reason": "disputed",
            }
            for k, i in enumerate(labeled[:DISPUTED])
        ],
    )
    project.labeled_count = len(labeled)
    texts = [f"{WORDS[label]} seed {k}" for k in range(10) for label in TEXT_LABELS]
    model = training.fit_model(
        project.template, texts, [lab for _k in range(10) for lab in TEXT_LABELS]
    )
    champion = add_champion(project, artifacts.dumps(model), len(texts))
    db.session.flush()
    # Scores as a rescore leaves them: margin scores in [-1, 0], higher = label first, under
    # the champion's (version id, strategy) key.
    rnd = "-(abs(random()) % 1000000) / 1000000.0" if _sqlite() else "-random()"
    db.session.execute(
        text(
            f"UPDATE item SET score = {rnd}, scored_by = :v, score_strategy = 'margin' "
            "WHERE project_id = :p AND label IS NULL"
        ),
        {"p": project.id, "v": champion.id},
    )
    # Other experts skipped some items: the NOT EXISTS (skip) probe runs against a real table.
    skipped = ids[:n_unlabeled:20]
    db.session.execute(
        insert(Skip),
        [{"item_id": i, "annotator": f"user:other-{k % 10}"} for k, i in enumerate(skipped)],
    )
    top = db.session.scalars(
        select(Item.id)
        .where(Item.project_id == project.id, Item.label.is_(None))
        .order_by(Item.score.desc())
        .limit(LEASED_TOP)
    ).all()
    db.session.execute(
        update(Item)
        .where(Item.id.in_(top))
        .values(lease_owner="user:busy", lease_until=hour, lease_reason="uncertain")
    )
    db.session.commit()


def _sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def _annotate_as(project: Project, annotator: str):
    def annotate(result) -> None:
        if result is None:
            raise RuntimeError("the queue ran dry")
        item, _reason = result
        pool.annotate(project, item, annotator, TEXT_LABELS[item.id % 3])

    return annotate


def _api_route_exists(app) -> bool:
    return any(r.rule == "/api/v1/projects/<slug>/queue/next" for r in app.url_map.iter_rules())


def bench_size(app, n: int, calls: int, plans: dict) -> dict:
    extra = n // 10
    project = make_project(slug=f"queue-{n}", settings={"retrain_every": 0})
    scratch = make_project(slug=f"raw-{n}", settings={"retrain_every": 0})
    rows = _rows(n + extra, "x", seed=n)

    raw_s, _ = timed(lambda: _raw_import(scratch.id, _rows(n + extra, "r", seed=n)))
    db.session.execute(text("DELETE FROM item WHERE project_id = :p"), {"p": scratch.id})
    db.session.commit()
    import_s, ids = timed(lambda: _import(project, rows))
    # Row building is outside both timings: the raw baseline builds its tuples inside, so it is
    # charged for json.dumps, like import_items is for its dicts.
    _setup_pool(project, ids, n)
    analyze()

    annotator = "user:bench"
    uncertain_plan = explain(lambda: pool.next_item(project, annotator, rng=FixedRng(0.99)))
    item = db.session.scalar(select(Item).where(Item.lease_owner == annotator))
    _annotate_as(project, annotator)((item, "uncertain"))
    audit_plan = explain(lambda: pool.next_item(project, annotator, rng=FixedRng(0.05)))
    item = db.session.scalar(select(Item).where(Item.lease_owner == annotator))
    _annotate_as(project, annotator)((item, "audit"))
    raw_plan = explain(lambda: db.session.execute(text(RAW_NEXT), {"p": project.id}).all())
    plans[n] = {"uncertain": uncertain_plan, "audit": audit_plan, "raw": raw_plan}

    def raw_next():
        value = db.session.execute(text(RAW_NEXT), {"p": project.id}).scalar()
        db.session.rollback()
        return value

    http_call = http_annotate = None
    if _api_route_exists(app):
        client = app.test_client()
        key = make_key(project, scopes=("label",))
        key_row = db.session.scalar(select(ApiKey).where(ApiKey.project_id == project.id))
        headers = {"Authorization": f"Bearer {key}"}
        url = f"/api/v1/projects/{project.slug}/queue/next"

        def http_call():
            resp = client.get(url, headers=headers)
            if resp.status_code != 200:
                raise RuntimeError(f"queue/next: {resp.status_code} {resp.get_data(as_text=True)}")
            return resp.get_json()

        def http_annotate(body) -> None:
            item = db.session.get(Item, body["item_id"])
            pool.annotate(project, item, key_row.annotator, TEXT_LABELS[item.id % 3])

    # Interleaved, so that the baseline and the real thing share whatever load the machine has.
    rng = random.Random(n)
    annotate = _annotate_as(project, annotator)
    raw, samples, http, reasons = [], [], [], []
    for i in range(10 + calls):
        seconds, _ = timed(raw_next)
        if i >= 10:
            raw.append(seconds)
        seconds, result = timed(lambda: pool.next_item(project, annotator, rng=rng))
        if i >= 10:
            samples.append(seconds)
            reasons.append(result[1])
        annotate(result)
        if http_call is not None:
            seconds, body = timed(http_call)
            if i >= 10:
                http.append(seconds)
            http_annotate(body)
    by_reason: dict[str, list[float]] = {}
    for reason, s in zip(reasons, samples, strict=True):
        by_reason.setdefault(reason, []).append(s)

    # Ties: tree models (tabular-hgb) and coarse probabilities give many equal scores. Round the
    # scores to 100 distinct values and look at the uncertain lane again.
    db.session.execute(
        text(
            "UPDATE item SET score = round(score * 100) / 100.0 "
            "WHERE project_id = :p AND label IS NULL"
        ),
        {"p": project.id},
    )
    db.session.commit()
    analyze()
    plans[n]["uncertain, scores with ties"] = explain(
        lambda: pool.next_item(project, annotator, rng=FixedRng(0.99))
    )
    annotate((db.session.scalar(select(Item).where(Item.lease_owner == annotator)), "uncertain"))
    ties = []
    for i in range(10 + calls // 4):
        seconds, result = timed(lambda: pool.next_item(project, annotator, rng=FixedRng(0.99)))
        if i >= 10:
            ties.append(seconds)
        annotate(result)
    by_reason["uncertain, scores with ties"] = ties

    left = db.session.scalar(
        select(db.func.count(Item.id)).where(Item.project_id == project.id, Item.label.is_(None))
    )
    return {
        "n": n,
        "left": left,
        "import_rate": (n + extra) / import_s,
        "raw_rate": (n + extra) / raw_s,
        "next": samples,
        "raw": raw,
        "by_reason": by_reason,
        "reasons": Counter(reasons),
        "http": http or None,
    }


def main() -> None:
    args = parse_args(__doc__, sizes="10000,100000", calls=(200, "timed calls per measurement"))
    header("queue/next latency and import throughput")
    for backend in args.db:
        results, plans = [], {}
        with bench_app(backend) as app:
            for n in args.sizes:
                print(f"\n## {backend}, {n:,} unlabeled items: setting up …", flush=True)
                results.append(bench_size(app, n, args.calls, plans))
                for lane in plans[n]:
                    print(f"\n### {backend} {n:,}: plans, one next_item call ({lane})")
                    print("\n".join(plans[n][lane]))
        print(f"\n## {backend}: import throughput (items/s)\n")
        print(
            table(
                ["items", "pool.import_items", "raw executemany", "ratio (raw/import)"],
                [
                    [
                        f"{r['n'] + r['n'] // 10:,}",
                        f"{r['import_rate']:,.0f}",
                        f"{r['raw_rate']:,.0f}",
                        ratio(r["raw_rate"], r["import_rate"]),
                    ]
                    for r in results
                ],
            )
        )
        print(f"\n## {backend}: queue latency per call ({args.calls} calls)\n")
        rows = []
        for r in results:
            base = median(r["raw"])
            for name, samples in [
                ("pool.next_item (all lanes)", r["next"]),
                *[
                    (f"pool.next_item ({reason}, {len(s)} calls)", s)
                    for reason, s in sorted(r["by_reason"].items())
                ],
                *([("GET queue/next (HTTP)", r["http"])] if r["http"] else []),
                ("raw indexed SELECT (baseline)", r["raw"]),
            ]:
                rows.append(
                    [
                        f"{r['n']:,}",
                        name,
                        ms(median(samples)),
                        ms(p95(samples)),
                        ratio(median(samples), base),
                    ]
                )
        print(table(["unlabeled", "what", "median", "p95", "median vs raw"], rows))
        for r in results:
            if r["http"] is None:
                print("\n(no GET /api/v1/projects/<slug>/queue/next route yet: HTTP not measured)")
                break
        for r in results:
            print(f"\n{backend} {r['n']:,}: lanes served {dict(r['reasons'])}; {r['left']:,} left")


if __name__ == "__main__":
    main()
