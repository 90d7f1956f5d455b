"""Rescoring a large pool: the rescore job over 100k unlabeled text items vs its floor.

Per backend: a text project with the BBC labels, the demo champion (TF-IDF word 1-2 grams +
logistic regression fit on the BBC train split, the skops artifact a retrain stores), and N
unlabeled items, each a random 40-word window of a BBC article (inserted with a raw executemany;
setup is not measured). Then, twice:

  1. `worker.jobs.rescore(task_id)`, the RQ job function (`training.run_rescore` with the
     configured chunk, RESCORE_CHUNK = 2,000): load the champion, read the items not scored
     under the current key chunk by chunk, score them, write each chunk in one statement,
     commit per chunk. Pass 1 scores a fresh pool; pass 2 follows a strategy change
     (margin -> entropy), so every row's score is rewritten.
  2. The floor, in the same process right after: read the same rows (a raw DBAPI SELECT of
     id and data in id order, JSON decoded) plus `labeling.sampling.informativeness(model,
     texts)` on them in one call with the fitted model already in memory. No writes.

Prints the job's time, the floor's (read + predict), and floor / job (1.0 = as fast as the
floor; the target is >= 0.5).

    .venv/bin/python -m bench.rescore [--db sqlite,postgresql] [--sizes 100000]
"""

from __future__ import annotations

import json
import random

from sqlalchemy import func, select

from bench.common import add_champion, bench_app, header, load, parse_args, table, timed
from bench.predict import _fit
from labeling import sampling
from tests.factories import make_project
from webapp.demo import BBC_LABELS, load_bbc
from webapp.extensions import db
from webapp.models import Item, Task, utcnow


def snippets(articles, n: int, words: int = 40, seed: int = 0) -> list[str]:
    """N random windows of `words` words from the articles."""
    rng = random.Random(seed)
    tokens = [a.text.split() for a in articles]
    out = []
    for _ in range(n):
        toks = rng.choice(tokens)
        start = rng.randrange(max(1, len(toks) - words))
        out.append(" ".join(toks[start : start + words]))
    return out


def floor(project_id: int, model, strategy: str) -> tuple[float, float, int]:
    """Read every unlabeled item (raw DBAPI) and score it in one call: (read s, predict s, n)."""
    sqlite = db.engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"

    def read():
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(
                f"SELECT id, data FROM item WHERE project_id = {mark} AND label IS NULL "
                "ORDER BY id",
                (project_id,),
            )
            rows = cur.fetchall()
            raw.rollback()
        finally:
            raw.close()
        datas = [json.loads(d) if isinstance(d, str) else d for _id, d in rows]
        return [d["text"] for d in datas]

    read_s, texts = timed(read)
    predict_s, _ = timed(lambda: sampling.informativeness(model, texts, strategy))
    return read_s, predict_s, len(texts)


def job(app, project_id: int) -> tuple[float, dict]:
    """Queue a rescore as the app would and run it through the worker's job function."""
    from worker import jobs as worker_jobs
    from worker import set_app

    set_app(app)
    task = Task(project_id=project_id, name="rescore", status="queued")
    db.session.add(task)
    db.session.commit()
    task_id = task.id
    seconds, _ = timed(lambda: worker_jobs.rescore(task_id))
    db.session.expire_all()
    task = db.session.get(Task, task_id)
    if task.status != "succeeded":
        raise RuntimeError(f"rescore {task.status}: {task.error}")
    return seconds, {"progress": task.progress}


def _raw_import(project_id: int, rows: list[dict]) -> None:
    """Setup, not measured: the items by a raw DBAPI executemany (COPY on PostgreSQL)."""
    raw = db.engine.raw_connection()
    now = utcnow()
    values = [
        (project_id, r["external_id"], json.dumps(r["data"]), "import", now, random.random())
        for r in rows
    ]
    columns = "project_id, external_id, data, source, created_at, rand"
    try:
        cur = raw.cursor()
        if db.engine.dialect.name == "sqlite":
            cur.executemany(f"INSERT INTO item ({columns}) VALUES (?, ?, ?, ?, ?, ?)", values)
        else:
            with cur.copy(f"COPY item ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        raw.commit()
        cur.close()
    finally:
        raw.close()


def bench_backend(app, blob: bytes, model, texts: list[str], train_size: int) -> list[dict]:
    project = make_project(slug="pool", labels=list(BBC_LABELS), settings={"retrain_every": 0})
    add_champion(project, blob, train_size)
    db.session.commit()
    rows = [{"external_id": f"s-{i}", "data": {"text": t}} for i, t in enumerate(texts)]
    setup_s, _ = timed(lambda: _raw_import(project.id, rows))
    print(f"inserted {len(rows):,} items in {setup_s:.1f} s", flush=True)
    out = []
    for label, strategy in (
        ("fresh pool (margin)", "margin"),
        ("after a strategy change", "entropy"),
    ):
        project.settings = dict(project.settings, query_strategy=strategy)
        db.session.commit()
        job_s, info = job(app, project.id)
        scored = db.session.scalar(
            select(func.count(Item.id)).where(
                Item.project_id == project.id, Item.score_strategy == strategy
            )
        )
        if scored != len(texts) or info["progress"] != len(texts):
            raise RuntimeError(f"{scored} scored, progress {info['progress']}")
        read_s, predict_s, n = floor(project.id, model, strategy)
        print(
            f"{label}: job {job_s:.1f} s, floor {read_s:.1f} + {predict_s:.1f} s",
            flush=True,
        )
        out.append({"pass": label, "n": n, "job": job_s, "read": read_s, "predict": predict_s})
    return out


def main() -> None:
    args = parse_args(__doc__, sizes="100000")
    header("rescore of a large unlabeled pool (BBC demo champion)")
    articles = load_bbc()
    print("fitting the demo champion once for all backends …", flush=True)
    fit_s, (blob, _held, train_size, model) = timed(lambda: _fit(articles))
    print(f"fit + skops dumps: {fit_s:.1f} s, artifact {len(blob) / 1e6:.1f} MB", flush=True)
    results = []
    for backend in args.db:
        for n in args.sizes:
            texts = snippets(articles, n, seed=n)
            with bench_app(backend) as app:
                print(f"\n## {backend}, {n:,} items …", flush=True)
                for r in bench_backend(app, blob, model, texts, train_size):
                    results.append((backend, r))
                load()
    print()
    print(
        table(
            [
                "backend",
                "items",
                "pass",
                "rescore job",
                "items/s",
                "floor: read + predict",
                "floor / job",
            ],
            [
                [
                    backend,
                    f"{r['n']:,}",
                    r["pass"],
                    f"{r['job']:.1f} s",
                    f"{r['n'] / r['job']:,.0f}",
                    f"{r['read']:.1f} + {r['predict']:.1f} = {r['read'] + r['predict']:.1f} s",
                    f"{(r['read'] + r['predict']) / r['job']:.0%}",
                ]
                for backend, r in results
            ],
        )
    )


if __name__ == "__main__":
    main()
