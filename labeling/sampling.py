"""Active-learning informativeness scores, pool queries, cold starts, batches and committees.

This is the only module in Corrigo that imports modAL. Only modAL's stateless query-strategy
functions are used, on already-fitted estimators: its ``ActiveLearner.teach`` and ``Committee``
are broken with scikit-learn 1.8+. Where a modAL function wants a learner or a committee
(ranked batch sampling, the disagreement measures), it gets a small stand-in object with
exactly the attributes that function reads.

Every function that scores a pool returns one float per row, higher meaning "label this
first", because the product stores one score per item and serves the uncertain lane in score
order. Each documents its scale; scores of different functions are not comparable.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from modAL.batch import ranked_batch
from modAL.disagreement import KL_max_disagreement, vote_entropy
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler, normalize

from .training import fit_model, predict_proba_for, select_params

STRATEGIES = ("margin", "uncertainty", "entropy")
DEFAULT_STRATEGY = "margin"
# Query-by-committee strategies: scored by :func:`committee_scores` on the members of
# :func:`fit_committee`, not by :func:`informativeness` (one model has no committee).
COMMITTEE_STRATEGIES = ("qbc_vote_entropy", "qbc_kl")
COMMITTEE_METHODS = {"qbc_vote_entropy": "vote_entropy", "qbc_kl": "kl_max_disagreement"}
ALL_STRATEGIES = STRATEGIES + COMMITTEE_STRATEGIES

# modAL's margin is small when the top two classes are close, i.e. when the point is worth
# labeling; it is negated so that for every strategy a higher score means "label this first".
_SCORERS = {
    "margin": lambda clf, X: -classifier_margin(clf, X),
    "uncertainty": classifier_uncertainty,
    "entropy": classifier_entropy,
}
_QUERIES = {
    "margin": margin_sampling,
    "uncertainty": uncertainty_sampling,
    "entropy": entropy_sampling,
}


def _check_strategy(strategy: str) -> str:
    if strategy in COMMITTEE_STRATEGIES:
        raise ValueError(
            f"{strategy!r} scores with a committee: use fit_committee and committee_scores; "
            f"one model scores with {', '.join(STRATEGIES)}"
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    return strategy


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


class _KnownProba:
    """Stand-in classifier whose ``predict_proba`` returns a precomputed matrix.

    Lets :func:`informativeness_from_proba` reuse modAL's formulas verbatim instead of keeping
    a second copy of them in sync.
    """

    def __init__(self, proba: np.ndarray):
        self.proba = proba

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.proba


def informativeness(classifier: Any, X: Any, strategy: str = DEFAULT_STRATEGY) -> np.ndarray:
    """Score how worth labeling each row is under a fitted classifier.

    Args:
        classifier: Fitted estimator exposing ``predict_proba``.
        X: Rows in whatever form the classifier accepts (array, sparse matrix, list of str).
        strategy: One of :data:`STRATEGIES`; higher scores are always more informative
            (margin is reported negated, so it lies in [-1, 0]).

    Returns:
        Float array of shape (n_rows,).
    """
    _check_strategy(strategy)
    return np.asarray(_SCORERS[strategy](classifier, X), dtype=np.float64)


def informativeness_from_proba(proba: np.ndarray, strategy: str = DEFAULT_STRATEGY) -> np.ndarray:
    """Score informativeness from an already computed probability matrix.

    Args:
        proba: Array of shape (n_rows, n_classes) of class probabilities.
        strategy: One of :data:`STRATEGIES`.

    Returns:
        Float array of shape (n_rows,), identical to :func:`informativeness` on the same model.
    """
    _check_strategy(strategy)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ValueError(f"proba must be 2-D (n_rows, n_classes), got shape {proba.shape}")
    return informativeness(_KnownProba(proba), proba, strategy)


def query(
    classifier: Any, X: Any, n_instances: int = 1, strategy: str = DEFAULT_STRATEGY
) -> np.ndarray:
    """Pick the rows of a pool most worth labeling next.

    Args:
        classifier: Fitted estimator exposing ``predict_proba``.
        X: Pool of rows in whatever form the classifier accepts.
        n_instances: How many rows to pick; capped at the pool size.
        strategy: One of :data:`STRATEGIES`.

    Returns:
        Integer indices into ``X``, most informative first.
    """
    _check_strategy(strategy)
    n = min(int(n_instances), _n_rows(X))
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    # modAL 0.4.2 returns (indices, utility values); older releases returned indices only.
    result = _QUERIES[strategy](classifier, X, n_instances=n)
    if isinstance(result, tuple):
        indices, values = result
        values = np.asarray(values, dtype=np.float64)
        if strategy == "margin":
            values = -values
    else:
        indices = result
        values = informativeness(classifier, X, strategy)[np.asarray(indices)]
    indices = np.asarray(indices, dtype=np.intp).reshape(-1)
    # argpartition leaves the chosen rows unordered; callers want the best one first.
    order = np.argsort(-values.reshape(-1), kind="stable")
    return indices[order]


# ---------------------------------------------------------------------------------------------
# Rows and feature spaces


def _take(X: Any, rows: np.ndarray) -> Any:
    """The given rows of a list of texts, an array or a sparse matrix, in that order."""
    if isinstance(X, list | tuple):
        return [X[i] for i in rows]
    return X[rows]


def _is_text(X: Any) -> bool:
    if isinstance(X, list | tuple):
        return len(X) == 0 or isinstance(X[0], str)
    return isinstance(X, np.ndarray) and X.dtype.kind in "OUS"


# The cold-start embedding reads the first this many characters of a text: tokenising is most
# of its cost, and a news article's first 1,000 characters cluster as well as all of it (BBC
# News, 25 clusters: NMI with the labels 0.58 either way, in a fifth of the time).
COLD_START_CHARS = 1000
COLD_START_DIMS = 50
# Up to this many rows the cold start runs full k-means; beyond it, mini-batch k-means.
FULL_KMEANS_ROWS = 5000


def _text_space(texts: Sequence[str], seed: int, dims: int = COLD_START_DIMS) -> np.ndarray:
    """Dense L2-normalised rows of a TF-IDF + truncated-SVD (LSA) embedding of texts.

    Unigrams of each text's first :data:`COLD_START_CHARS` characters, hashed into 2^18
    buckets, no vocabulary. Euclidean distance between the rows is a monotone function of their
    cosine similarity.
    """
    hashed = HashingVectorizer(
        n_features=2**18, alternate_sign=False, norm=None, dtype=np.float32
    ).transform([str(t)[:COLD_START_CHARS] for t in texts])
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(hashed)
    used = np.flatnonzero(tfidf.getnnz(axis=0))
    tfidf = tfidf[:, used]
    k = min(dims, tfidf.shape[0] - 1, tfidf.shape[1] - 1)
    if k < 2:
        Z = tfidf.toarray()
    else:
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=2, random_state=seed)
        Z = svd.fit_transform(tfidf)
    if Z.shape[1] == 0:
        return np.zeros((Z.shape[0], 1))  # no text has a word: every row alike
    return normalize(np.asarray(Z, dtype=np.float64))


def _tabular_space(X: Any) -> np.ndarray:
    """Median-imputed, standardised features; a column missing everywhere reads as 0."""
    X = np.asarray(X, dtype=np.float64)
    X = np.where(np.isfinite(X), X, np.nan)
    steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    return steps.fit_transform(X)


# ---------------------------------------------------------------------------------------------
# Cold start: a diverse first sample before any model exists


def _cold_start(X: Any, n: int, seed: int, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(ordered picks, each row's distance to its cluster centre)."""
    n_rows = _n_rows(X)
    if kind is None:
        kind = "text" if _is_text(X) else "tabular"
    if kind not in ("text", "tabular"):
        raise ValueError(f"unknown kind {kind!r}; expected text or tabular")
    n = min(int(n), n_rows)
    if n <= 0:
        return np.empty(0, dtype=np.intp), np.zeros(n_rows)
    Z = _text_space(X, seed) if kind == "text" else _tabular_space(X)
    if n_rows <= FULL_KMEANS_ROWS:
        # Lloyd's k-means relocates empty clusters: on few rows every centre gets a member.
        km = KMeans(n_clusters=n, random_state=seed, n_init=3)
    else:
        km = MiniBatchKMeans(n_clusters=n, random_state=seed, n_init=3, batch_size=max(1024, 4 * n))
    with warnings.catch_warnings():
        # Fewer distinct rows than clusters: some centres coincide; the picks stay distinct.
        warnings.simplefilter("ignore", ConvergenceWarning)
        cluster = km.fit_predict(Z)
    distance = np.linalg.norm(Z - km.cluster_centers_[cluster], axis=1)
    size = np.bincount(cluster, minlength=n)
    # Within each cluster the row nearest its centre ...
    by_cluster = np.lexsort((np.arange(n_rows), distance, cluster))
    first = by_cluster[np.r_[True, np.diff(cluster[by_cluster]) != 0]]
    # ... the largest cluster's first (ties: the more central, then the earlier row) ...
    first = first[np.lexsort((first, distance[first], -size[cluster[first]]))]
    # ... then the one adding most coverage: a farthest-first walk weighted by cluster size.
    order = _spread_order(Z[first], size[cluster[first]].astype(np.float64))
    return first[order].astype(np.intp), distance


def _spread_order(P: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Order points greedily: the first, then each time the point of largest ``weight x
    distance to the nearest point already ordered`` (ties keep the given order).

    With clusters as the points and their sizes as weights, every prefix spreads over the
    pool: ordering by size alone served a big cluster's sub-clusters one after another (eight
    well-separated blobs of 400 to 5 rows, 25 picks: two blobs in the first eight), while
    ordering by distance alone favoured the outskirts (digits: 7 of 10 classes in the first ten
    picks, against 9 to 10 with the weight).
    """
    m = len(P)
    order = np.empty(m, dtype=np.intp)
    if m == 0:
        return order
    taken = np.zeros(m, dtype=bool)
    order[0], taken[0] = 0, True
    nearest = np.linalg.norm(P - P[0], axis=1)
    for k in range(1, m):
        gain = np.where(taken, -np.inf, weight * nearest)
        pick = int(np.argmax(gain))
        order[k], taken[pick] = pick, True
        nearest = np.minimum(nearest, np.linalg.norm(P - P[pick], axis=1))
    return order


def cold_start_order(X: Any, n: int, seed: int = 0, kind: str | None = None) -> np.ndarray:
    """Pick a diverse, representative first sample to label before any model exists.

    The rows are clustered into ``n`` groups (k-means; mini-batch k-means beyond
    :data:`FULL_KMEANS_ROWS` rows) and each group contributes its row nearest the group's
    centre. The largest group's comes first; each next is the one farthest from those before
    it, the distance weighted by its group's size, so that every prefix of the picks spreads
    over the pool. Text is embedded by TF-IDF over hashed unigrams (of each text's first
    :data:`COLD_START_CHARS` characters) reduced to 50 dimensions by truncated SVD; tabular
    features are median-imputed and standardised.

    Args:
        X: Model input as returned by ``labeling.training.to_matrix``: a list of texts or a 2-D
            float array (NaN for missing).
        n: How many rows to pick (the number of clusters); capped at the number of rows.
        seed: Seeds the embedding and the clustering; the same seed gives the same picks.
        kind: ``"text"`` or ``"tabular"``; inferred from ``X`` when None.

    Returns:
        Distinct integer indices into ``X``, at most ``n`` (fewer when rows coincide so that
        some clusters are empty), in the order to label them.
    """
    return _cold_start(X, n, seed, kind)[0]


def cold_start_scores(X: Any, n: int, seed: int = 0, kind: str | None = None) -> np.ndarray:
    """Per-row scores that serve :func:`cold_start_order`'s picks first.

    Scale: the pick at position ``r`` of ``m`` picks scores ``1 + (m - r) / m``, in (1, 2];
    every other row scores ``1 / (1 + d)``, in (0, 1], where ``d`` is its distance to its
    cluster's centre in the embedding, so after the picks come the rows most typical of their
    cluster. Every pick outranks every other row.

    Args:
        X: As for :func:`cold_start_order`.
        n: As for :func:`cold_start_order`.
        seed: As for :func:`cold_start_order`.
        kind: As for :func:`cold_start_order`.

    Returns:
        Float array of shape (n_rows,).
    """
    picks, distance = _cold_start(X, n, seed, kind)
    scores = 1.0 / (1.0 + distance)
    m = len(picks)
    scores[picks] = 1.0 + (m - np.arange(m)) / max(m, 1)
    return scores


# ---------------------------------------------------------------------------------------------
# Batch diversity: modAL's ranked batch over the most informative candidates

BATCH_TIERS = {"batch": 4.0, "candidates": 2.0, "rest": 0.0}


class _Labeled:
    """What ``modAL.batch.ranked_batch`` reads of its learner: the labeled rows, untransformed."""

    on_transformed = False

    def __init__(self, X_training: Any):
        self.X_training = X_training


def _split_model(classifier: Any) -> tuple[Any, Any]:
    """(feature steps or None, final estimator): a pipeline's last step sees its features."""
    if isinstance(classifier, Pipeline) and len(classifier.steps) > 1:
        return classifier[:-1], classifier[-1]
    return None, classifier


def _features(pre: Any, X: Any) -> Any:
    """Rows in the space the final estimator sees."""
    return X if pre is None else pre.transform(X)


def _distance_space(Z: Any) -> Any:
    """Features as float64 for distances (non-finite values read as 0)."""
    if sp.issparse(Z):
        return sp.csr_matrix(Z, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    return np.where(np.isfinite(Z), Z, 0.0)


def _vstack(blocks: list[Any]) -> Any:
    if any(sp.issparse(b) for b in blocks):
        return sp.vstack(blocks, format="csr")
    return np.concatenate(blocks)


def _top_candidates(
    pre: Any, last: Any, X_pool: Any, strategy: str, k: int, chunk: int
) -> tuple[np.ndarray, np.ndarray, Any]:
    """(informativeness of every row, the k most informative rows, their features).

    The pool goes through the feature steps once, ``chunk`` rows at a time; only the best
    ``k`` rows' features are kept, so memory stays at ``k + chunk`` rows of features.
    Ties keep pool order.
    """
    n_pool = _n_rows(X_pool)
    info = np.empty(n_pool, dtype=np.float64)
    best = np.empty(0, dtype=np.intp)
    best_Z = None
    for start in range(0, n_pool, chunk):
        rows = np.arange(start, min(start + chunk, n_pool))
        Z = _features(pre, _take(X_pool, rows))
        info[rows] = informativeness(last, Z, strategy)
        merged = np.concatenate([best, rows])
        Z = _distance_space(Z)
        merged_Z = Z if best_Z is None else _vstack([best_Z, Z])
        keep = np.argsort(-info[merged], kind="stable")[:k]
        best, best_Z = merged[keep], merged_Z[keep]
    return info, best, best_Z


def _unit(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; constant values map to 1."""
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return np.ones_like(values)
    return (values - lo) / (hi - lo)


def _ranked_batch(
    Z: Any, uncertainty: np.ndarray, pre: Any, X_labeled: Any, batch_size: int
) -> np.ndarray:
    """modAL's ranked batch over candidate features ``Z`` (float64, distance-ready).

    The labeled rows enter as a reference set reduced to each candidate's nearest labeled row,
    which leaves every candidate's distance to the labeled set unchanged.
    """
    b = min(int(batch_size), _n_rows(Z))
    if b <= 0:
        return np.empty(0, dtype=np.intp)
    if _n_rows(X_labeled) > 0:
        Z_labeled = _distance_space(_features(pre, X_labeled))
        nearest, _ = pairwise_distances_argmin_min(Z, Z_labeled)
        reference = Z_labeled[np.unique(nearest)]
    else:
        reference = None  # modAL starts from the candidate nearest all the others
    ranked, _ = ranked_batch(
        _Labeled(reference),
        unlabeled=Z,
        uncertainty_scores=uncertainty,
        n_instances=b,
        metric="euclidean",
        n_jobs=None,
    )
    return np.asarray(ranked, dtype=np.intp)


def diverse_batch(
    classifier: Any,
    X_candidates: Any,
    scores: np.ndarray,
    X_labeled: Any,
    batch_size: int = 25,
) -> np.ndarray:
    """Rank a batch of candidates by informativeness and diversity together.

    The step :func:`batch_scores` takes after choosing its candidates, for candidates chosen
    and scored elsewhere: Corrigo's rescore job reads the head of the uncertain lane (the rows
    of highest stored score, under any strategy, a committee's included) and re-ranks only
    those. modAL's ranked batch sampling picks ``batch_size`` of them one at a time, each
    maximising ``alpha * (1 - similarity to the labeled and already picked rows) +
    (1 - alpha) * score`` (scores min-max scaled to [0, 1]), with distances in the
    classifier's own feature space (its pipeline minus the last step). Cost: the candidates'
    features, their distances to the labeled rows (candidates x labeled) and ``batch_size``
    rounds over the candidates.

    Args:
        classifier: Fitted estimator (a Corrigo template pipeline); only its feature steps are
            used.
        X_candidates: Candidate rows in whatever form the classifier accepts.
        scores: Informativeness of each candidate, higher meaning "label this first", on any
            scale.
        X_labeled: Labeled rows in the same form (may be empty).
        batch_size: How many rows the batch holds; capped at the candidates.

    Returns:
        Distinct integer indices into ``X_candidates``, the batch in the order to label it.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != _n_rows(X_candidates):
        raise ValueError(f"got {_n_rows(X_candidates)} candidates but {len(scores)} scores")
    if len(scores) == 0 or int(batch_size) <= 0:
        return np.empty(0, dtype=np.intp)
    pre, _last = _split_model(classifier)
    Z = _distance_space(_features(pre, X_candidates))
    return _ranked_batch(Z, _unit(scores), pre, X_labeled, batch_size)


def batch_scores(
    classifier: Any,
    X_pool: Any,
    X_labeled: Any,
    strategy: str = DEFAULT_STRATEGY,
    batch_size: int = 25,
    top_k: int = 2000,
    chunk: int = 2000,
) -> np.ndarray:
    """Score a pool so that the next batch is both informative and diverse.

    The ``top_k`` most informative rows under ``strategy`` are the candidates. modAL's ranked
    batch sampling (Cardoso et al., 2017) then picks ``batch_size`` of them one at a time,
    each maximising ``alpha * (1 - similarity to the labeled and already picked rows) +
    (1 - alpha) * informativeness`` with ``alpha = |candidates| / (|candidates| + |reference|)``;
    distances are Euclidean in the classifier's own feature space (its pipeline minus the last
    step: TF-IDF rows for text, imputed and scaled features for tabular). A batch of plain
    margin sampling is often many near-copies of one uncertain row; this one is not.

    The labeled rows enter as a reference set reduced to each candidate's nearest labeled row,
    which leaves every candidate's distance to the labeled set unchanged. Cost: the
    informativeness of the pool (linear), the candidates' distances to the labeled rows
    (``top_k`` x labeled), and ``batch_size`` rounds over the candidates; never pool x pool.
    The pool is featurised once, ``chunk`` rows at a time, keeping only the candidates'
    features.

    Scale (tiers that never overlap, higher is served first):

    * the batch: the row ranked ``r`` (0 first) of ``b`` scores ``4 + (b - r) / b``, in (4, 5];
    * the other candidates: ``2 +`` their informativeness min-max scaled to [0, 1];
    * the rest of the pool: their informativeness min-max scaled to [0, 1].

    Args:
        classifier: Fitted estimator exposing ``predict_proba`` (a Corrigo template pipeline).
        X_pool: Unlabeled rows in whatever form the classifier accepts.
        X_labeled: Labeled rows in the same form (may be empty).
        strategy: One of :data:`STRATEGIES`; ranks the candidates.
        batch_size: How many rows the diverse batch holds; capped at the candidates.
        top_k: How many of the most informative rows are candidates.
        chunk: Rows featurised at a time.

    Returns:
        Float array of shape (n_pool,).
    """
    _check_strategy(strategy)
    n_pool = _n_rows(X_pool)
    if n_pool == 0:
        return np.empty(0, dtype=np.float64)
    pre, last = _split_model(classifier)
    k = max(1, min(int(top_k), n_pool))
    info, candidates, Z = _top_candidates(pre, last, X_pool, strategy, k, max(1, int(chunk)))
    scores = BATCH_TIERS["rest"] + _unit(info)
    scores[candidates] = BATCH_TIERS["candidates"] + _unit(info[candidates])
    if k < n_pool:
        rest = np.ones(n_pool, dtype=bool)
        rest[candidates] = False
        scores[rest] = BATCH_TIERS["rest"] + _unit(info[rest])
    ranked = _ranked_batch(Z, _unit(info[candidates]), pre, X_labeled, batch_size)
    b = len(ranked)
    scores[candidates[ranked]] = BATCH_TIERS["batch"] + (b - np.arange(b)) / max(b, 1)
    return scores


# ---------------------------------------------------------------------------------------------
# Query by committee


def fit_committee(
    template: str,
    X: Any,
    y: Sequence[str],
    n_members: int = 5,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    max_rows: int | None = None,
) -> list[Pipeline]:
    """Fit a committee of one template on bootstrap resamples of the labeled rows.

    Each member is fitted with ``labeling.training.fit_model`` on a stratified bootstrap (rows
    drawn with replacement within each label, as many as the label has), so every member sees
    every label, at least two. Hyper-parameters are chosen once on all rows
    (``labeling.training.select_params``) unless ``params`` gives them (a champion's
    ``chosen_params_``): cross-validating on a bootstrap would rank C on copies of its own rows.

    With ``max_rows``, a member draws about that many rows in all (each label its share, at
    least one row), so the committee's cost stops growing with the labeled set: on BBC News
    with C=1000, five members took 2.7 s on 500 rows and 11 s on 1,000.

    Args:
        template: A key of ``labeling.training.TEMPLATES``.
        X: Model input as returned by ``labeling.training.to_matrix``.
        y: Label string per row; at least two distinct labels.
        n_members: Committee size.
        seed: Seeds the resamples; the same seed gives the same committee.
        params: Hyper-parameters for every member, as ``fit_model`` takes them.
        max_rows: The most rows a member is fitted on (about; None: as many as ``X`` has).

    Returns:
        List of ``n_members`` fitted pipelines.
    """
    y_arr = np.asarray([str(label) for label in y], dtype=object)
    if len(np.unique(y_arr)) < 2:
        raise ValueError("need at least two labels to train")
    if int(n_members) < 1:
        raise ValueError("a committee needs at least one member")
    if params is None:
        params = select_params(template, X, y_arr, seed=seed)
    rng = np.random.default_rng(seed)
    by_label = [np.flatnonzero(y_arr == label) for label in np.unique(y_arr)]
    share = 1.0 if max_rows is None else min(1.0, int(max_rows) / len(y_arr))
    sizes = [max(1, round(len(r) * share)) for r in by_label]
    members = []
    for _ in range(int(n_members)):
        draws = [rng.choice(r, size=k, replace=True) for r, k in zip(by_label, sizes, strict=True)]
        rows = np.sort(np.concatenate(draws))
        members.append(fit_model(template, _take(X, rows), y_arr[rows], params=params, seed=seed))
    return members


class _Rows:
    """Rows of any form with the ``shape`` modAL's disagreement measures read."""

    def __init__(self, X: Any):
        self.X = X
        self.shape = (_n_rows(X),)


def _shared_hashing(members: Sequence[Any]) -> bool:
    """Whether every member is a pipeline opening with the same HashingVectorizer."""
    firsts = [
        m.steps[0][1] if isinstance(m, Pipeline) and len(m.steps) > 1 else None for m in members
    ]
    if not all(isinstance(f, HashingVectorizer) for f in firsts):
        return False
    params = firsts[0].get_params()
    return all(f.get_params() == params for f in firsts[1:])


class _Committee:
    """What modAL's disagreement measures read of a committee, aligned to the project's labels.

    ``vote_entropy`` calls ``len()``, ``classes_`` and ``vote``; ``KL_max_disagreement`` calls
    ``len()``, iterates the members and calls ``vote_proba``. Classes are label positions, and
    each member's probabilities go through ``predict_proba_for``, so members that saw different
    labels still line up column by column.
    """

    def __init__(self, members: Sequence[Any], labels: Sequence[str]):
        self.members = list(members)
        self.labels = [str(label) for label in labels]
        self.classes_ = np.arange(len(self.labels))
        self._proba: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(self.members)

    def vote_proba(self, X: _Rows, **_: Any) -> np.ndarray:
        """Shape (n_rows, n_members, n_labels)."""
        if self._proba is None or self._proba[0] != id(X):
            rows, members = X.X, self.members
            if _shared_hashing(members):
                # Stateless and identical in every member: hash the texts once, not per member.
                rows = members[0][0].transform(rows)
                members = [m[1:] for m in members]
            stacked = [predict_proba_for(m, rows, self.labels) for m in members]
            self._proba = (id(X), np.stack(stacked, axis=1))
        return self._proba[1]

    def vote(self, X: _Rows, **_: Any) -> np.ndarray:
        """Shape (n_rows, n_members): each member's most probable label position."""
        return np.argmax(self.vote_proba(X), axis=2)


def committee_scores(
    members: Sequence[Any], X: Any, labels: Sequence[str], method: str = "vote_entropy"
) -> np.ndarray:
    """Score how much a committee disagrees on each row (higher: label first).

    Args:
        members: Fitted classifiers, e.g. from :func:`fit_committee`.
        X: Rows in whatever form the members accept.
        labels: The project's labels, in display order.
        method: ``"vote_entropy"`` (entropy of the members' votes, in [0, log(min(members,
            labels))]) or ``"kl_max_disagreement"`` (the largest Kullback-Leibler divergence
            of a member's probabilities from the committee mean, >= 0); the strategy names of
            :data:`COMMITTEE_STRATEGIES` are accepted for them.

    Returns:
        Float array of shape (n_rows,); 0 where the members agree completely.
    """
    method = COMMITTEE_METHODS.get(method, method)
    measures = {"vote_entropy": vote_entropy, "kl_max_disagreement": KL_max_disagreement}
    if method not in measures:
        raise ValueError(
            f"unknown committee method {method!r}; expected vote_entropy or kl_max_disagreement"
        )
    if not members:
        raise ValueError("a committee needs at least one member")
    rows = _Rows(X)
    if rows.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = measures[method](_Committee(members, labels), rows)
    # A row some member gives no probability among the project's labels has no divergence.
    return np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0)
