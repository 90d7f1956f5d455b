"""How the queue's scores are computed: the learner's scorer (one model or a bootstrap committee),
the diverse batch at the head of the uncertain lane, and the cold start before any model.

`training.run_rescore` drives the chunked, resumable pass and commits; the functions here read
rows, call `labeling.sampling` and flush their writes (see `webapp.transaction`).

Every score lives under a key, (scored_by, score_strategy), and the queue ranks only the scores
of one key against each other (`ix_item_pool_score` leads with it):

* (learner version id, strategy): the learner's informativeness (margin, uncertainty, entropy)
  or its committee's disagreement (qbc_vote_entropy, qbc_kl). With `batch_diversity` on, the
  pass then lifts a diverse batch of the lane's head above every other score of the key:
  `BATCH_FLOOR + (b - r) / b` for the r-th of b, so the scale says which items the batch holds
  and the next pass can put them back first.
* (0, "cold_start"): before any model version exists, the representatives of k-means clusters
  of the pool in the order to label them, in (1, 2]. 0 is no model version's id; not NULL,
  because PostgreSQL reads `scored_by IS NULL` as a filter but not as a constant of the
  index's order, and sorts the lane instead of walking `ix_item_pool_score`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, update

from labeling import artifacts, sampling, training

from .extensions import db
from .models import DEFAULT_SETTINGS, Item, ModelVersion, Project, RetrainRun

# The key of cold-start scores: no model made them (see the module doc).
COLD_START_BY = 0
COLD_START = "cold_start"
# The cold start clusters at most this many unlabeled items, a uniform sample (the lowest
# `rand`), so its k-means costs the same on a pool of 10 million.
COLD_START_SAMPLE = 10_000
# A committee of this many members, refitted by every rescore pass from the learner's training
# snapshot with this seed: the same learner always gets the same committee, so a pass that
# stops and resumes writes the scores it would have written, and no artifact grows.
COMMITTEE_SIZE = 5
COMMITTEE_SEED = 0
# Each member is fitted on a bootstrap of at most about this many labeled items, so the
# committee's cost stops growing with the labeled set (BBC News, C=1000: 11 s for five members
# of 1,000 long articles, the learner's own fit on 1,700 took 5 s).
COMMITTEE_MAX_ROWS = 1000
# The diverse batch is chosen among this many items per batch item at the head of the
# uncertain lane (250 for a batch of 25), never more than BATCH_CANDIDATES_MAX (modAL's ranked
# batch is quadratic in its candidates). modAL weighs diversity by candidates / (candidates +
# labeled items): over the 2,000 best items diversity swamped uncertainty, and on BBC News the
# learner needed 285 labels to reach 99% of the full-pool accuracy (plain margin: 235; area
# under the curve 0.857 against 0.894). Over 250: 210 and 0.900; digits 335 and 0.914 (margin
# 335 and 0.913). bench.label_efficiency, 5 seeds.
BATCH_CANDIDATES_PER_ITEM = 10
BATCH_CANDIDATES_MAX = 2000
# ... keeping its distance from at most this many labeled items, the newest.
BATCH_REFERENCE = 10_000
# Above every informativeness and disagreement score: margin <= 0, uncertainty < 1, entropy
# and vote entropy <= log(number of labels), KL max disagreement <= log(committee size).
BATCH_FLOOR = 1000.0
# Reads of rows by id go in slices of this many ids (SQLite's bound-parameter limit).
ID_SLICE = 1000


def payload(project: Project):
    """The column a model reads of an item: the text alone (->> / json_extract in the
    database, not the JSON document) or the features' JSON."""
    data = Item.__table__.c.data
    return data["text"].as_string() if project.kind == "text" else data


def model_input(project: Project, values: Sequence) -> Any:
    """Model input from `payload` values: a list of texts or a float matrix."""
    if project.kind == "text":
        return [v or "" for v in values]
    return training.to_matrix(project.kind, list(values), project.features)


# ---------------------------------------------------------------------------------------------
# The learner's scorer


@dataclass
class Scorer:
    """Scores rows under one strategy; `model` is the learner, whose feature steps give the
    space the diverse batch measures distances in."""

    strategy: str
    model: Any
    score: Callable[[Any], np.ndarray]


@dataclass
class ScorerInputs:
    """What a scorer is built from, read from the database (`scorer_inputs`): the learner's
    artifact and, for a committee strategy, its training set and chosen hyper-parameters."""

    strategy: str
    labels: list[str]
    template: str
    artifact: bytes
    X_train: Any = None
    y_train: list[str] | None = None
    params: dict | None = None


def scorer_inputs(project: Project, version: ModelVersion, strategy: str) -> ScorerInputs:
    """Read what `build_scorer` needs. A committee is fitted on exactly the (item, label) pairs
    the version was trained on (its run's snapshot), with the hyper-parameters its fit chose."""
    inputs = ScorerInputs(strategy, list(project.labels), version.template, version.artifact)
    if strategy not in sampling.COMMITTEE_STRATEGIES:
        return inputs
    snapshot = None
    if version.run_id is not None:
        snapshot = db.session.scalar(
            select(RetrainRun.snapshot).where(RetrainRun.id == version.run_id)
        )
    if not snapshot:
        raise ValueError(
            f"model version {version.version} has no training snapshot to fit a committee on; "
            "retrain, or choose a strategy that scores with one model"
        )
    label_of = {int(i): str(label) for i, label in json.loads(zlib.decompress(snapshot))}
    ids = sorted(label_of)
    datas: dict[int, Any] = {}
    column = payload(project)
    for start in range(0, len(ids), ID_SLICE):
        part = ids[start : start + ID_SLICE]
        datas.update(
            db.session.execute(select(Item.__table__.c.id, column).where(Item.id.in_(part))).all()
        )
    kept = [i for i in ids if i in datas]  # an item deleted since leaves the committee's data
    inputs.X_train = model_input(project, [datas[i] for i in kept])
    inputs.y_train = [label_of[i] for i in kept]
    chosen = (version.params or {}).get("chosen")
    if isinstance(chosen, dict) and chosen.get("C") is not None:
        inputs.params = chosen
    return inputs


def build_scorer(inputs: ScorerInputs) -> Scorer:
    """The learner's informativeness under the strategy, or the disagreement of a bootstrap
    committee of its template (`COMMITTEE_SIZE` members, `COMMITTEE_SEED`, at most about
    `COMMITTEE_MAX_ROWS` items each). No database."""
    model = artifacts.loads(inputs.artifact)
    strategy, labels = inputs.strategy, inputs.labels
    if strategy in sampling.COMMITTEE_STRATEGIES:
        members = sampling.fit_committee(
            inputs.template,
            inputs.X_train,
            inputs.y_train,
            n_members=COMMITTEE_SIZE,
            seed=COMMITTEE_SEED,
            params=inputs.params,
            max_rows=COMMITTEE_MAX_ROWS,
        )
        return Scorer(
            strategy, model, lambda X: sampling.committee_scores(members, X, labels, strategy)
        )
    return Scorer(strategy, model, lambda X: sampling.informativeness(model, X, strategy))


# ---------------------------------------------------------------------------------------------
# The diverse batch at the head of the uncertain lane


def batch_size(project: Project) -> int:
    """About one retrain interval of labels: what experts label before the next learner."""
    every = int(project.setting("retrain_every") or 0)
    return every if every > 0 else int(DEFAULT_SETTINGS["retrain_every"])


def batch_candidates(project: Project) -> int:
    """How many of the lane's best items the diverse batch is chosen among."""
    return min(BATCH_CANDIDATES_PER_ITEM * batch_size(project), BATCH_CANDIDATES_MAX)


def rank_head(project: Project, key: tuple[int, str], scorer: Scorer) -> int:
    """Put the last pass's batch back at its own scores, then (with `batch_diversity`) lift a
    diverse batch of the lane's head above the rest; flushed, not committed. Returns the
    batch's size.

    Candidates are the `batch_candidates` best items of the lane (one range scan of
    `ix_item_pool_score`); `sampling.diverse_batch` ranks `batch_size` of them by score and
    distance from the labeled items and from each other. The other items keep their scores.
    """
    learner, strategy = key
    item = Item.__table__
    column = payload(project)
    lane = (
        item.c.project_id == project.id,
        item.c.label.is_(None),
        item.c.scored_by == learner,
        item.c.score_strategy == strategy,
    )
    lifted = db.session.execute(
        select(item.c.id, column).where(*lane, item.c.score >= BATCH_FLOOR)
    ).all()
    if lifted:
        X = model_input(project, [r[1] for r in lifted])
        _write(project, [r[0] for r in lifted], scorer.score(X))
    if not project.setting("batch_diversity"):
        return 0
    head = db.session.execute(
        select(item.c.id, item.c.score, column)
        .where(*lane, item.c.excluded_at.is_(None))
        .order_by(item.c.score.desc(), item.c.id)
        .limit(batch_candidates(project))
    ).all()
    if not head:
        return 0
    labeled = db.session.scalars(
        select(column)
        .where(
            item.c.project_id == project.id,
            item.c.label.is_not(None),
            item.c.excluded_at.is_(None),
        )
        .order_by(item.c.id.desc())
        .limit(BATCH_REFERENCE)
    ).all()
    picks = sampling.diverse_batch(
        scorer.model,
        model_input(project, [r[2] for r in head]),
        np.array([r[1] for r in head], dtype=np.float64),
        model_input(project, labeled),
        batch_size(project),
    )
    b = len(picks)
    _write(project, [head[i][0] for i in picks], BATCH_FLOOR + (b - np.arange(b)) / max(b, 1))
    return b


def _write(project: Project, ids: Sequence[int], scores) -> None:
    """Set the scores of a few unlabeled items, their key unchanged (one executemany)."""
    if len(ids) == 0:
        return
    db.session.execute(
        update(Item.__table__)
        .where(
            Item.id == bindparam("item_id"),
            Item.project_id == project.id,
            Item.label.is_(None),
        )
        .values(score=bindparam("new_score")),
        [{"item_id": int(i), "new_score": float(s)} for i, s in zip(ids, scores, strict=True)],
    )


# ---------------------------------------------------------------------------------------------
# The cold start


def cold_start_key() -> list:
    """WHERE clauses for cold-start scores (no model made them; see the module doc)."""
    return [
        Item.scored_by == COLD_START_BY,
        Item.score_strategy == COLD_START,
        Item.score.is_not(None),
    ]


def cold_start_size(project: Project) -> int:
    """How many diverse items the cold start serves: twice the labels of the first retrain
    (the first model is trained while experts keep labeling), and at least one retrain
    interval."""
    first = int(project.setting("first_retrain_at") or 0)
    return max(2 * first, int(project.setting("retrain_every") or 0), 1)


def cold_start(project: Project) -> int:
    """Score a diverse first sample of the pool before any model exists; flushed, not committed.

    The unlabeled items (a uniform sample of `COLD_START_SAMPLE` of them, on a pool that
    large) are clustered by `sampling.cold_start_order` into `cold_start_size` groups; the item
    nearest each group's centre gets a cold-start score, the largest group's highest. Every
    other item has none, so once the picks are labeled the cold-start lane is uniform random
    again. The picks of an earlier pass are dropped first: they were chosen from an older pool.
    Returns how many items were picked.
    """
    item = Item.__table__
    db.session.execute(
        update(item)
        .where(
            item.c.project_id == project.id,
            item.c.label.is_(None),
            item.c.scored_by == COLD_START_BY,
            item.c.score_strategy == COLD_START,
        )
        .values(score=None, scored_by=None, score_strategy=None)
    )
    rows = db.session.execute(
        select(item.c.id, payload(project))
        .where(item.c.project_id == project.id, item.c.label.is_(None))
        .where(item.c.excluded_at.is_(None))
        .order_by(item.c.rand)
        .limit(COLD_START_SAMPLE)
    ).all()
    if not rows:
        return 0
    X = model_input(project, [r[1] for r in rows])
    picks = sampling.cold_start_order(X, cold_start_size(project), seed=0, kind=project.kind)
    m = len(picks)
    db.session.execute(
        update(item)
        .where(item.c.id == bindparam("item_id"), item.c.label.is_(None))
        .values(score=bindparam("new_score"), scored_by=COLD_START_BY, score_strategy=COLD_START),
        [{"item_id": rows[i][0], "new_score": 1.0 + (m - r) / m} for r, i in enumerate(picks)],
    )
    return m
