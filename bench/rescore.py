"""Rescoring a large pool: the rescore job over 100k unlabeled text items vs its floor.

Per backend: a text project with the BBC labels, the demo champion (TF-IDF word 1-2 grams +
logistic regression fit on the BBC train split, the skops artifact a retrain stores) with its
training articles as labeled items and its run's training snapshot, and N unlabeled items, each
a random 40-word window of a BBC article (inserted with a raw executemany; setup is not
measured). Then, pass by pass:

  1. `worker.jobs.rescore(task_id)`, the RQ job function (`training.run_rescore` with the
     configured chunk, RESCORE_CHUNK = 2,000): load the champion, read the items not scored
     under the current key chunk by chunk, score them, write each chunk in one statement,
     commit per chunk, then (`scoring.rank_head`) put the last batch back and, with
     `batch_diversity`, lift a diverse batch of 25 chosen among the lane's 250 best items.
     The passes: a fresh pool (margin); `batch_diversity` turned on (the key is unchanged, so
     this is the re-rank alone); a strategy change (entropy, with diversity), so every row's
     score is rewritten; query by committee (`qbc_vote_entropy`: five members refitted on the
     champion's 1,700 training articles, then five predictions per chunk); and `qbc_kl` with
     diversity.
  2. The floor of the single-model passes, in the same process right after: read the same
     rows (a raw DBAPI SELECT of id and data in id order, JSON decoded) plus
     `labeling.sampling.informativeness(model, texts)` on them in one call with the fitted
     model already in memory. No writes.

Prints the job's time, the floor's (read + predict), and floor / job (1.0 = as fast as the
floor; the target is >= 0.5 for a pass without a committee).

    .venv/bin/python -m bench.rescore [--db sqlite,postgresql] [--sizes 100000]
"""

from __future__ import annotations

import json
import random
import zlib

import numpy as np
from sqlalchemy import func, select

from bench.common import add_champion, bench_app, header, load, parse_args, table, timed
from bench.predict import _fit
from labeling import sampling, split
from tests.factories import make_project
from webapp import pool, scoring
from webapp.demo import BBC_LABELS, load_bbc
from webapp.extensions import db
from webapp.models import Item, RetrainRun, Task, utcnow


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


# (pass, query strategy, batch diversity, whether every row is scored again)
PASSES = (
    ("fresh pool (margin)", "margin", False, True),
    ("batch diversity on (re-rank only)", "margin", True, False),
    ("strategy change (entropy, diversity)", "entropy", True, True),
    ("committee (qbc_vote_entropy)", "qbc_vote_entropy", False, True),
    ("committee + diversity (qbc_kl)", "qbc_kl", True, True),
)


def add_training_set(project, champion, train: list, model) -> None:
    """The champion's training articles as labeled items, and its run's snapshot of them (what
    a committee strategy refits its members on), as a retrain would have left them."""
    rows = [{"external_id": f"train-{i}", "data": {"text": a.text}} for i, a in enumerate(train)]
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    pool.label_unlabeled(project, [(i, a.label) for i, a in zip(ids, train, strict=True)], "bench")
    pairs = [[i, a.label] for i, a in zip(ids, train, strict=True)]
    run = RetrainRun(
        project_id=project.id,
        status="succeeded",
        trigger="manual",
        snapshot=zlib.compress(json.dumps(pairs).encode()),
    )
    db.session.add(run)
    db.session.flush()
    champion.run_id = run.id
    champion.params = {"chosen": model.chosen_params_}
    db.session.commit()


def bench_backend(app, blob: bytes, model, texts: list[str], train: list) -> list[dict]:
    project = make_project(slug="pool", labels=list(BBC_LABELS), settings={"retrain_every": 0})
    champion = add_champion(project, blob, len(train))
    db.session.commit()
    add_training_set(project, champion, train, model)
    rows = [{"external_id": f"s-{i}", "data": {"text": t}} for i, t in enumerate(texts)]
    setup_s, _ = timed(lambda: _raw_import(project.id, rows))
    print(f"inserted {len(rows):,} items in {setup_s:.1f} s", flush=True)
    out = []
    for label, strategy, diversity, full in PASSES:
        project.settings = dict(
            project.settings, query_strategy=strategy, batch_diversity=diversity
        )
        db.session.commit()
        job_s, info = job(app, project.id)
        scored = db.session.scalar(
            select(func.count(Item.id)).where(
                Item.project_id == project.id,
                Item.label.is_(None),
                Item.score_strategy == strategy,
            )
        )
        lifted = db.session.scalar(
            select(func.count(Item.id)).where(
                Item.project_id == project.id,
                Item.label.is_(None),
                Item.score >= scoring.BATCH_FLOOR,
            )
        )
        if scored != len(texts) or info["progress"] != (len(texts) if full else 0):
            raise RuntimeError(f"{scored} scored, progress {info['progress']}")
        if lifted != (scoring.batch_size(project) if diversity else 0):
            raise RuntimeError(f"{lifted} items lifted")
        result = {"pass": label, "n": len(texts), "job": job_s, "read": None, "predict": None}
        if full and strategy in sampling.STRATEGIES:
            result["read"], result["predict"], result["n"] = floor(project.id, model, strategy)
            print(
                f"{label}: job {job_s:.1f} s, floor {result['read']:.1f} + "
                f"{result['predict']:.1f} s",
                flush=True,
            )
        else:
            print(f"{label}: job {job_s:.1f} s", flush=True)
        out.append(result)
    return out


def main() -> None:
    args = parse_args(__doc__, sizes="100000")
    header("rescore of a large unlabeled pool (BBC demo champion)")
    articles = load_bbc()
    print("fitting the demo champion once for all backends …", flush=True)
    fit_s, (blob, _held, _train_size, model) = timed(lambda: _fit(articles))
    held = split.heldout_mask(np.arange(1, len(articles) + 1, dtype=np.int64), 0.2)
    train = [a for a, h in zip(articles, held, strict=True) if not h]  # as _fit chose them
    print(f"fit + skops dumps: {fit_s:.1f} s, artifact {len(blob) / 1e6:.1f} MB", flush=True)
    results = []
    for backend in args.db:
        for n in args.sizes:
            texts = snippets(articles, n, seed=n)
            with bench_app(backend) as app:
                print(f"\n## {backend}, {n:,} items …", flush=True)
                for r in bench_backend(app, blob, model, texts, train):
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
                    "-"
                    if r["read"] is None
                    else f"{r['read']:.1f} + {r['predict']:.1f} = {r['read'] + r['predict']:.1f} s",
                    "-" if r["read"] is None else f"{(r['read'] + r['predict']) / r['job']:.0%}",
                ]
                for backend, r in results
            ],
        )
    )


if __name__ == "__main__":
    main()
