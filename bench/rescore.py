"""Rescoring a large pool: `run_rescore` over 100k unlabeled text items vs raw informativeness().

Per backend: a text project with the BBC labels, the demo champion (TF-IDF word 1-2 grams +
logistic regression fit on the BBC train split, the skops artifact a retrain stores), and N
unlabeled items, each a random 40-word window of a BBC article (inserted with a raw executemany;
setup is not measured). Then `webapp.training.run_rescore(task_id)` with the configured chunk
(RESCORE_CHUNK, 2,000): load the champion, read unscored items in id order chunk by chunk,
score them, bulk-update score and scored_by, commit per chunk.

Baseline in the same process: `labeling.sampling.informativeness(model, texts)` on the same
N texts in one call, with the fitted model already in memory (the artifact's source). Also
reported: time until the first chunk is committed (artifact load + count + first chunk) and the
steady-state rate after it.

    .venv/bin/python -m bench.rescore [--db sqlite,postgresql] [--sizes 100000]
"""

from __future__ import annotations

import random
import time

from sqlalchemy import func, select

from bench.common import add_champion, bench_app, header, load, parse_args, ratio, table, timed
from bench.predict import _fit
from bench.queue_next import _raw_import
from labeling import sampling
from tests.factories import make_project
from webapp import training as webtraining
from webapp.demo import BBC_LABELS, load_bbc
from webapp.extensions import db
from webapp.models import Item, Task


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


def bench_backend(app, blob: bytes, model, texts: list[str], train_size: int) -> dict:
    project = make_project(slug="pool", labels=list(BBC_LABELS), settings={"retrain_every": 0})
    champion = add_champion(project, blob, train_size)
    task = Task(project_id=project.id, name="rescore", status="queued")
    db.session.add_all([champion, task])
    db.session.commit()
    task_id = task.id
    rows = [{"external_id": f"s-{i}", "data": {"text": t}} for i, t in enumerate(texts)]
    setup_s, _ = timed(lambda: _raw_import(project.id, rows))
    print(f"inserted {len(rows):,} items in {setup_s:.1f} s", flush=True)

    strategy = project.setting("query_strategy")
    raw_s, _ = timed(lambda: sampling.informativeness(model, texts, strategy))

    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    webtraining.run_rescore(
        task_id,
        chunk=app.config["RESCORE_CHUNK"],
        progress=lambda done, total: marks.append((time.perf_counter(), done)),
    )
    total_s = time.perf_counter() - start
    task = db.session.get(Task, task_id)
    scored = db.session.scalar(
        select(func.count(Item.id)).where(Item.project_id == project.id, Item.score.is_not(None))
    )
    if task.status != "succeeded" or scored != len(texts):
        raise RuntimeError(f"rescore {task.status}: {task.error}; {scored} scored")
    first_t, first_done = marks[0]
    last_t, last_done = marks[-1]
    steady = (last_done - first_done) / (last_t - first_t) if last_t > first_t else float("nan")
    return {
        "n": scored,
        "total": total_s,
        "first": first_t - start,
        "steady": steady,
        "raw": raw_s,
        "chunk": app.config["RESCORE_CHUNK"],
    }


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
                results.append((backend, bench_backend(app, blob, model, texts, train_size)))
                load()
    print()
    print(
        table(
            [
                "backend",
                "items",
                "run_rescore",
                "items/s",
                "first chunk committed",
                "steady items/s",
                "raw informativeness()",
                "raw items/s",
                "vs raw",
            ],
            [
                [
                    backend,
                    f"{r['n']:,}",
                    f"{r['total']:.1f} s",
                    f"{r['n'] / r['total']:,.0f}",
                    f"{r['first']:.1f} s",
                    f"{r['steady']:,.0f}",
                    f"{r['raw']:.1f} s",
                    f"{r['n'] / r['raw']:,.0f}",
                    ratio(r["total"], r["raw"]),
                ]
                for backend, r in results
            ],
        )
    )
    print(
        "\nraw gets the fitted model in memory; run_rescore loads the champion artifact first "
        "(the bulk of 'first chunk committed')."
    )
    print(f"chunk size: {results[0][1]['chunk']:,}" if results else "")


if __name__ == "__main__":
    main()
