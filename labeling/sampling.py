"""Active-learning informativeness scores and pool queries.

This is the only module in Corrigo that imports modAL. Only modAL's stateless query-strategy
functions are used, on already-fitted estimators: its ``ActiveLearner.teach`` and ``Committee``
are broken with scikit-learn 1.8+.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)

STRATEGIES = ("margin", "uncertainty", "entropy")
DEFAULT_STRATEGY = "margin"

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
