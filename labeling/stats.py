"""Statistics for held-out metrics: confidence intervals, calibration and paired tests.

Every function is pure and works on plain label sequences (strings or anything ``str()`` can
name) or numpy arrays. Randomised procedures take a ``seed`` and give the same answer for it.

The bootstrap resamples held-out rows with replacement. Every metric here is a function of the
confusion matrix, and the confusion matrix of a resample of ``n`` rows is multinomial over the
observed (true, predicted) cells with their observed shares. So instead of drawing ``n_boot``
index arrays of length ``n`` and counting them, the resampled matrices are drawn directly as
multinomial counts over the distinct cells: the same distribution at a cost that grows with the
number of distinct cells (at most ``k**2``, or ``k**3`` for a paired comparison), not with ``n``.
A metric given as a function rather than a name is resampled with index arrays instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import bdtr, bdtrc
from scipy.stats import beta, norm

Metric = Callable[[Sequence, Sequence, Sequence], float]

# Bootstrap resamples drawn per batch, so memory stays bounded for large n_boot (and, through
# the confusion cells a batch holds, for many labels).
_BATCH = 500
_CELLS_PER_BATCH = 1_000_000


def _encode(labels: Sequence | None, *columns: Sequence) -> tuple[list[str], list[np.ndarray]]:
    """Map every column to integer codes over ``labels`` then any stray observed values."""
    order = [str(v) for v in labels] if labels is not None else []
    index = {v: i for i, v in enumerate(order)}
    strings = [[str(v) for v in col] for col in columns]
    for value in sorted({v for col in strings for v in col} - set(index)):
        index[value] = len(order)
        order.append(value)
    codes = [
        np.fromiter((index[v] for v in col), dtype=np.int64, count=len(col)) for col in strings
    ]
    return order, codes


def _confusion(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """A ``(1, k, k)`` confusion matrix (rows are true labels)."""
    return np.bincount(t * k + p, minlength=k * k).reshape(1, k, k)


# --- metrics of a batch of confusion matrices, shape (B, k, k) -> (B,) ------------------------


def _accuracy_cm(cm: np.ndarray) -> np.ndarray:
    total = cm.sum(axis=(1, 2))
    tp = np.trace(cm, axis1=1, axis2=2)
    return np.divide(tp, total, out=np.full(len(cm), np.nan), where=total > 0)


def _macro_f1_cm(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes that occur as a true or a predicted label."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    denom = cm.sum(axis=2) + cm.sum(axis=1)
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    count = present.sum(axis=1)
    return np.divide(f1.sum(axis=1), count, out=np.full(len(cm), np.nan), where=count > 0)


def _recalls_cm(cm: np.ndarray) -> np.ndarray:
    """Recall per class, NaN for a class with no true rows: shape (B, k)."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    support = cm.sum(axis=2)
    return np.divide(tp, support, out=np.full(tp.shape, np.nan), where=support > 0)


def _precisions_cm(cm: np.ndarray) -> np.ndarray:
    """Precision per class, NaN for a class never predicted: shape (B, k)."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    predicted = cm.sum(axis=1)
    return np.divide(tp, predicted, out=np.full(tp.shape, np.nan), where=predicted > 0)


def _f1s_cm(cm: np.ndarray) -> np.ndarray:
    """F1 per class, NaN for a class neither true nor predicted: shape (B, k)."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    denom = cm.sum(axis=2) + cm.sum(axis=1)
    return np.divide(2 * tp, denom, out=np.full(tp.shape, np.nan), where=denom > 0)


def _balanced_accuracy_cm(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes that occur as a true label."""
    recall = _recalls_cm(cm)
    present = ~np.isnan(recall)
    count = present.sum(axis=1)
    total = np.where(present, recall, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(cm), np.nan), where=count > 0)


_BATCH_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "macro_f1": _macro_f1_cm,
    "accuracy": _accuracy_cm,
    "balanced_accuracy": _balanced_accuracy_cm,
}


def _named(batch: Callable[[np.ndarray], np.ndarray], doc: str) -> Metric:
    def metric(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None) -> float:
        t_list, p_list = list(y_true), list(y_pred)
        if len(t_list) != len(p_list):
            raise ValueError(f"y_true has {len(t_list)} rows but y_pred has {len(p_list)}")
        order, (t, p) = _encode(labels, t_list, p_list)
        return float(batch(_confusion(t, p, len(order)))[0])

    metric.__doc__ = doc
    return metric


#: Metric name -> ``fn(y_true, y_pred, labels) -> float`` (NaN on no rows). ``labels`` fixes the
#: class order only; which classes count is decided by the data, as in :func:`evaluate`.
METRICS: dict[str, Metric] = {
    "macro_f1": _named(
        _macro_f1_cm,
        "Macro-F1 over the classes occurring in y_true or y_pred (sklearn's, "
        "zero_division=0, restricted to those classes).",
    ),
    "accuracy": _named(_accuracy_cm, "Share of rows predicted right."),
    "balanced_accuracy": _named(
        _balanced_accuracy_cm, "Mean recall over the classes occurring in y_true."
    ),
}


def _metric_name(metric: str | Metric) -> str | None:
    if isinstance(metric, str):
        if metric not in _BATCH_METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        return metric
    return None


# --- resampling --------------------------------------------------------------------------------


def _resampled_confusions(
    t: np.ndarray, preds: Sequence[np.ndarray], k: int, n_boot: int, rng: np.random.Generator
):
    """Yield batches of bootstrap confusion matrices, one ``(b, k, k)`` array per prediction.

    The rows are resampled jointly (paired): one multinomial draw over the distinct
    (true, pred_1, pred_2, ...) tuples gives the counts of every prediction's matrix.
    """
    n = len(t)
    code = t.copy()
    for p in preds:
        code = code * k + p
    _tuples, first, counts = np.unique(code, return_index=True, return_counts=True)
    cells = [t[first] * k + p[first] for p in preds]
    sorters = []
    for cell in cells:
        order = np.argsort(cell, kind="stable")
        uniq, starts = np.unique(cell[order], return_index=True)
        sorters.append((order, uniq, starts))
    shares = counts / n
    per_batch = max(1, min(_BATCH, _CELLS_PER_BATCH // (k * k)))  # bounded memory for many labels
    done = 0
    while done < n_boot:
        size = min(per_batch, n_boot - done)
        draws = rng.multinomial(n, shares, size=size)
        batch = []
        for order, uniq, starts in sorters:
            flat = np.zeros((size, k * k), dtype=np.int64)
            flat[:, uniq] = np.add.reduceat(draws[:, order], starts, axis=1)
            batch.append(flat.reshape(size, k, k))
        yield batch
        done += size


def _resampled_indices(n: int, n_boot: int, rng: np.random.Generator):
    """Yield batches of bootstrap index arrays, shape ``(b, n)``."""
    done = 0
    while done < n_boot:
        size = min(_BATCH, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def _percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [math.nan for _ in qs]
    return [float(v) for v in np.percentile(finite, [100 * q for q in qs])]


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")


# --- intervals ---------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        k: Successes.
        n: Trials.
        alpha: One minus the confidence level (two-sided).

    Returns:
        ``(lo, hi)`` within [0, 1]; ``(0.0, 1.0)`` when ``n`` is 0 (nothing is known).
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(1 - alpha / 2))
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the bound is exactly 0 or 1 (the formula lands a rounding error off).
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_distribution(
    metric: str | Metric,
    y_true: Sequence,
    y_pred: Sequence,
    n_boot: int = 1000,
    seed: int = 0,
    labels: Sequence | None = None,
) -> np.ndarray:
    """The metric on ``n_boot`` bootstrap resamples of the rows.

    Args:
        metric: A name in :data:`METRICS` or a function ``fn(y_true, y_pred, labels)``.
        y_true: True label per row.
        y_pred: Predicted label per row.
        n_boot: Number of resamples.
        seed: Seed of the resampling.
        labels: Class order (optional; stray labels are appended).

    Returns:
        Array of ``n_boot`` values (NaN where the metric is undefined on a resample).
    """
    _check_boot(n_boot, 0.05)
    order, (t, p) = _encode(labels, y_true, y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} rows but y_pred has {len(p)}")
    if len(t) == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    name = _metric_name(metric)
    if name is not None:
        batch = _BATCH_METRICS[name]
        parts = [batch(cm) for (cm,) in _resampled_confusions(t, [p], len(order), n_boot, rng)]
        return np.concatenate(parts)
    t_lab, p_lab = np.asarray(order, dtype=object)[t], np.asarray(order, dtype=object)[p]
    values = [
        float(metric(t_lab[idx], p_lab[idx], order))
        for batch_idx in _resampled_indices(len(t), n_boot, rng)
        for idx in batch_idx
    ]
    return np.asarray(values, dtype=float)


def bootstrap_interval(
    metric: str | Metric,
    y_true: Sequence,
    y_pred: Sequence,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    labels: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric over resampled rows.

    Args:
        metric: A name in :data:`METRICS` or a function ``fn(y_true, y_pred, labels)``.
        y_true: True label per row.
        y_pred: Predicted label per row.
        n_boot: Number of resamples.
        alpha: One minus the confidence level (two-sided).
        seed: Seed of the resampling; the same seed gives the same interval.
        labels: Class order (optional; stray labels are appended).

    Returns:
        ``(lo, hi)``, the ``alpha/2`` and ``1 - alpha/2`` percentiles; ``(nan, nan)`` on no rows.
    """
    _check_boot(n_boot, alpha)
    values = bootstrap_distribution(metric, y_true, y_pred, n_boot, seed, labels)
    lo, hi = _percentiles(values, [alpha / 2, 1 - alpha / 2])
    return lo, hi


def class_recall_intervals(
    y_true: Sequence,
    y_pred: Sequence,
    labels: Sequence,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    extra: Sequence[str] = (),
) -> dict:
    """Bootstrap intervals of recall per class and of the named metrics, from one resampling.

    Args:
        y_true: True label per row.
        y_pred: Predicted label per row.
        labels: Class order (stray labels are appended).
        n_boot: Number of resamples.
        alpha: One minus the confidence level (two-sided).
        seed: Seed of the resampling.
        extra: Names in :data:`METRICS` whose intervals to compute from the same resamples.

    Returns:
        ``{"recall": {label: (lo, hi)}, name: (lo, hi), ...}``; NaN bounds where undefined
        (a class with no true rows).
    """
    _check_boot(n_boot, alpha)
    order, (t, p) = _encode(labels, y_true, y_pred)
    qs = [alpha / 2, 1 - alpha / 2]
    nan = (math.nan, math.nan)
    if len(t) == 0:
        return {"recall": {label: nan for label in order}, **{name: nan for name in extra}}
    names = [n for n in extra if _metric_name(n)]
    rng = np.random.default_rng(seed)
    recalls, values = [], {name: [] for name in names}
    for (cm,) in _resampled_confusions(t, [p], len(order), n_boot, rng):
        recalls.append(_recalls_cm(cm))
        for name in names:
            values[name].append(_BATCH_METRICS[name](cm))
    recall = np.concatenate(recalls)
    support = np.bincount(t, minlength=len(order))
    out: dict = {
        "recall": {
            label: tuple(_percentiles(recall[:, i], qs)) if support[i] else nan
            for i, label in enumerate(order)
        }
    }
    for name in names:
        out[name] = tuple(_percentiles(np.concatenate(values[name]), qs))
    return out


def confusion_intervals(
    matrix,
    labels: Sequence,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Bootstrap intervals of per-class precision, recall and F1 from a confusion matrix.

    The matrix's counts are all a row bootstrap needs (see the module docstring), so stored
    matrices can be added up and their intervals recomputed without the rows. Rows holding the
    same cells in any order give the same intervals for the same seed, and the recall
    intervals equal :func:`class_recall_intervals` on those rows.

    Args:
        matrix: ``(k, k)`` counts, rows are true labels, columns predicted, in ``labels`` order.
        labels: The class of each row and column.
        n_boot: Number of resamples.
        alpha: One minus the confidence level (two-sided).
        seed: Seed of the resampling.

    Returns:
        ``{"precision": {label: (lo, hi)}, "recall": {...}, "f1": {...}, "accuracy": (lo, hi),
        "macro_f1": (lo, hi), "balanced_accuracy": (lo, hi)}``; NaN bounds where undefined
        (no rows, or a class never predicted for precision / never true for recall).
    """
    _check_boot(n_boot, alpha)
    order = [str(v) for v in labels]
    k = len(order)
    cm = np.asarray(matrix, dtype=np.int64).reshape(k, k) if k else np.zeros((0, 0), np.int64)
    if (cm < 0).any():
        raise ValueError("a confusion matrix holds counts, not negative numbers")
    nan = (math.nan, math.nan)
    per_class = ("precision", "recall", "f1")
    scalars = ("accuracy", "macro_f1", "balanced_accuracy")
    if cm.sum() == 0:
        return {name: dict.fromkeys(order, nan) for name in per_class} | dict.fromkeys(scalars, nan)
    cells = np.repeat(np.arange(k * k), cm.ravel())
    t, p = cells // k, cells % k
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in per_class + scalars}
    batch_fns = {"precision": _precisions_cm, "recall": _recalls_cm, "f1": _f1s_cm}
    for (boot,) in _resampled_confusions(t, [p], k, n_boot, rng):
        for name, fn in batch_fns.items():
            parts[name].append(fn(boot))
        for name in scalars:
            parts[name].append(_BATCH_METRICS[name](boot))
    qs = [alpha / 2, 1 - alpha / 2]
    defined = {
        "precision": cm.sum(axis=0) > 0,
        "recall": cm.sum(axis=1) > 0,
        "f1": cm.sum(axis=0) + cm.sum(axis=1) > 0,
    }
    out: dict = {}
    for name in per_class:
        values = np.concatenate(parts[name])
        out[name] = {
            label: tuple(_percentiles(values[:, i], qs)) if defined[name][i] else nan
            for i, label in enumerate(order)
        }
    for name in scalars:
        out[name] = tuple(_percentiles(np.concatenate(parts[name]), qs))
    return out


# --- calibration -------------------------------------------------------------------------------


def _proba_matrix(y_true: Sequence, proba, labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities as (n, k) floats and the true column per row (-1 for an unknown label)."""
    order = [str(v) for v in labels]
    P = np.asarray(proba, dtype=float)
    t_list = [str(v) for v in y_true]
    if P.ndim != 2 or P.shape != (len(t_list), len(order)):
        raise ValueError(
            f"proba must have shape (rows, labels) = ({len(t_list)}, {len(order)}), got {P.shape}"
        )
    index = {v: i for i, v in enumerate(order)}
    t = np.fromiter((index.get(v, -1) for v in t_list), dtype=np.int64, count=len(t_list))
    return P, t


def brier_score(y_true: Sequence, proba, labels: Sequence) -> float:
    """Multiclass Brier score: mean over rows of the summed squared error to the one-hot truth.

    Args:
        y_true: True label per row.
        proba: ``(rows, len(labels))`` probabilities, columns in ``labels`` order.
        labels: The class of each column.

    Returns:
        A value in [0, 2] (0 is perfect; a true label with no column counts as probability
        0 for it); NaN on no rows.
    """
    P, t = _proba_matrix(y_true, proba, labels)
    if len(t) == 0:
        return math.nan
    onehot = np.zeros_like(P)
    known = t >= 0
    onehot[np.flatnonzero(known), t[known]] = 1.0
    sq = ((P - onehot) ** 2).sum(axis=1) + (~known)  # an unknown true label: (0 - 1)^2
    return float(sq.mean())


def confidence_bins(confidence, n_bins: int = 10) -> np.ndarray:
    """The equal-width bin of each confidence: bin ``i`` holds ``(i/n_bins, (i+1)/n_bins]``.

    The first bin also holds 0 (and anything below); values above 1 go to the last bin.

    Args:
        confidence: Confidences in [0, 1].
        n_bins: Number of bins.

    Returns:
        Integer bin index per value, in ``[0, n_bins)``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    c = np.asarray(confidence, dtype=float)
    return np.clip(np.ceil(c * n_bins).astype(int) - 1, 0, n_bins - 1)


def calibration_bins(y_true: Sequence, proba, labels: Sequence, n_bins: int = 10) -> dict:
    """Per confidence bin: rows, summed top-label confidence and rows predicted right.

    These sums are the sufficient statistics of :func:`expected_calibration_error` and of a
    reliability diagram: bins of disjoint row sets add up, so they can be stored and merged.

    Args:
        y_true: True label per row.
        proba: ``(rows, len(labels))`` probabilities, columns in ``labels`` order.
        labels: The class of each column.
        n_bins: Number of bins (as in :func:`confidence_bins`).

    Returns:
        ``{"count": [int], "confidence": [float], "correct": [int]}``, one entry per bin.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    P, t = _proba_matrix(y_true, proba, labels)
    if len(t) == 0:
        return {"count": [0] * n_bins, "confidence": [0.0] * n_bins, "correct": [0] * n_bins}
    top = P.argmax(axis=1)
    confidence = P[np.arange(len(t)), top]
    bins = confidence_bins(confidence, n_bins)
    return {
        "count": [int(v) for v in np.bincount(bins, minlength=n_bins)],
        "confidence": [float(v) for v in np.bincount(bins, weights=confidence, minlength=n_bins)],
        "correct": [int(v) for v in np.bincount(bins[top == t], minlength=n_bins)],
    }


def ece_from_bins(bins: dict) -> float:
    """Expected calibration error from :func:`calibration_bins` sums (NaN on no rows)."""
    count = np.asarray(bins["count"], dtype=float)
    total = count.sum()
    if total == 0:
        return math.nan
    gap = np.abs(np.asarray(bins["correct"], dtype=float) - np.asarray(bins["confidence"]))
    return float(gap.sum() / total)


def expected_calibration_error(
    y_true: Sequence, proba, labels: Sequence, n_bins: int = 10
) -> float:
    """Top-label expected calibration error over equal-width confidence bins.

    The confidence of a row is its highest probability, and the row is right when that
    column's label is the true one. ECE is the row-weighted mean over bins of
    ``|accuracy - mean confidence|``; bin ``i`` holds confidences in ``(i/n_bins,
    (i+1)/n_bins]`` (the first also holds 0). The per-bin sums (a reliability diagram) are
    :func:`calibration_bins`.

    Args:
        y_true: True label per row.
        proba: ``(rows, len(labels))`` probabilities, columns in ``labels`` order.
        labels: The class of each column.
        n_bins: Number of bins.

    Returns:
        A value in [0, 1]; NaN on no rows.
    """
    return ece_from_bins(calibration_bins(y_true, proba, labels, n_bins))


# --- paired comparisons ------------------------------------------------------------------------


def mcnemar_exact(cand_correct: Sequence[bool], champ_correct: Sequence[bool]) -> dict:
    """Exact McNemar test: a binomial test on the rows where exactly one model is right.

    Args:
        cand_correct: Per row, whether the candidate was right.
        champ_correct: Per row (the same rows), whether the champion was right.

    Returns:
        ``{"b", "c", "n_discordant", "p_better", "p_worse", "p_two_sided"}``: ``b`` rows only
        the candidate got right, ``c`` rows only the champion got right; ``p_better`` is the
        one-sided p-value for "the candidate is better" (``b`` large), ``p_worse`` for "the
        candidate is worse". All p-values are 1.0 when no row is discordant.
    """
    a = np.asarray(cand_correct, dtype=bool)
    o = np.asarray(champ_correct, dtype=bool)
    if a.shape != o.shape:
        raise ValueError(f"cand_correct has {a.size} rows but champ_correct has {o.size}")
    b = int(np.count_nonzero(a & ~o))
    c = int(np.count_nonzero(~a & o))
    n = b + c
    if n == 0:
        p_better = p_worse = p_two = 1.0
    else:
        # The exact tails of Binomial(n, 1/2), as scipy.stats.binomtest gives them, without its
        # per-call overhead (the gate runs one test per class). The two-sided value of a
        # symmetric binomial is twice the smaller tail.
        p_better = float(bdtrc(b - 1, n, 0.5)) if b > 0 else 1.0
        p_worse = float(bdtr(b, n, 0.5))
        p_two = min(1.0, 2 * min(p_better, p_worse))
    return {
        "b": b,
        "c": c,
        "n_discordant": n,
        "p_better": p_better,
        "p_worse": p_worse,
        "p_two_sided": p_two,
    }


def paired_accuracy_bounds(
    cand_correct: Sequence[bool], champ_correct: Sequence[bool], alpha: float = 0.05
) -> dict:
    """One-sided exact bounds of the accuracy gain (candidate minus champion), paired rows.

    Conditional on the ``n_d`` discordant rows the gain is ``n_d / n * (2 * pi - 1)`` where
    ``pi`` is the share of discordant rows only the candidate got right; the Clopper-Pearson
    bounds of ``pi`` give the bounds of the gain. The lower bound is above 0 exactly when
    McNemar's exact one-sided test is significant at ``alpha``.

    Args:
        cand_correct: Per row, whether the candidate was right.
        champ_correct: Per row (the same rows), whether the champion was right.
        alpha: Each bound holds with probability ``1 - alpha``.

    Returns:
        ``{"delta", "lower", "upper"}`` (all 0.0 on no rows).
    """
    a = np.asarray(cand_correct, dtype=bool)
    o = np.asarray(champ_correct, dtype=bool)
    n = a.size
    b = int(np.count_nonzero(a & ~o))
    c = int(np.count_nonzero(~a & o))
    nd = b + c
    if n == 0:
        return {"delta": 0.0, "lower": 0.0, "upper": 0.0}
    pi_lo = float(beta.ppf(alpha, b, c + 1)) if b > 0 else 0.0
    pi_hi = float(beta.ppf(1 - alpha, b + 1, c)) if c > 0 else 1.0
    scale = nd / n
    return {
        "delta": (b - c) / n,
        "lower": scale * (2 * pi_lo - 1),
        "upper": scale * (2 * pi_hi - 1),
    }


def paired_bootstrap(
    metric: str | Metric,
    y_true: Sequence,
    cand_pred: Sequence,
    champ_pred: Sequence,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    labels: Sequence | None = None,
) -> dict:
    """Paired bootstrap of a metric's gain (candidate minus champion) on the same rows.

    Args:
        metric: A name in :data:`METRICS` or a function ``fn(y_true, y_pred, labels)``.
        y_true: True label per row.
        cand_pred: The candidate's prediction per row.
        champ_pred: The champion's prediction for the same rows.
        n_boot: Number of resamples.
        seed: Seed of the resampling; the same seed gives the same answer.
        alpha: One minus the confidence level.
        labels: Class order (optional; stray labels are appended).

    Returns:
        ``{"metric", "delta", "candidate", "champion", "lo", "hi", "lower", "upper",
        "p_better", "p_worse", "n", "n_boot"}``: ``delta`` is the observed gain, ``lo``/``hi``
        the two-sided percentile interval at ``1 - alpha``, ``lower``/``upper`` the one-sided
        bounds at ``1 - alpha`` (the ``alpha`` and ``1 - alpha`` percentiles), ``p_better`` the
        share of resamples with a gain ≤ 0 (small when the candidate is reliably better) and
        ``p_worse`` the share with a gain ≥ 0. Undefined values are NaN.
    """
    _check_boot(n_boot, alpha)
    cand_list, champ_list, true_list = list(cand_pred), list(champ_pred), list(y_true)
    if not len(true_list) == len(cand_list) == len(champ_list):
        raise ValueError(
            f"row counts differ: y_true {len(true_list)}, cand_pred {len(cand_list)}, "
            f"champ_pred {len(champ_list)}"
        )
    order, (t, a, o) = _encode(labels, true_list, cand_list, champ_list)
    name = _metric_name(metric)
    label = name if name is not None else getattr(metric, "__name__", "metric")
    n = len(t)
    out = {"metric": label, "n": n, "n_boot": n_boot}
    nan = math.nan
    if n == 0:
        return (
            out
            | dict.fromkeys(("delta", "candidate", "champion", "lo", "hi", "lower", "upper"), nan)
            | {"p_better": 1.0, "p_worse": 1.0}
        )
    rng = np.random.default_rng(seed)
    k = len(order)
    if name is not None:
        fn = _BATCH_METRICS[name]
        cand = float(fn(_confusion(t, a, k))[0])
        champ = float(fn(_confusion(t, o, k))[0])
        deltas = np.concatenate(
            [fn(cm_a) - fn(cm_o) for cm_a, cm_o in _resampled_confusions(t, [a, o], k, n_boot, rng)]
        )
    else:
        lab = np.asarray(order, dtype=object)
        t_l, a_l, o_l = lab[t], lab[a], lab[o]
        cand, champ = float(metric(t_l, a_l, order)), float(metric(t_l, o_l, order))
        deltas = np.asarray(
            [
                float(metric(t_l[i], a_l[i], order)) - float(metric(t_l[i], o_l[i], order))
                for batch in _resampled_indices(n, n_boot, rng)
                for i in batch
            ]
        )
    finite = deltas[np.isfinite(deltas)]
    lo, hi, lower, upper = _percentiles(deltas, [alpha / 2, 1 - alpha / 2, alpha, 1 - alpha])
    if finite.size:
        p_better = float(np.mean(finite <= 0))
        p_worse = float(np.mean(finite >= 0))
    else:
        p_better = p_worse = 1.0
    return out | {
        "delta": cand - champ,
        "candidate": cand,
        "champion": champ,
        "lo": lo,
        "hi": hi,
        "lower": lower,
        "upper": upper,
        "p_better": p_better,
        "p_worse": p_worse,
    }
