"""Label efficiency: Corrigo's own loop, driven by an oracle expert, against ideal baselines.

How fast does the product learn per label an expert gives it? Per data set and seed, the data is
split stratified into a pool (70%) and a test split (30%), then:

  * product default: a project with the default settings (see `webapp.models.DEFAULT_SETTINGS`:
    the query strategy, batch diversity, audits, a retrain every 25 label changes, the gate) on
    a fresh, migrated database. The pool is imported unlabeled with `pool.import_items` and a
    rescore is requested, as the API's and the CLI's imports do (before any model it picks the
    cold start's diverse items); an oracle expert asks `pool.next_item(project, "user:oracle")`
    for an item and `pool.annotate`s it with its true label, committing as the views do. After
    each label, every queued `RetrainRun` is run with `training.run_retrain` and every queued
    rescore `Task` with `training.run_rescore`, synchronously, as the worker would. Every label
    the queue served counts (audit and cold-start ones included). After each retrain the
    champion that serves `predict` is scored on the test split, at the label count at which it
    was promoted; so is the learner, the newest model version whatever the gate decided, which
    steers the queue (its row: "… learner").
  * product <strategy>[+diversity] (`--strategies`): the same with `query_strategy` set and
    `batch_diversity` off, or on with `+diversity`. `--settings` sets other project settings
    for every product row (e.g. `gate.mode=non_inferiority,audit_share_early=0.2`).
  * random: the ideal loop (no held-out set, no gate, a refit every 10 labels with the same
    template via `labeling.training.fit_model`), labeling in random order.
  * modAL margin: the same ideal loop, each refit followed by the 10 pool rows of smallest
    margin (`labeling.sampling.query(clf, X_pool, 10, "margin")`).

Both baselines start from the same 10 random labels, stratified (so two classes or more exist).
"Full pool" is the template fitted on every pool row, scored on the test split.

The accuracy at label count n is that of the model serving after n labels (the champion, for the
product); before any model, that of always answering the pool's majority class. Printed per set,
as the median over seeds with the min–max: labels needed to reach 95% and 99% of the full-pool
accuracy (the first label count at which the curve gets there), accuracy at 100, 200 and 500
labels, the area under the learning curve (mean accuracy over label counts 10..budget), the
number of promotions (for the baselines: refits) that replaced a model with one more than 1 point
worse on the test split, and how many of the labels went to held-out audits.

    .venv/bin/python -m bench.label_efficiency [--sets digits,bbc] [--seeds 5] [--budget 500]
        [--db sqlite] [--jobs 2] [--strategies default,margin,margin+diversity,qbc_kl]
        [--settings KEY=VALUE[,KEY=VALUE]]

`--jobs` runs the (set, seed, method) cells in that many processes (default 2, one per core of
the machine this was written for); the product's retrain and rescore times it prints are then
measured next to another busy process (`--jobs 1` for quiet timings).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.common import BACKENDS, header, table

SETS = ("digits", "bbc")
BASELINES = ("random", "margin")
ROW_NAMES = {"random": "random", "margin": "modAL margin"}
DEFAULT_CONFIG = "default"
DIVERSITY = "+diversity"
LEARNER = " learner"  # the learner's row of a product config: "product default learner"
BASELINE_STEP = 10  # the ideal loop refits every 10 labels
SEED_LABELS = 10
TEST_SHARE = 0.3
WORSE_BY = 0.01  # a promotion "to a worse champion" loses more than 1 point of test accuracy
CHECKPOINTS = (100, 200, 500)
ORACLE = "user:oracle"


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class DataSet:
    """A labeled data set as a project would hold it: item payloads and true labels."""

    name: str
    kind: str
    template: str
    labels: list[str]
    features: list[str]
    datas: list[dict]
    y: np.ndarray  # str labels, aligned with datas


def load_set(name: str) -> DataSet:
    """Load `digits` (sklearn's 8x8 digits, 64 features) or `bbc` (BBC News, 2,127 articles)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        features = [f"px{i}" for i in range(digits.data.shape[1])]
        datas = [
            {"features": {f: float(v) for f, v in zip(features, row, strict=True)}}
            for row in digits.data
        ]
        labels = [str(c) for c in sorted(set(digits.target.tolist()))]
        y = np.array([str(t) for t in digits.target], dtype=object)
        return DataSet(name, "tabular", "tabular-logreg", labels, features, datas, y)
    if name == "bbc":
        from webapp.demo import BBC_LABELS, load_bbc

        articles = load_bbc()
        datas = [{"text": a.text} for a in articles]
        y = np.array([a.label for a in articles], dtype=object)
        return DataSet(name, "text", "text-logreg", list(BBC_LABELS), [], datas, y)
    raise ValueError(f"unknown set {name!r}; expected one of {', '.join(SETS)}")


@dataclass
class Split:
    """One seed's stratified split of a data set: the pool (70%) and the test split (30%).

    A text template starts with a stateless HashingVectorizer, the same for every model of the
    template; `H_pool` and `H_test` hold its output, computed once, so that scoring a model on
    the test split (and the margin baseline's pool queries) runs only the fitted steps after it.
    Fitting always goes through `fit_model` on the raw input.
    """

    ds: DataSet
    seed: int
    pool: np.ndarray  # row indices into ds
    test: np.ndarray
    X_pool: Any
    X_test: Any
    hasher: Any = None
    H_pool: Any = None
    H_test: Any = None

    @property
    def y_pool(self) -> np.ndarray:
        return self.ds.y[self.pool]

    @property
    def y_test(self) -> np.ndarray:
        return self.ds.y[self.test]

    def _fitted_part(self, model: Any) -> tuple[Any, bool]:
        """(the model after its stateless hasher, True) when the cache applies, else (model,
        False)."""
        if self.hasher is None:
            return model, False
        first = model.steps[0][1]
        if type(first) is not type(self.hasher) or first.get_params() != self.hasher.get_params():
            return model, False
        return model[1:], True

    def accuracy(self, model: Any) -> float:
        """Test accuracy through the product's label-aligned probabilities (predict_proba_for)."""
        from labeling.training import predict_proba_for

        rest, cached = self._fitted_part(model)
        proba = predict_proba_for(rest, self.H_test if cached else self.X_test, self.ds.labels)
        predicted = np.array(self.ds.labels, dtype=object)[proba.argmax(axis=1)]
        return float(np.mean(predicted == self.y_test))

    def query(self, model: Any, rows: np.ndarray, n: int, strategy: str) -> np.ndarray:
        """`labeling.sampling.query` over the pool rows `rows`; returns pool positions."""
        from labeling import sampling

        rest, cached = self._fitted_part(model)
        X = self.H_pool[rows] if cached else _take(self.X_pool, rows)
        return rows[sampling.query(rest, X, n, strategy)]

    def majority_accuracy(self) -> float:
        """Accuracy on test of always answering the pool's most common label."""
        majority = Counter(self.y_pool.tolist()).most_common(1)[0][0]
        return float(np.mean(self.y_test == majority))


def make_split(ds: DataSet, seed: int) -> Split:
    """Stratified 70/30 split of `ds` into pool and test for one seed."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.model_selection import train_test_split

    from labeling.training import build_model, to_matrix

    rows = np.arange(len(ds.y))
    pool, test = train_test_split(rows, test_size=TEST_SHARE, stratify=ds.y, random_state=seed)
    pool, test = np.sort(pool), np.sort(test)
    X_pool = to_matrix(ds.kind, [ds.datas[i] for i in pool], ds.features)
    X_test = to_matrix(ds.kind, [ds.datas[i] for i in test], ds.features)
    split = Split(ds, seed, pool, test, X_pool, X_test)
    first = build_model(ds.template).steps[0][1]
    if isinstance(first, HashingVectorizer):
        split.hasher = first
        split.H_pool, split.H_test = first.transform(X_pool), first.transform(X_test)
    return split


def _take(X: Any, rows: Sequence[int] | np.ndarray) -> Any:
    if isinstance(X, list):
        return [X[i] for i in rows]
    return X[np.asarray(rows, dtype=np.intp)]


def full_pool_accuracy(split: Split) -> float:
    """The template fitted on every pool row, scored on the test split."""
    from labeling.training import fit_model

    return split.accuracy(fit_model(split.ds.template, split.X_pool, list(split.y_pool)))


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Run:
    """One method on one (set, seed): its learning curve and what it took to get there.

    `steps` are (label count at which a model started serving, its test accuracy), in order;
    `floor` is the accuracy before the first one (the majority class).
    """

    set_name: str
    seed: int
    method: str
    budget: int
    labels_asked: int
    floor: float
    full_pool: float = float("nan")  # filled in by run_all
    steps: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def curve(self) -> np.ndarray:
        """Accuracy after n labels, for n = 0..budget."""
        out = np.full(self.budget + 1, self.floor)
        for n, acc in self.steps:
            if n <= self.budget:
                out[n:] = acc
        return out

    def labels_to(self, fraction: float) -> int | None:
        """The first label count with accuracy at `fraction` of full-pool or more; None if never."""
        hit = np.nonzero(self.curve() >= fraction * self.full_pool - 1e-12)[0]
        return int(hit[0]) if len(hit) else None

    def aulc(self) -> float:
        """Mean accuracy over label counts 10..budget."""
        return float(self.curve()[SEED_LABELS:].mean())

    def changes(self) -> list[float]:
        """Test-accuracy change of each model replacing a previous one (the first has none)."""
        accs = [acc for _, acc in self.steps]
        return [b - a for a, b in zip(accs, accs[1:], strict=False)]

    def worse_promotions(self) -> int:
        """Replacements by a model more than 1 point worse on the test split."""
        return sum(1 for d in self.changes() if d < -WORSE_BY)


# ---------------------------------------------------------------------------------------------
# The product loop


@contextlib.contextmanager
def _quiet_enqueues() -> Iterator[None]:
    """No worker or Redis here: every enqueue logs a warning, and the row keeps the intent that
    this bench then runs itself."""
    logger = logging.getLogger("webapp.jobs")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def config_settings(config: str) -> dict[str, object]:
    """The project settings of a product config: `default`, `<strategy>` or
    `<strategy>+diversity`."""
    if config == DEFAULT_CONFIG:
        return {}
    strategy = config.removesuffix(DIVERSITY)
    return {"query_strategy": strategy, "batch_diversity": config.endswith(DIVERSITY)}


def run_product(
    split: Split,
    budget: int,
    backend: str = "sqlite",
    config: str = DEFAULT_CONFIG,
    extra: Sequence[tuple[str, str]] = (),
) -> tuple[Run, Run]:
    """Drive Corrigo itself with an oracle expert for `budget` labels; see the module doc.

    Returns the champion's run and the learner's (same labels, same loop)."""
    from sqlalchemy import func, select

    from bench.common import bench_app
    from tests.factories import make_project
    from webapp import pool, settings, training
    from webapp.extensions import db
    from webapp.models import Annotation, ModelVersion, RetrainRun, Task

    ds, seed, y_pool = split.ds, split.seed, split.y_pool
    started = time.perf_counter()
    method = f"product {config}"
    run = Run(ds.name, seed, method, budget, 0, split.majority_accuracy())
    learner = Run(ds.name, seed, method + LEARNER, budget, 0, split.majority_accuracy())
    reasons: Counter = Counter()
    retrain_s: list[float] = []
    rescore_s: list[float] = []
    decisions: Counter = Counter()
    rejected_by: Counter = Counter()
    promotions: list[dict] = []
    held_back: list[dict] = []
    # Two independent streams: the items' `rand` column (drawn from the global generator at
    # import), which the random lanes walk, and the queue's own draws (the audit coin, the
    # random lanes' starting point). One seed for both would make the k-th cold-start draw
    # land exactly on the k-th imported item.
    random.seed(f"import-{seed}")
    rng = random.Random(f"queue-{seed}")
    # Item ids decide the held-out split: import the pool in an order of its own per seed.
    order = np.random.default_rng(seed).permutation(len(split.pool))
    with _quiet_enqueues(), bench_app(backend):
        project = make_project(
            slug=ds.name,
            kind=ds.kind,
            labels=list(ds.labels),
            features=list(ds.features),
            template=ds.template,
            settings={},  # the defaults, untuned
            members=[],
        )
        settings.apply(project, {**dict(extra), **config_settings(config)})
        db.session.commit()
        rows = [
            {"external_id": f"{ds.name}-{split.pool[k]}", "data": ds.datas[split.pool[k]]}
            for k in order
        ]
        ids = [item_id for batch in pool.import_items(project, rows) for item_id in batch]
        training.request_rescore(project)  # as the API's and the CLI's imports do
        db.session.commit()
        truth = dict(zip(ids, y_pool[order].tolist(), strict=True))
        champion_id = None

        def drain() -> None:
            nonlocal champion_id
            while True:
                db.session.commit()
                run_id = db.session.scalar(
                    select(RetrainRun.id)
                    .where(RetrainRun.project_id == project.id, RetrainRun.status == "queued")
                    .order_by(RetrainRun.id)
                    .limit(1)
                )
                if run_id is None:
                    break
                db.session.commit()
                t0 = time.perf_counter()
                status = training.run_retrain(run_id)
                retrain_s.append(time.perf_counter() - t0)
                row = db.session.get(RetrainRun, run_id)
                if row.status == "queued":
                    raise RuntimeError(f"retrain run {run_id} stayed queued ({status})")
                decisions[row.decision or status] += 1
                accuracy: dict[int, float] = {}
                if row.model_version_id is not None:
                    # The learner: the newest version, whatever the gate decided.
                    candidate = db.session.get(ModelVersion, row.model_version_id)
                    accuracy[candidate.id] = split.accuracy(training.load_model(candidate))
                    learner.steps.append((run.labels_asked, accuracy[candidate.id]))
                if row.decision == "rejected":
                    failed = [r["rule"] for r in row.reasons or [] if not r["passed"]]
                    rejected_by.update(failed)
                    # What the gate held back: the candidate against what serves (the
                    # champion, or the majority class before the first one).
                    serving_acc = run.steps[-1][1] if run.steps else run.floor
                    held_back.append(
                        {
                            "labels": run.labels_asked,
                            "rules": failed,
                            "change": accuracy[row.model_version_id] - serving_acc,
                        }
                    )
                champion = training.champion_version(project.id)
                if champion is not None and champion.id != champion_id:
                    champion_id = champion.id
                    acc = accuracy.get(champion.id)
                    if acc is None:
                        acc = split.accuracy(training.load_model(champion))
                    previous = run.steps[-1][1] if run.steps else None
                    run.steps.append((run.labels_asked, acc))
                    promotions.append(
                        {
                            "labels": run.labels_asked,
                            "version": champion.version,
                            "test_accuracy": acc,
                            "change": None if previous is None else acc - previous,
                            "train_size": champion.train_size,
                        }
                    )
                db.session.commit()
            while True:
                task_id = db.session.scalar(
                    select(Task.id)
                    .where(Task.project_id == project.id, Task.status == "queued")
                    .order_by(Task.id)
                    .limit(1)
                )
                db.session.commit()
                if task_id is None:
                    break
                t0 = time.perf_counter()
                training.run_rescore(task_id)
                rescore_s.append(time.perf_counter() - t0)
                if db.session.get(Task, task_id).status == "queued":
                    raise RuntimeError(f"rescore task {task_id} stayed queued")

        drain()  # the import's rescore: the cold start's picks
        while run.labels_asked < budget:
            served = pool.next_item(project, ORACLE, rng=rng)
            if served is None:
                break  # the pool is exhausted
            item, reason = served
            reasons[reason] += 1
            pool.annotate(project, item, ORACLE, truth[item.id])
            run.labels_asked += 1
            drain()
        recorded = db.session.scalar(
            select(func.count(Annotation.id)).where(
                Annotation.project_id == project.id, Annotation.annotator == ORACLE
            )
        )
    run.seconds = learner.seconds = time.perf_counter() - started
    learner.labels_asked = run.labels_asked
    run.extra = learner.extra = {
        "annotations": recorded,
        "reasons": dict(reasons),
        # The held-out set is the audits (labels.split.heldout_by_lane).
        "audits": reasons.get("audit", 0),
        "retrain_seconds": retrain_s,
        "rescore_seconds": rescore_s,
        "decisions": dict(decisions),
        "rejected_by": dict(rejected_by),
        "promotions": promotions,
        "held_back": held_back,
    }
    return run, learner


# ---------------------------------------------------------------------------------------------
# Baselines


def seed_rows(y_pool: np.ndarray, seed: int) -> np.ndarray:
    """The first labels of both baselines: SEED_LABELS random pool rows, stratified by label."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y_pool))
    picked, _rest = train_test_split(
        rows, train_size=SEED_LABELS, stratify=y_pool, random_state=seed
    )
    return np.asarray(picked, dtype=np.intp)


def run_baseline(split: Split, budget: int, strategy: str) -> Run:
    """The ideal loop: refit every 10 labels, the next 10 chosen at random or by margin."""
    from labeling.training import fit_model

    ds, y_pool = split.ds, split.y_pool
    started = time.perf_counter()
    run = Run(ds.name, split.seed, strategy, budget, 0, split.majority_accuracy())
    rng = np.random.default_rng(split.seed)
    labeled = list(seed_rows(y_pool, split.seed)[: min(SEED_LABELS, budget)])
    is_labeled = np.zeros(len(y_pool), dtype=bool)
    is_labeled[labeled] = True
    while True:
        model = fit_model(ds.template, _take(split.X_pool, labeled), list(y_pool[labeled]))
        run.steps.append((len(labeled), split.accuracy(model)))
        room = min(BASELINE_STEP, budget - len(labeled), int((~is_labeled).sum()))
        if room <= 0:
            break
        unlabeled = np.nonzero(~is_labeled)[0]
        if strategy == "random":
            picked = rng.choice(unlabeled, size=room, replace=False)
        else:
            picked = split.query(model, unlabeled, room, strategy)
        labeled.extend(int(i) for i in picked)
        is_labeled[picked] = True
    run.labels_asked = len(labeled)
    run.seconds = time.perf_counter() - started
    return run


# ---------------------------------------------------------------------------------------------
# Running and reporting

_sets: dict[str, DataSet] = {}
_splits: dict[tuple[str, int], Split] = {}


def _split(set_name: str, seed: int) -> Split:
    """The (set, seed) split, made once per process."""
    if set_name not in _sets:
        _sets[set_name] = load_set(set_name)
    key = (set_name, seed)
    if key not in _splits:
        _splits.clear()  # cells come grouped by (set, seed): keep one split's matrices only
        _splits[key] = make_split(_sets[set_name], seed)
    return _splits[key]


def _cell(args: tuple) -> Run | list[Run] | float:
    """Run one (set, seed, method); `full` returns the full-pool accuracy, a product config its
    champion's and its learner's runs."""
    set_name, seed, method, budget, backend, extra = args
    started = time.perf_counter()
    split = _split(set_name, seed)
    if method == "full":
        result: Run | list[Run] | float = full_pool_accuracy(split)
    elif method.startswith("product "):
        config = method.removeprefix("product ")
        result = list(run_product(split, budget, backend, config, extra))
    else:
        result = run_baseline(split, budget, method)
    took = time.perf_counter() - started
    print(f"# {set_name} seed {seed} {method}: {took:.0f} s", file=sys.stderr, flush=True)
    return result


def _one_thread() -> None:
    """Two processes on two cores: no BLAS or OpenMP pool of its own in each."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def run_all(
    sets: Sequence[str],
    seeds: int,
    budget: int,
    backend: str = "sqlite",
    jobs: int = 1,
    configs: Sequence[str] = (DEFAULT_CONFIG,),
    extra: Sequence[tuple[str, str]] = (),
) -> list[Run]:
    """Every method (each product config, the baselines) on every set for seeds 0..seeds-1;
    cells run in `jobs` processes. `extra` are settings for every product config."""
    methods = ("full", *(f"product {c}" for c in configs), *BASELINES)
    extra = tuple(extra)
    cells = [
        (s, seed, m, budget, backend, extra) for s in sets for seed in range(seeds) for m in methods
    ]
    if jobs <= 1:
        results = [_cell(c) for c in cells]
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread) as ex:
            results = list(ex.map(_cell, cells))
    full = {c[:2]: r for c, r in zip(cells, results, strict=True) if c[2] == "full"}
    runs: list[Run] = []
    for r in results:
        if isinstance(r, Run):
            runs.append(r)
        elif isinstance(r, list):
            runs.extend(r)
    for r in runs:
        r.full_pool = full[(r.set_name, r.seed)]
    return runs


def _spread(values: list[float], fmt: str, missing: int | None = None) -> str:
    """Median (min–max); `missing` replaces None (not reached) and prints as >missing-1."""

    def show(v: float) -> str:
        if missing is not None and v >= missing:
            return f">{missing - 1}"
        return format(v, fmt)

    vals = [missing if v is None else v for v in values]
    med = statistics.median(vals)
    if len(vals) == 1:
        return show(med)
    return f"{show(med)} ({show(min(vals))}–{show(max(vals))})"


def _ratio(product: list, baseline: list, budget: int) -> str:
    """Ratio of the medians of labels-to-target; a bound when one side never got there."""
    miss = budget + 1
    p = statistics.median([miss if v is None else v for v in product])
    b = statistics.median([miss if v is None else v for v in baseline])
    if p >= miss and b >= miss:
        return "n/a (neither reached it)"
    if p >= miss:
        return f">{budget / b:.2f}x (product never reached it)"
    if b >= miss:
        return f"<{p / budget:.2f}x (baseline never reached it)"
    return f"{p / b:.2f}x"


def report(runs: list[Run]) -> str:
    """The tables, per set: one row per method (medians over seeds, min–max); each product
    config has its champion's row and its learner's."""
    out: list[str] = []
    budget = runs[0].budget
    checkpoints = [c for c in CHECKPOINTS if c <= budget] or [budget]
    methods = list(dict.fromkeys(r.method for r in runs if r.method.startswith("product ")))
    methods += [m for m in BASELINES if any(r.method == m for r in runs)]
    for set_name in dict.fromkeys(r.set_name for r in runs):
        mine = [r for r in runs if r.set_name == set_name]
        seeds = sorted({r.seed for r in mine})
        full = {r.seed: r.full_pool for r in mine}
        out.append("")
        out.append(
            f"## {set_name}: {len(seeds)} seed(s), budget {budget} labels; full-pool accuracy "
            f"{_spread(list(full.values()), '.3f')}"
        )
        out.append("")
        headers = ["method", "labels to 95%", "labels to 99%"]
        headers += [f"acc @{c}" for c in checkpoints]
        headers += ["AULC 10..budget", "worse by >1pt", "labels asked", "audits"]
        rows = []
        by_method: dict[str, list[Run]] = {}
        for method in methods:
            rs = sorted((r for r in mine if r.method == method), key=lambda r: r.seed)
            by_method[method] = rs
            if not rs:
                continue
            product = method.startswith("product ")
            row = [
                method if product else ROW_NAMES[method],
                _spread([r.labels_to(0.95) for r in rs], ".0f", budget + 1),
                _spread([r.labels_to(0.99) for r in rs], ".0f", budget + 1),
            ]
            row += [_spread([float(r.curve()[c]) for r in rs], ".3f") for c in checkpoints]
            row += [
                _spread([r.aulc() for r in rs], ".3f"),
                _spread([r.worse_promotions() for r in rs], ".0f"),
                _spread([r.labels_asked for r in rs], ".0f"),
                _spread([r.extra["audits"] for r in rs], ".0f") if product else "-",
            ]
            rows.append(row)
        out.append(table(headers, rows))
        out.append("")
        for method in methods:
            if not method.startswith("product ") or not by_method[method]:
                continue
            mine_99 = [r.labels_to(0.99) for r in by_method[method]]
            ratios = [
                f"/ {ROW_NAMES[b]} {_ratio(mine_99, [r.labels_to(0.99) for r in rs], budget)}"
                for b in BASELINES
                if (rs := by_method.get(b))
            ]
            out.append(f"labels to 99%, {method} {', '.join(ratios)}")
        for method in methods:
            if method.startswith("product ") and not method.endswith(LEARNER):
                if by_method[method]:
                    out.append("")
                    out.append(_product_details(method, by_method[method]))
    return "\n".join(out).lstrip("\n")


def _product_details(method: str, runs: list[Run]) -> str:
    """What the product's loop did: lanes, audits, retrains, gate verdicts, timings."""
    lines = [f"{method} loop, per seed:"]
    headers = [
        "seed",
        "cold-start/uncertain/audit",
        "first champion @",
        "retrains",
        "promoted",
        "rejected (rule: n)",
        "worst promotion",
        "rejected yet better by >1pt",
        "retrain s (median/max)",
        "rescore s (median/max)",
        "wall s",
    ]
    rows = []
    for r in runs:
        x = r.extra
        reasons = x["reasons"]
        changes = r.changes()
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted(x["rejected_by"].items())) or "-"
        rt, rs = x["retrain_seconds"], x["rescore_seconds"]
        rows.append(
            [
                r.seed,
                "/".join(str(reasons.get(k, 0)) for k in ("cold-start", "uncertain", "audit")),
                r.steps[0][0] if r.steps else "never",
                len(rt),
                x["decisions"].get("promoted", 0),
                rejected,
                f"{min(changes):+.3f}" if changes else "-",
                sum(1 for h in x["held_back"] if h["change"] > WORSE_BY),
                f"{statistics.median(rt):.2f}/{max(rt):.2f}" if rt else "-",
                f"{statistics.median(rs):.2f}/{max(rs):.2f}" if rs else "-",
                f"{r.seconds:.0f}",
            ]
        )
    lines.append(table(headers, rows))
    curves = []
    for r in runs:
        steps = (
            " ".join(
                f"{p['labels']}({p['train_size']}):{p['test_accuracy']:.3f}"
                for p in r.extra["promotions"]
            )
            or "none"
        )
        curves.append(f"  seed {r.seed} champions, labels(trained on):test accuracy: {steps}")
    return "\n".join(lines + curves)


def parse_configs(raw: str) -> list[str]:
    """`default,margin,margin+diversity,…`: each `default`, a strategy, or one `+diversity`."""
    from webapp.models import STRATEGIES

    configs = [c.strip() for c in raw.split(",") if c.strip()]
    for config in configs:
        if config != DEFAULT_CONFIG and config.removesuffix(DIVERSITY) not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {config!r}: expected {DEFAULT_CONFIG}, or one of "
                f"{', '.join(STRATEGIES)}, each optionally with {DIVERSITY}"
            )
    return list(dict.fromkeys(configs))


def parse_settings(raw: str) -> list[tuple[str, str]]:
    """`KEY=VALUE[,KEY=VALUE]`, each checked as `corrigo project settings` checks it."""
    from webapp import settings
    from webapp.errors import ValidationError

    pairs = []
    for change in (c.strip() for c in raw.split(",") if c.strip()):
        key, sep, value = change.partition("=")
        if not sep:
            raise ValueError(f"{change!r} is not KEY=VALUE")
        try:
            settings.parse(key.strip(), value.strip())
        except ValidationError as exc:
            raise ValueError(f"{key.strip()}: {exc.errors[key.strip()]}") from None
        pairs.append((key.strip(), value.strip()))
    return pairs


def main(argv: Sequence[str] | None = None) -> list[Run]:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sets", default=",".join(SETS), help="digits,bbc (default both)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--budget", type=int, default=500, help="labels per run (default 500)")
    parser.add_argument("--db", default="sqlite", help="sqlite or postgresql (default sqlite)")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)"
    )
    parser.add_argument(
        "--strategies",
        default=DEFAULT_CONFIG,
        help=(
            "product rows, comma-separated: default (the project defaults), a query strategy "
            "(batch diversity off) or strategy+diversity (on); default: default"
        ),
    )
    parser.add_argument(
        "--settings",
        default="",
        help="KEY=VALUE[,KEY=VALUE] project settings for every product row",
    )
    args = parser.parse_args(argv)
    try:
        configs = parse_configs(args.strategies)
        extra = parse_settings(args.settings)
    except ValueError as exc:
        parser.error(str(exc))
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in sets:
        if s not in SETS:
            parser.error(f"unknown set {s!r}; expected {', '.join(SETS)}")
    if args.db not in BACKENDS:
        parser.error(f"unknown backend {args.db!r}; expected sqlite or postgresql")
    if args.budget < SEED_LABELS:
        parser.error(f"--budget must be at least {SEED_LABELS}")
    header("Label efficiency: Corrigo's loop with an oracle expert vs ideal baselines")
    print(
        f"# sets {','.join(sets)}, seeds {args.seeds}, budget {args.budget}, db {args.db}, "
        f"jobs {args.jobs}, strategies {','.join(configs)}, "
        f"settings {','.join(f'{k}={v}' for k, v in extra) or 'defaults'}"
    )
    sys.stdout.flush()
    started = time.perf_counter()
    runs = run_all(sets, args.seeds, args.budget, args.db, args.jobs, configs, extra)
    print(report(runs))
    print(f"\n# wall time {time.perf_counter() - started:.0f} s")
    return runs


if __name__ == "__main__":
    main()
