"""Excluded items in the queue: does the exclusion predicate cost the uncertain lane anything?

The lanes' partial indexes (`WHERE label IS NULL`) do not know about exclusion, so excluded
unlabeled items stay in the index and the lane filters them out row by row. The worst case is
measured: the K excluded items are the K top-scored ones (a bad row is often the one the model
is least sure of), so the uncertain lane steps over all of them on every call.

Per backend, one project holds N scored unlabeled items and a champion; `audit_share` is 0, so
every call takes the uncertain lane. For K in 0, 100, 1,000 and 10,000 excluded top items, each
timed call is the real `pool.next_item(project, annotator)` (the lease released untimed after
it, so every call does the same work), and the uncertain lane's own statement as the queue
builds it (`pool.queue.lanes`), run alone. The baseline is K = 0 in the same process. Then, on
PostgreSQL, every lane's plan with and without the predicate on a table never analyzed
(autovacuum off), where the planner has no statistics for `excluded_at`.

    .venv/bin/python -m bench.exclusion_queue [--db sqlite,postgresql] [--sizes 100000]
"""

from __future__ import annotations

import random
from functools import partial

from sqlalchemy import insert, select, text, update

from bench.common import (
    add_champion,
    analyze,
    bench_app,
    explain,
    header,
    median,
    ms,
    parse_args,
    ratio,
    repeat,
    table,
)
from tests.factories import make_project
from webapp import pool
from webapp.extensions import db
from webapp.models import Item, utcnow
from webapp.pool.queue import lanes
from webapp.training import current_scores

EXCLUDED = (0, 100, 1_000, 10_000)
CALLS = 60


def _fill(project, n: int, champion_id: int) -> list[int]:
    """N unlabeled items scored by the champion (margin), in bulk; ids by descending score."""
    rng = random.Random(0)
    now = utcnow()
    for start in range(0, n, 10_000):
        db.session.execute(
            insert(Item),
            [
                {
                    "project_id": project.id,
                    "data": {"text": f"item {i}"},
                    "source": "import",
                    "created_at": now,
                    "rand": rng.random(),
                    "score": -rng.random(),
                    "scored_by": champion_id,
                    "score_strategy": "margin",
                }
                for i in range(start, min(n, start + 10_000))
            ],
        )
    db.session.commit()
    return list(
        db.session.scalars(
            select(Item.id).where(Item.project_id == project.id).order_by(Item.score.desc())
        )
    )


def _exclude_top(ids: list[int], k: int) -> None:
    """Mark the first k ids excluded (if not yet), in bulk, as k calls of exclude would."""
    if k:
        db.session.execute(
            update(Item)
            .where(Item.id.in_(ids[:k]), Item.excluded_at.is_(None))
            .values(excluded_at=utcnow(), excluded_by="bench", excluded_reason="bench")
        )
    db.session.commit()


def _next(project) -> Item:
    """One real next_item call."""
    item, _reason = pool.next_item(project, "user:bench")
    return item


def _release(served: list[int], item: Item) -> None:
    """Note what was served and hand the lease back, untimed, so every call does the same work."""
    served.append(item.id)
    pool.release(item, "user:bench")
    db.session.commit()


def _candidates(project, annotator: str, now, rng):
    """The queue's lanes as `next_item` builds them for a call that serves the uncertain lane."""
    return lanes(
        project.id,
        annotator,
        now,
        rng,
        champion=True,
        uncertain=True,
        current=current_scores(project),
    )


def _uncertain_lane(project):
    """The uncertain lane's statement exactly as the queue builds it, for one item."""
    lanes = {
        reason: query
        for query, reason in _candidates(project, "user:bench", utcnow(), random.Random(0))
    }
    return lanes["uncertain"].limit(1)


def run_backend(backend: str, n: int) -> None:
    """Measure one backend at one pool size and print its table."""
    with bench_app(backend) as _app:
        project = make_project(slug="bench", settings={"audit_share": 0.0, "retrain_every": 0})
        champion = add_champion(project, b"", 0)
        db.session.commit()
        ids = _fill(project, n, champion.id)
        rows, baseline = [], None
        for k in (k for k in EXCLUDED if k < n):
            _exclude_top(ids, k)
            analyze()
            served: list[int] = []
            samples = repeat(
                partial(_next, project), CALLS, warmup=3, between=partial(_release, served)
            )
            assert set(served) == {ids[k]}, "the lane serves the best item not excluded"
            lane = _uncertain_lane(project)
            lane_samples = repeat(lambda q=lane: db.session.scalar(q), CALLS, warmup=3)
            t, lane_t = median(samples), median(lane_samples)
            baseline = baseline or (t, lane_t)
            rows.append(
                [f"{k:,}", ms(t), ratio(t, baseline[0]), ms(lane_t), ratio(lane_t, baseline[1])]
            )
            db.session.rollback()
        print(f"\n## {backend}, {n:,} unlabeled items, the K top-scored excluded\n")
        headers = ["excluded K", "next_item median", "vs K=0", "lane query median", "vs K=0"]
        print(table(headers, rows))
        # The claim is an UPDATE around the lane's SELECT: explain the lane's statement itself.
        plans = explain(lambda: db.session.scalar(_uncertain_lane(project)))
        print(f"\nPlan of the uncertain lane with {k:,} excluded:\n")
        print("\n".join(line for line in plans if not line.startswith("--")))


def _lane_plans(project) -> dict[str, tuple[float, str]]:
    """Each lane's statement as the queue builds it: (execution ms, plan nodes), EXPLAIN ANALYZE."""
    conn = db.session.connection()
    out = {}
    for query, reason in _candidates(project, "user:bench", utcnow(), random.Random(0)):
        compiled = query.limit(1).compile(dialect=conn.dialect)
        rows = conn.exec_driver_sql(
            f"EXPLAIN (ANALYZE, COSTS OFF) {compiled}", compiled.params
        ).all()
        nodes = [r[0].strip().removeprefix("->  ").split(" (actual")[0] for r in rows]
        nodes = [node for node in nodes if node.startswith("Sort") or node.endswith(" on item")]
        took = next(r[0] for r in rows if r[0].startswith("Execution Time"))
        out.setdefault(reason, (float(took.split()[2]), " / ".join(nodes)))
    db.session.rollback()
    return out


def never_analyzed(n: int) -> None:
    """PostgreSQL only: every lane on a table never analyzed, against the same after ANALYZE."""
    with bench_app("postgresql") as _app:
        for table_name in ("item", "skip"):
            db.session.execute(text(f"ALTER TABLE {table_name} SET (autovacuum_enabled = false)"))
        db.session.commit()
        project = make_project(slug="bench", settings={"audit_share": 0.0, "retrain_every": 0})
        champion = add_champion(project, b"", 0)
        db.session.commit()
        ids = _fill(project, n, champion.id)
        # 10% disputed (a bad release drew a lot of feedback), 100 of them excluded.
        db.session.execute(update(Item).where(Item.id.in_(ids[::10])).values(disputed_at=utcnow()))
        _exclude_top(ids[::10], 100)
        db.session.commit()
        cold = _lane_plans(project)
        analyze()
        warm = _lane_plans(project)
        rows = [
            [
                reason,
                f"{cold[reason][0]:.3f} ms",
                f"{warm[reason][0]:.3f} ms",
                ratio(cold[reason][0], warm[reason][0]),
                cold[reason][1],
            ]
            for reason in cold
        ]
        print(f"\n## postgresql, {n:,} items, 10% disputed, never analyzed vs analyzed\n")
        print(
            table(
                ["lane", "never analyzed", "after ANALYZE", "ratio", "plan (never analyzed)"], rows
            )
        )


def main() -> None:
    """Run every requested backend and size."""
    args = parse_args(__doc__, sizes="100000")
    header("exclusion_queue: the uncertain lane with excluded items at its head")
    for backend in args.db:
        for n in args.sizes:
            run_backend(backend, n)
    if "postgresql" in args.db:
        for n in args.sizes:
            never_analyzed(n)


if __name__ == "__main__":
    main()
