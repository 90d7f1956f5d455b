"""One full demo retrain, end to end, and the rescore of the demo pool.

Per backend: the BBC demo project with all 2,127 articles, every one labeled with its true label
(rows written directly; setup is not measured), then:

  * Baseline, in the same process: `labeling.training.fit_model` on the train split plus
    `predict_proba_for` on the held-out split, the same arrays the retrain sees (same item ids,
    same hash split).
  * Retrain 1 (first model, no champion): `webapp.training.run_retrain(run_id)` called directly,
    i.e. load, split, snapshot, fit, evaluate, gate, serialize the artifact, record, promote, and
    enqueue the rescore (Redis db 6). Stages are timed through its `progress` callback.
  * Retrain 2 (`--runs 2`, the default): the same with a champion present, which the retrain has
    to load from its artifact and evaluate on the same held-out items. This is the steady state:
    every automatic retrain (each 25 new labels by default) looks like this one.
  * Rescore: all 2,127 articles turned back into unlabeled items, then `run_rescore(task_id)`
    (which loads the champion's artifact, scores, bulk-updates) against raw
    `labeling.sampling.informativeness` on the same texts with the baseline's model in memory.

    .venv/bin/python -m bench.retrain [--db sqlite,postgresql] [--runs 2]

The synthetic 100k-item rescore is `bench.rescore`.
"""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import func, insert, select, text, update

from bench.common import bench_app, header, load, parse_args, ratio, table, timed
from labeling import sampling, split, training
from tests.factories import make_project
from webapp import pool
from webapp import training as webtraining
from webapp.demo import BBC_LABELS, Article, load_bbc
from webapp.extensions import db
from webapp.models import Annotation, Item, ModelVersion, Project, RetrainRun, Task, utcnow


def build_demo(articles: list[Article]) -> tuple[Project, list[int]]:
    """The demo project with every article imported and labeled by an expert."""
    project = make_project(slug="bbc", labels=list(BBC_LABELS), settings={"retrain_every": 0})
    rows = [{"external_id": a.external_id, "data": {"text": a.text}} for a in articles]
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    now = utcnow()
    db.session.execute(
        update(Item),
        [
            {"id": i, "label": a.label, "labeled_at": now}
            for i, a in zip(ids, articles, strict=True)
        ],
    )
    db.session.execute(
        insert(Annotation),
        [
            {
                "project_id": project.id,
                "item_id": i,
                "annotator": "user:expert",
                "label": a.label,
                "created_at": now,
            }
            for i, a in zip(ids, articles, strict=True)
        ],
    )
    db.session.commit()
    return project, ids


def baseline(project: Project, ids: list[int], articles: list[Article]) -> dict:
    """Raw fit + held-out predict_proba on the arrays the retrain will build."""
    id_arr = np.asarray(ids, dtype=np.int64)
    labels = np.asarray([a.label for a in articles], dtype=object)
    held = split.heldout_mask(id_arr, project.setting("heldout_share"))
    X_train = [a.text for a, h in zip(articles, held, strict=True) if not h]
    X_held = [a.text for a, h in zip(articles, held, strict=True) if h]
    fit_s, model = timed(lambda: training.fit_model(project.template, X_train, labels[~held]))
    proba_s, _ = timed(lambda: training.predict_proba_for(model, X_held, project.labels))
    return {
        "fit": fit_s,
        "proba": proba_s,
        "total": fit_s + proba_s,
        "train": len(X_train),
        "held": len(X_held),
        "model": model,
    }


def retrain_once(project: Project) -> dict:
    """Queue a run and time run_retrain on it, stage by stage."""
    run = RetrainRun(project_id=project.id, trigger="manual", status="queued")
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    status = webtraining.run_retrain(
        run_id, progress=lambda stage: marks.append((stage, time.perf_counter()))
    )
    end = time.perf_counter()
    run = db.session.get(RetrainRun, run_id)
    if status != "succeeded":
        raise RuntimeError(f"retrain {run_id} {status}: {run.error}")
    stages = {}
    bounds = [*marks, ("end", end)]
    for (stage, t0), (_next, t1) in zip(bounds, bounds[1:], strict=False):
        stages[stage] = t1 - t0
    size = db.session.scalar(
        select(func.length(ModelVersion.artifact)).where(ModelVersion.id == run.model_version_id)
    )
    return {
        "total": end - start,
        "stages": stages,
        "decision": run.decision,
        "macro_f1": run.metrics["candidate"]["macro_f1"],
        "artifact_bytes": size,
    }


def rescore_demo(app, project: Project, articles: list[Article], model) -> dict:
    """Unlabel the whole demo and time run_rescore against raw informativeness()."""
    db.session.execute(
        text("UPDATE item SET label = NULL, labeled_at = NULL WHERE project_id = :p"),
        {"p": project.id},
    )
    db.session.commit()
    task = db.session.scalar(
        select(Task).where(Task.project_id == project.id, Task.status == "queued")
    )
    if task is None:
        task = Task(project_id=project.id, name="rescore", status="queued")
        db.session.add(task)
        db.session.commit()
    # The baseline scores with the model it fit on the same arrays (the same fit the retrain
    # did), already in memory; run_rescore loads the champion's artifact first.
    texts = training.to_matrix("text", [{"text": a.text} for a in articles], None)
    strategy = project.setting("query_strategy")
    raw_s, _ = timed(lambda: sampling.informativeness(model, texts, strategy))
    task_id = task.id
    rescore_s, _ = timed(
        lambda: webtraining.run_rescore(task_id, chunk=app.config["RESCORE_CHUNK"])
    )
    task = db.session.get(Task, task_id)
    scored = db.session.scalar(
        select(func.count(Item.id)).where(Item.project_id == project.id, Item.score.is_not(None))
    )
    if task.status != "succeeded" or scored != len(articles):
        raise RuntimeError(f"rescore {task.status}: {task.error}; {scored} scored")
    return {"rescore": rescore_s, "raw": raw_s, "n": scored}


def main() -> None:
    args = parse_args(__doc__, runs=(2, "retrains per backend (1: first model only)"))
    header("one full demo retrain (BBC, 2,127 articles) and the demo rescore")
    articles = load_bbc()
    results = {}
    for backend in args.db:
        with bench_app(backend, redis=True) as app:
            print(f"\n## {backend}: building the demo project …", flush=True)
            project, ids = build_demo(articles)
            base = baseline(project, ids, articles)
            print(f"baseline fit+predict_proba: {base['total']:.2f} s", flush=True)
            runs = []
            for k in range(args.runs):
                runs.append(retrain_once(project))
                print(f"retrain {k + 1}: {runs[-1]['total']:.2f} s", flush=True)
            rescore = rescore_demo(app, project, articles, base.pop("model"))
            print(f"rescore: {rescore['rescore']:.2f} s", flush=True)
            load()
            results[backend] = (base, runs, rescore)

    for backend, (base, runs, rescore) in results.items():
        print(
            f"\n## {backend}: retrain ({base['train']} train / {base['held']} held-out articles)\n"
        )
        rows = [
            [
                "raw fit_model + predict_proba (baseline)",
                f"{base['total']:.2f} s",
                f"fit {base['fit']:.2f} s, predict_proba {base['proba']:.2f} s",
                "1.0x",
            ]
        ]
        for k, r in enumerate(runs):
            what = "first model, no champion" if k == 0 else "champion present"
            stages = ", ".join(f"{s} {t:.2f} s" for s, t in r["stages"].items())
            rows.append(
                [
                    f"run_retrain #{k + 1} ({what}): {r['decision']}",
                    f"{r['total']:.2f} s",
                    stages,
                    ratio(r["total"], base["total"]),
                ]
            )
        print(table(["what", "time", "breakdown", "vs baseline"], rows))
        r0 = runs[0]
        print(
            f"\nartifact: {r0['artifact_bytes'] / 1e6:.1f} MB (skops); "
            f"candidate macro-F1 {r0['macro_f1']:.3f}"
        )
        print(f"\n## {backend}: rescore of the demo pool ({rescore['n']:,} items)\n")
        print(
            table(
                ["what", "time", "items/s", "vs baseline"],
                [
                    [
                        "run_rescore (load champion, score, bulk update)",
                        f"{rescore['rescore']:.2f} s",
                        f"{rescore['n'] / rescore['rescore']:,.0f}",
                        ratio(rescore["rescore"], rescore["raw"]),
                    ],
                    [
                        "raw informativeness() on the same texts (baseline)",
                        f"{rescore['raw']:.2f} s",
                        f"{rescore['n'] / rescore['raw']:,.0f}",
                        "1.0x",
                    ],
                ],
            )
        )


if __name__ == "__main__":
    main()
