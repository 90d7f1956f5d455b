"""A project whose retrain takes seconds (long enough to kill, stop or shut down mid-way)."""

from __future__ import annotations

import random

from sqlalchemy import insert, update

from webapp.extensions import db
from webapp.models import Annotation, Item, Project, utcnow
from webapp.pool import import_items

FEATURES = [f"x{i}" for i in range(64)]


def slow_project(slug: str = "slow", n: int = 6000, labeled: int | None = None) -> Project:
    """A tabular gradient-boosting project with `n` items, `labeled` of them labeled (all by
    default), on noisy labels: its retrain trains 100 boosting rounds for a few seconds."""
    rng = random.Random(slug)
    project = Project(
        slug=slug,
        name=slug.title(),
        kind="tabular",
        labels=["a", "b", "c"],
        features=FEATURES,
        template="tabular-hgb",
        settings={},
    )
    db.session.add(project)
    db.session.commit()
    rows = [
        {"external_id": f"{slug}-{i}", "data": {"features": {f: rng.gauss(0, 1) for f in FEATURES}}}
        for i in range(n)
    ]
    ids = [i for batch in import_items(project, rows) for i in batch]
    labeled = n if labeled is None else labeled
    now = utcnow()
    labels = {}
    for item_id, row in zip(ids[:labeled], rows, strict=False):
        x = row["data"]["features"]
        score = x["x0"] + x["x1"] * x["x2"] + rng.gauss(0, 1)
        labels[item_id] = "a" if score < -0.5 else "b" if score < 0.5 else "c"
    db.session.execute(
        insert(Annotation),
        [
            {"project_id": project.id, "item_id": i, "annotator": "seed:test", "label": y}
            for i, y in labels.items()
        ],
    )
    db.session.execute(
        update(Item), [{"id": i, "label": y, "labeled_at": now} for i, y in labels.items()]
    )
    project.labeled_count = labeled
    db.session.commit()
    return project
