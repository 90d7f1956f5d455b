"""What the queue serves: a diverse cold start, a diverse head of the uncertain lane, and query by
committee; disputed items still first, audits still uniform random."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sqlalchemy import select, update

from labeling import sampling
from tests.factories import _AuditLane, label_all, make_champion, make_project
from webapp import pool, scoring, serving, settings, training
from webapp.extensions import db
from webapp.models import STRATEGIES, Item, ModelVersion, Task, utcnow


def test_the_product_offers_every_strategy_labeling_scores_and_each_fits_its_column():
    assert STRATEGIES == sampling.ALL_STRATEGIES
    width = Item.__table__.c.score_strategy.type.length
    assert all(len(s) <= width for s in (*STRATEGIES, scoring.COLD_START))


# ---------------------------------------------------------------------------------------------
# Cold start

BLOB_SIZES = [400, 200, 100, 50, 25, 12, 8, 5]
BLOB_FEATURES = [f"x{i}" for i in range(len(BLOB_SIZES))]


def blob_project(slug: str = "blobs"):
    """A tabular project over eight well-separated clusters of very different sizes; returns
    it with each item's cluster."""
    X, y = make_blobs(
        n_samples=BLOB_SIZES, centers=20 * np.eye(len(BLOB_SIZES)), cluster_std=1.0, random_state=0
    )
    project = make_project(
        slug=slug,
        kind="tabular",
        labels=[f"c{k}" for k in range(len(BLOB_SIZES))],
        features=BLOB_FEATURES,
    )
    rows = [
        {
            "external_id": f"b{i}",
            "data": {"features": dict(zip(BLOB_FEATURES, x.tolist(), strict=True))},
        }
        for i, x in enumerate(X)
    ]
    random.seed(3)  # the items' `rand`, which the random lanes walk
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    return project, dict(zip(ids, (f"c{k}" for k in y), strict=True))


def serve_and_label(project, cluster: dict, n: int, expert: str = "user:expert") -> list:
    """One expert labels the first n items the queue serves; returns (cluster, reason) each."""
    served = []
    for _ in range(n):
        item, reason = pool.next_item(project, expert)
        served.append((cluster[item.id], reason))
        pool.annotate(project, item, expert, cluster[item.id])
    return served


def test_the_first_items_served_cover_every_cluster(app, run_jobs):
    project, cluster = blob_project()
    training.request_rescore(project)  # as an import through the API or the CLI does
    db.session.commit()
    run_jobs()
    picks = db.session.scalars(
        select(Item.id).where(*scoring.cold_start_key()).order_by(Item.score.desc())
    ).all()
    assert len(picks) == scoring.cold_start_size(project) == 25
    # Ten labels, the first model's: they reach every cluster, the smallest (5 of 800 items)
    # included, and the largest cluster's representative comes first.
    served = serve_and_label(project, cluster, 10)
    assert {reason for _, reason in served} == {"cold-start"}
    assert {c for c, _ in served} == {f"c{k}" for k in range(len(BLOB_SIZES))}
    assert served[0][0] == "c0"


def test_without_the_cold_start_pass_random_items_miss_clusters(app):
    project, cluster = blob_project()
    served = serve_and_label(project, cluster, 10)
    assert {reason for _, reason in served} == {"cold-start"}
    assert len({c for c, _ in served}) < len(BLOB_SIZES)


def test_disputed_items_come_before_the_cold_start_picks(app, run_jobs):
    project, cluster = blob_project()
    training.request_rescore(project)
    db.session.commit()
    run_jobs()
    last = max(cluster)
    db.session.execute(update(Item).where(Item.id == last).values(disputed_at=utcnow()))
    db.session.commit()
    item, reason = pool.next_item(project, "user:1")
    assert (item.id, reason) == (last, "disputed")
    _, reason = pool.next_item(project, "user:1")  # the same lease: a reload
    item, reason = pool.next_item(project, "user:2")
    assert reason == "cold-start" and item.score_strategy == scoring.COLD_START


def test_once_picked_items_are_labeled_the_cold_start_is_random_and_a_model_ends_it(app, run_jobs):
    project, cluster = blob_project()
    project.settings = {"retrain_every": 0}  # no model comes: the cold start goes on
    db.session.commit()
    training.request_rescore(project)
    db.session.commit()
    run_jobs()
    size = scoring.cold_start_size(project)
    picks = set(db.session.scalars(select(Item.id).where(*scoring.cold_start_key())).all())
    assert len(picks) == size == 20
    served = []
    for _ in range(size + 5):
        item, reason = pool.next_item(project, "user:1")
        assert reason == "cold-start"
        served.append(item.id)
        pool.annotate(project, item, "user:1", cluster[item.id])
    assert set(served[:size]) == picks and not set(served[size:]) & picks
    # A new import asks again: the picks are chosen anew among the items still unlabeled.
    training.request_rescore(project)
    db.session.commit()
    run_jobs()
    again = set(
        db.session.scalars(
            select(Item.id).where(Item.label.is_(None), *scoring.cold_start_key())
        ).all()
    )
    assert len(again) == size and not again & set(served)


# ---------------------------------------------------------------------------------------------
# The diverse head of the uncertain lane

COPIES = 30


def line_project(run_jobs, batch_diversity: bool):
    """A two-feature project whose learner's boundary is the line x1 = 0, and a pool holding
    COPIES exact copies of the point on it (the most uncertain item), other points near it, and
    points spread on both sides. Returns the project and the ids of the copies."""
    project = make_project(
        slug="line",
        kind="tabular",
        labels=["a", "b"],
        features=["x1", "x2"],
        settings={
            "retrain_every": 0,
            "audit_share": 0.0,
            "audit_share_early": 0.0,
            "batch_diversity": batch_diversity,
        },
    )
    rng = np.random.default_rng(0)
    # Symmetric about x1 = 0: the boundary is that line, and the copies at (0, 0) lie on it.
    labeled = [(-3.0, y) for y in range(-10, 11, 2)] + [(3.0, y) for y in range(-10, 11, 2)]
    near = [(s * rng.uniform(0.02, 0.1), rng.uniform(-9, 9)) for s in (-1, 1) * 6]
    spread = [(s * rng.uniform(1.0, 2.5), rng.uniform(-10, 10)) for s in (-1, 1) * 40]
    points = labeled + [(0.0, 0.0)] * COPIES + near + spread
    rows = [
        {"external_id": f"p{i}", "data": {"features": {"x1": float(x), "x2": float(y)}}}
        for i, (x, y) in enumerate(points)
    ]
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    # Labeled through the queue (not imported: a hashed share of imported labels is held out,
    # which would tilt the boundary).
    for side in ("a", "b"):
        wanted = [i for i, (x, _y) in zip(ids, labeled, strict=False) if (x < 0) == (side == "a")]
        label_all(project, wanted, label=side)
    training.trigger_retrain(project)
    db.session.commit()
    run_jobs()  # the retrain, then the rescore its learner queued
    assert training.learner_id(project.id) is not None
    return project, ids[len(labeled) : len(labeled) + COPIES]


def head(project, n: int) -> list[Item]:
    """The first n items the uncertain lane serves (n experts, one item each)."""
    served = []
    for k in range(n):
        item, reason = pool.next_item(project, f"user:head-{k}")
        assert reason == "uncertain"
        served.append(item)
    return served


def release_all(project) -> None:
    db.session.execute(
        update(Item)
        .where(Item.project_id == project.id)
        .values(lease_owner=None, lease_until=None, lease_reason=None)
    )
    db.session.commit()


def informativeness(project, items: list[Item]) -> np.ndarray:
    """The learner's margin score of items (higher: less sure)."""
    version = db.session.get(ModelVersion, training.learner_id(project.id))
    model = training.load_model(version)
    X = np.array([[i.data["features"]["x1"], i.data["features"]["x2"]] for i in items])
    return sampling.informativeness(model, X, "margin")


def test_the_head_of_the_lane_is_not_a_run_of_copies_and_stays_uncertain(app, run_jobs):
    project, copies = line_project(run_jobs, batch_diversity=True)
    first = head(project, 10)
    assert sum(item.id in copies for item in first) <= 1
    assert len({(i.data["features"]["x1"], i.data["features"]["x2"]) for i in first}) == 10
    unlabeled = db.session.scalars(
        select(Item).where(Item.project_id == project.id, Item.label.is_(None))
    ).all()
    best = informativeness(project, unlabeled).max()
    assert informativeness(project, first[:1])[0] >= best - 0.05, "the top item is most uncertain"
    # Scores stay under the lane's key: the batch is lifted above the other scores.
    key = training.score_key(project)
    assert {(i.scored_by, i.score_strategy) for i in first} == {key}
    assert all(i.score >= scoring.BATCH_FLOOR for i in first)

    # Diversity off: the rescore the change queues puts the batch back, and plain margin
    # serves the copies one after the other.
    release_all(project)
    settings.apply(project, {"batch_diversity": False})
    db.session.commit()
    run_jobs()
    plain = head(project, 10)
    assert all(item.id in copies for item in plain)
    assert (
        db.session.scalar(select(Item.id).where(Item.score >= scoring.BATCH_FLOOR).limit(1)) is None
    )


def test_a_new_learner_puts_its_own_batch_at_the_head(app, run_jobs):
    project, copies = line_project(run_jobs, batch_diversity=True)
    first = head(project, 3)
    for k, item in enumerate(first):
        pool.annotate(
            project, item, f"user:head-{k}", "a" if item.data["features"]["x1"] < 0 else "b"
        )
    training.trigger_retrain(project)
    db.session.commit()
    run_jobs()
    learner = training.learner_id(project.id)
    lifted = db.session.scalars(
        select(Item).where(
            Item.project_id == project.id,
            Item.label.is_(None),
            Item.score >= scoring.BATCH_FLOOR,
        )
    ).all()
    assert len(lifted) == scoring.batch_size(project) == 25
    assert {i.scored_by for i in lifted} == {learner}
    first = sorted(lifted, key=lambda i: -i.score)[:10]
    assert sum(i.id in copies for i in first) <= 1


# ---------------------------------------------------------------------------------------------
# Audits


def test_audits_stay_uniform_random_whatever_the_scores(app, run_jobs):
    project, _copies = line_project(run_jobs, batch_diversity=True)
    project.settings = {**project.settings, "audit_share": 0.5}
    db.session.commit()
    for k in range(5):
        # The audit lane starts at `rand` 0 here and walks up: the free item of lowest `rand`,
        # whatever the lane's head (a lifted batch) holds.
        lowest = db.session.scalar(
            select(Item.id)
            .where(Item.project_id == project.id, Item.label.is_(None), Item.lease_owner.is_(None))
            .order_by(Item.rand)
            .limit(1)
        )
        item, reason = pool.next_item(project, f"user:audit-{k}", rng=_AuditLane())
        assert (item.id, reason) == (lowest, "audit")


# ---------------------------------------------------------------------------------------------
# Query by committee


def _disagreement(project, strategy: str, items: list[Item]) -> np.ndarray:
    """A committee's disagreement on items, fitted here as the rescore job fits one: on the
    learner's training items (every labeled item: none is an audit), its chosen C, seed 0."""
    version = db.session.get(ModelVersion, training.learner_id(project.id))
    labeled = db.session.scalars(
        select(Item).where(Item.project_id == project.id, Item.label.is_not(None)).order_by(Item.id)
    ).all()
    members = sampling.fit_committee(
        version.template,
        [i.data["text"] for i in labeled],
        [i.label for i in labeled],
        n_members=scoring.COMMITTEE_SIZE,
        seed=scoring.COMMITTEE_SEED,
        params=version.params["chosen"],
        max_rows=scoring.COMMITTEE_MAX_ROWS,
    )
    texts = [i.data["text"] for i in items]
    return sampling.committee_scores(members, texts, list(project.labels), strategy)


@pytest.mark.parametrize("strategy", sampling.COMMITTEE_STRATEGIES)
def test_a_committee_strategy_scores_the_pool_and_orders_the_lane(app, run_jobs, strategy):
    settings_ = {"retrain_every": 0, "audit_share": 0.0, "batch_diversity": False}
    project = make_project(settings=settings_)
    make_champion(project, n_labeled=90, n_pool=0)
    # Items that mix two classes' words, on which bootstrap members come to differ.
    mixed = [
        {"external_id": f"mix-{i}", "data": {"text": f"{a} {b}"}}
        for i, (a, b) in enumerate(
            zip(
                ["match goal", "election vote", "phone chip", "team coach", "party law"] * 8,
                ["software data", "cup league", "minister policy", "app digital", "score win"] * 8,
                strict=True,
            )
        )
    ]
    mixed = [{**row, "data": {"text": f"{row['data']['text']} {k}"}} for k, row in enumerate(mixed)]
    list(pool.import_items(project, mixed))
    settings.apply(project, {"query_strategy": strategy})
    db.session.commit()
    run_jobs()
    key = training.score_key(project)
    assert key[1] == strategy
    keys = db.session.execute(
        select(Item.scored_by, Item.score_strategy)
        .where(Item.project_id == project.id, Item.label.is_(None))
        .distinct()
    ).all()
    assert keys == [key]
    unlabeled = db.session.scalars(
        select(Item).where(Item.project_id == project.id, Item.label.is_(None)).order_by(Item.id)
    ).all()
    expected = _disagreement(project, strategy, unlabeled)
    stored = np.array([i.score for i in unlabeled])
    assert np.allclose(stored, expected)
    assert expected.max() > 0, "the committee disagrees somewhere"
    served = head(project, 5)
    by_id = dict(zip([i.id for i in unlabeled], expected, strict=True))
    assert [by_id[i.id] for i in served] == sorted(expected, reverse=True)[:5]
    # A prediction cannot score its item with one model: the rescore job scores it.
    before = db.session.scalar(select(Task.id).order_by(Task.id.desc()).limit(1))
    serving.predict(project, {"text": "goal minister chip"}, external_id="new")
    db.session.commit()
    new = db.session.scalar(select(Item).where(Item.external_id == "new"))
    assert new.score is None
    assert db.session.scalar(select(Task.id).order_by(Task.id.desc()).limit(1)) != before
    run_jobs()
    db.session.refresh(new)
    assert (new.scored_by, new.score_strategy) == key


def test_a_committee_strategy_with_batch_diversity_lifts_a_batch(app, run_jobs):
    project = make_project(settings={"retrain_every": 10, "audit_share": 0.0})
    make_champion(project, n_labeled=90, n_pool=60)
    settings.apply(project, {"query_strategy": "qbc_kl", "batch_diversity": True})
    db.session.commit()
    run_jobs()
    lifted = db.session.scalars(
        select(Item).where(Item.project_id == project.id, Item.score >= scoring.BATCH_FLOOR)
    ).all()
    assert len(lifted) == 10
    assert {(i.scored_by, i.score_strategy) for i in lifted} == {training.score_key(project)}
    item, reason = pool.next_item(project, "user:1")
    assert reason == "uncertain" and item.score == max(i.score for i in lifted)
