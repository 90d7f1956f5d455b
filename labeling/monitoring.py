"""Monitoring statistics of a deployed model: per-window figures, their merge, and CBPE.

A *window* is one time slice of one model version's traffic. Its figures are built in two
steps so that stored windows can be combined without the raw predictions:

1. :func:`window_stats` reduces the window's rows to *sufficient statistics*: counts
   (volume, predicted labels, feedback verdicts), a confidence histogram, confusion matrices
   of the expertly labelled items and per-bin calibration sums. They add up across windows.
2. :func:`summarize` turns sufficient statistics into figures with intervals: rates with
   Wilson intervals, per-class precision / recall / F1 with seeded bootstrap intervals drawn
   from the confusion matrix (:func:`labeling.stats.confusion_intervals`), Brier score,
   expected calibration error and a reliability diagram.

:func:`window_metrics` does both for one window; :func:`merge_windows` adds the statistics of
stored windows and summarises the sum, so a 90-day figure is computed from 90 small dicts and
its intervals come from the merged counts (not from averaging per-window intervals).

Labelled figures come in two estimates. ``audit`` uses only the uniform random audit sample
and is unbiased for the window's traffic. ``all`` uses every expert label, which over-weights
the disputed and uncertain items the queue serves first, so it is biased (usually low).

:class:`CBPE` (confidence-based performance estimation, as NannyML does it) estimates the
metrics of unlabelled traffic from the model's calibrated probabilities; :func:`merge_estimates`
combines stored per-window estimates and :func:`compare_estimate` puts an estimate beside the
realised figures once labels arrive.

Every returned dict is JSON-serialisable: Python floats and ints only, ``None`` for a value
that is undefined (no rows, a class never predicted) instead of NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold

from . import stats
from .evaluation import _json_float, _label_order

SCHEMA = 1
#: Bins of the confidence histogram, the ECE and the reliability diagram (over [0, 1]).
N_BINS = 10
#: Bootstrap resamples of the per-class intervals.
N_BOOT = 1000
#: One minus the confidence level of every interval.
ALPHA = 0.05
#: The two labelled estimates: the uniform audit sample, and every expert label.
SOURCES = ("audit", "all")
#: Feedback verdicts (see :func:`feedback_verdict`).
VERDICTS = ("accepted", "corrected", "other")


# --- small helpers -----------------------------------------------------------------------------


def _rate(k: int, n: int, alpha: float) -> dict:
    """A proportion with its Wilson interval; all None on no trials."""
    if n == 0:
        return {"value": None, "lo": None, "hi": None, "method": "wilson"}
    lo, hi = stats.wilson_interval(k, n, alpha)
    return {"value": k / n, "lo": float(lo), "hi": float(hi), "method": "wilson"}


def _estimate(value: float | None, lo_hi: tuple[float, float]) -> dict:
    return {
        "value": _json_float(value),
        "lo": _json_float(lo_hi[0]),
        "hi": _json_float(lo_hi[1]),
        "method": "bootstrap",
    }


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def top_confidence(probabilities: Mapping[str, float] | Sequence[float] | None) -> float | None:
    """The highest probability of one prediction (its confidence), or None without any.

    Args:
        probabilities: ``{label: probability}`` (as predictions store them), a sequence of
            probabilities, or None.

    Returns:
        The largest finite probability, or None when there is none.
    """
    if probabilities is None:
        return None
    values = probabilities.values() if isinstance(probabilities, Mapping) else probabilities
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return max(finite) if finite else None


def proba_matrix(rows: Iterable[Mapping[str, float] | Sequence[float]], labels: Sequence) -> Any:
    """Probabilities of many rows as a ``(rows, len(labels))`` array in ``labels`` order.

    Args:
        rows: Per row ``{label: probability}`` (a label not in the mapping gets 0) or a
            sequence already in ``labels`` order.
        labels: The column order.

    Returns:
        A float numpy array.
    """
    order = [str(v) for v in labels]
    index = {v: i for i, v in enumerate(order)}
    rows = list(rows)
    out = np.zeros((len(rows), len(order)), dtype=float)
    for r, row in enumerate(rows):
        if isinstance(row, Mapping):
            for label, value in row.items():
                if str(label) not in index:
                    raise ValueError(f"probability for {label!r}, which is not among the labels")
                out[r, index[str(label)]] = float(value)
        else:
            values = np.asarray(row, dtype=float)
            if values.shape != (len(order),):
                raise ValueError(f"a probability row has {values.size} values for {len(order)}")
            out[r] = values
    return out


def feedback_verdict(predicted: str, correct: bool | None, label: str | None) -> str:
    """What one piece of user feedback says about its prediction.

    ``correct=True`` accepts it, ``correct=False`` corrects it; without ``correct``, a
    ``label`` equal to the prediction accepts it and a different one corrects it. Feedback
    with neither (a comment alone) is ``"other"``: it is counted but is in no rate's
    denominator.

    Returns:
        ``"accepted"``, ``"corrected"`` or ``"other"``.
    """
    if correct is True:
        return "accepted"
    if correct is False:
        return "corrected"
    if label is not None and str(label) != "":
        return "accepted" if str(label) == str(predicted) else "corrected"
    return "other"


def _is_audit(row: Mapping[str, Any]) -> bool:
    return bool(row.get("audit")) or row.get("reason") == "audit"


# --- sufficient statistics ---------------------------------------------------------------------


def _empty_labeled(k: int, n_bins: int) -> dict:
    return {
        "confusion": [[0] * k for _ in range(k)],
        "calibration": {
            "count": [0] * n_bins,
            "confidence": [0.0] * n_bins,
            "correct": [0] * n_bins,
        },
        "brier_sum": 0.0,
    }


def window_stats(
    labels: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float | None] | None = None,
    *,
    feedback: Iterable[Mapping[str, Any]] = (),
    labeled: Iterable[Mapping[str, Any]] = (),
    n_bins: int = N_BINS,
) -> dict:
    """Sufficient statistics of one window: counts that add up across windows.

    Args:
        labels: The model's labels, in display order (stray observed labels are appended).
        predicted: Predicted label of every prediction in the window.
        confidence: Per prediction its confidence (highest probability, see
            :func:`top_confidence`) or None where the model gave none; omit if unknown.
        feedback: One mapping per piece of feedback in the window: ``predicted`` (the label
            it is about), ``correct`` (bool or None) and ``label`` (a correction or None);
            see :func:`feedback_verdict`.
        labeled: One mapping per expert-labelled production item: ``true`` (expert label),
            ``predicted`` (the model's label), optional ``proba`` (``{label: p}`` or a
            sequence in ``labels`` order; rows without it count in the confusion matrix but
            not in calibration) and ``audit`` (True for the uniform random audit sample;
            ``"reason": "audit"``, as annotations record it, counts too).
        n_bins: Bins of the confidence histogram and calibration (equal width over [0, 1]).

    Returns:
        ``{"schema", "labels", "n_bins", "volume", "predicted": [count per label],
        "confidence": {"n", "sum", "hist": [count per bin]}, "feedback": {"accepted",
        "corrected", "other"}, "labeled": {"audit" | "all": {"confusion": [[count]] (rows
        true), "calibration": {"count", "confidence", "correct"} per bin, "brier_sum"}}}``
        (``all`` includes the audits).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    predicted = [str(v) for v in predicted]
    feedback = [dict(f) for f in feedback]
    labeled = [dict(row) for row in labeled]
    if confidence is not None and len(confidence) != len(predicted):
        raise ValueError(f"{len(predicted)} predictions but {len(confidence)} confidences")
    given = [str(v) for v in labels]
    for row in labeled:
        if "true" not in row or "predicted" not in row:
            raise ValueError("a labelled row needs 'true' and 'predicted'")
        proba = row.get("proba")
        if proba is not None and not isinstance(proba, Mapping):
            values = list(proba)
            if len(values) != len(given):
                raise ValueError(f"a probability row has {len(values)} values for {len(given)}")
            row["proba"] = dict(zip(given, values, strict=True))
    proba_keys = [
        str(key) for row in labeled if isinstance(row.get("proba"), Mapping) for key in row["proba"]
    ]
    order = _label_order(
        labels,
        predicted,
        [str(f["predicted"]) for f in feedback if f.get("predicted") is not None],
        [str(row["true"]) for row in labeled],
        [str(row["predicted"]) for row in labeled],
        proba_keys,
    )
    k = len(order)
    index = {v: i for i, v in enumerate(order)}

    pred_counts = np.bincount([index[v] for v in predicted], minlength=k)
    conf = np.asarray(
        [
            float(c)
            for c in ([] if confidence is None else confidence)
            if c is not None and math.isfinite(float(c))
        ],
        dtype=float,
    )
    hist = np.bincount(stats.confidence_bins(conf, n_bins), minlength=n_bins)

    verdicts = {v: 0 for v in VERDICTS}
    for f in feedback:
        verdicts[feedback_verdict(f.get("predicted"), f.get("correct"), f.get("label"))] += 1

    out_labeled = {}
    for source in SOURCES:
        rows = [r for r in labeled if source == "all" or _is_audit(r)]
        block = _empty_labeled(k, n_bins)
        if rows:
            cm = np.zeros((k, k), dtype=np.int64)
            np.add.at(
                cm,
                ([index[str(r["true"])] for r in rows], [index[str(r["predicted"])] for r in rows]),
                1,
            )
            block["confusion"] = cm.tolist()
            with_proba = [r for r in rows if r.get("proba") is not None]
            if with_proba:
                y = [str(r["true"]) for r in with_proba]
                P = proba_matrix([r["proba"] for r in with_proba], order)
                block["calibration"] = stats.calibration_bins(y, P, order, n_bins)
                block["brier_sum"] = float(stats.brier_score(y, P, order) * len(y))
        out_labeled[source] = block

    return {
        "schema": SCHEMA,
        "labels": order,
        "n_bins": n_bins,
        "volume": len(predicted),
        "predicted": [int(v) for v in pred_counts],
        "confidence": {
            "n": int(conf.size),
            "sum": float(conf.sum()),
            "hist": [int(v) for v in hist],
        },
        "feedback": verdicts,
        "labeled": out_labeled,
    }


def _reindex(values: Sequence, src: list[str], dst: list[str]) -> np.ndarray:
    """A per-label vector (or square matrix) moved from label order ``src`` to ``dst``."""
    arr = np.asarray(values)
    pos = [dst.index(v) for v in src]
    if arr.ndim == 1:
        out = np.zeros(len(dst), dtype=arr.dtype)
        out[pos] = arr
    else:
        out = np.zeros((len(dst), len(dst)), dtype=arr.dtype)
        out[np.ix_(pos, pos)] = arr
    return out


def merge_stats(windows: Iterable[Mapping[str, Any]]) -> dict:
    """Add up the sufficient statistics of windows (disjoint rows) into one.

    Labels are the union: the first window's in its order, then those only later windows saw
    (sorted); all windows must share ``n_bins``. Every count of the result equals
    :func:`window_stats` on the union of the windows' rows (floating sums up to rounding).

    Args:
        windows: :func:`window_stats` dicts (or :func:`summarize` dicts, whose ``stats`` is
            used).

    Returns:
        A :func:`window_stats` dict; the statistics of an empty window when given none.
    """
    items = [w["stats"] if "stats" in w else w for w in windows]
    if not items:
        return window_stats([], [])
    n_bins = items[0]["n_bins"]
    if any(w["n_bins"] != n_bins for w in items):
        raise ValueError("windows with different n_bins cannot be merged")
    # The first window's labels in its order, then labels only later windows saw (sorted).
    order = _label_order(items[0]["labels"], *[w["labels"] for w in items[1:]])
    k = len(order)
    volume = 0
    pred = np.zeros(k, dtype=np.int64)
    conf_n, conf_sum, hist = 0, 0.0, np.zeros(n_bins, dtype=np.int64)
    verdicts = {v: 0 for v in VERDICTS}
    labeled = {s: _empty_labeled(k, n_bins) for s in SOURCES}
    cms = {s: np.zeros((k, k), dtype=np.int64) for s in SOURCES}
    cal = {
        s: {
            "count": np.zeros(n_bins, np.int64),
            "confidence": np.zeros(n_bins),
            "correct": np.zeros(n_bins, np.int64),
        }
        for s in SOURCES
    }
    for w in items:
        src = list(w["labels"])
        volume += int(w["volume"])
        pred += _reindex(w["predicted"], src, order).astype(np.int64)
        conf_n += int(w["confidence"]["n"])
        conf_sum += float(w["confidence"]["sum"])
        hist += np.asarray(w["confidence"]["hist"], dtype=np.int64)
        for v in VERDICTS:
            verdicts[v] += int(w["feedback"].get(v, 0))
        for s in SOURCES:
            block = w["labeled"][s]
            cms[s] += _reindex(
                np.asarray(block["confusion"], dtype=np.int64).reshape(len(src), len(src)),
                src,
                order,
            )
            for key in ("count", "confidence", "correct"):
                cal[s][key] = cal[s][key] + np.asarray(block["calibration"][key])
            labeled[s]["brier_sum"] += float(block["brier_sum"])
    for s in SOURCES:
        labeled[s]["confusion"] = cms[s].tolist()
        labeled[s]["calibration"] = {
            "count": [int(v) for v in cal[s]["count"]],
            "confidence": [float(v) for v in cal[s]["confidence"]],
            "correct": [int(v) for v in cal[s]["correct"]],
        }
    return {
        "schema": SCHEMA,
        "labels": order,
        "n_bins": n_bins,
        "volume": volume,
        "predicted": [int(v) for v in pred],
        "confidence": {"n": conf_n, "sum": conf_sum, "hist": [int(v) for v in hist]},
        "feedback": verdicts,
        "labeled": labeled,
    }


# --- figures -----------------------------------------------------------------------------------


def _labeled_figures(
    block: Mapping, order: list[str], n_bins: int, n_boot: int, alpha: float, seed: int
) -> dict:
    k = len(order)
    cm = np.asarray(block["confusion"], dtype=np.int64).reshape(k, k)
    n = int(cm.sum())
    tp = np.diagonal(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    boot = stats.confusion_intervals(cm, order, n_boot, alpha, seed)
    per_class = {}
    for i, label in enumerate(order):
        f1_den = support[i] + predicted[i]
        per_class[label] = {
            "support": int(support[i]),
            "predicted": int(predicted[i]),
            "precision": _estimate(_ratio(tp[i], predicted[i]), boot["precision"][label]),
            "recall": _estimate(_ratio(tp[i], support[i]), boot["recall"][label]),
            "f1": _estimate(_ratio(2 * tp[i], f1_den), boot["f1"][label]),
        }
    macro = float(stats._macro_f1_cm(cm[None])[0]) if n else None
    bins = block["calibration"]
    cal_n = int(sum(bins["count"]))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    reliability = [
        {
            "lo": float(edges[b]),
            "hi": float(edges[b + 1]),
            "count": int(bins["count"][b]),
            "confidence": _ratio(bins["confidence"][b], bins["count"][b]),
            "accuracy": _ratio(bins["correct"][b], bins["count"][b]),
        }
        for b in range(n_bins)
    ]
    return {
        "n": n,
        "accuracy": _rate(int(tp.sum()), n, alpha),
        "macro_f1": _estimate(macro, boot["macro_f1"]),
        "per_class": per_class,
        "confusion": {"labels": order, "matrix": cm.tolist()},
        "calibration": {
            "n": cal_n,
            "brier": _ratio(float(block["brier_sum"]), cal_n),
            "ece": _json_float(stats.ece_from_bins(bins)),
            "reliability": reliability,
        },
    }


def summarize(
    window: Mapping[str, Any], *, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = 0
) -> dict:
    """Figures with intervals from sufficient statistics (one window's or merged ones).

    Args:
        window: A :func:`window_stats` or :func:`merge_stats` dict.
        n_boot: Bootstrap resamples of the per-class and macro-F1 intervals.
        alpha: One minus the confidence level of every interval.
        seed: Seed of the bootstrap (the same statistics and seed give the same dict).

    Returns:
        ``{"schema", "labels", "volume", "predicted": {label: {"count", "share"}},
        "confidence": {"n", "mean", "edges", "counts"}, "feedback": {"n", "accepted",
        "corrected", "other", "acceptance_rate", "correction_rate"}, "labeled": {"audit" |
        "all": {"n", "accuracy", "macro_f1", "per_class": {label: {"support", "predicted",
        "precision", "recall", "f1"}}, "confusion": {"labels", "matrix"}, "calibration":
        {"n", "brier", "ece", "reliability": [{"lo", "hi", "count", "confidence",
        "accuracy"}]}}}, "intervals": {"level", "n_boot", "seed"}, "stats": window}``. Each
        rate or metric is ``{"value", "lo", "hi", "method"}`` (``"wilson"`` for proportions,
        ``"bootstrap"`` otherwise), all None where undefined (no rows, a class never
        predicted or never true).
    """
    order = list(window["labels"])
    n_bins = int(window["n_bins"])
    volume = int(window["volume"])
    conf = window["confidence"]
    fb = window["feedback"]
    decided = int(fb["accepted"]) + int(fb["corrected"])
    return {
        "schema": SCHEMA,
        "labels": order,
        "volume": volume,
        "predicted": {
            label: {"count": int(c), "share": _ratio(int(c), volume)}
            for label, c in zip(order, window["predicted"], strict=True)
        },
        "confidence": {
            "n": int(conf["n"]),
            "mean": _ratio(float(conf["sum"]), int(conf["n"])),
            "edges": [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)],
            "counts": [int(c) for c in conf["hist"]],
        },
        "feedback": {
            "n": decided,
            "accepted": int(fb["accepted"]),
            "corrected": int(fb["corrected"]),
            "other": int(fb["other"]),
            "acceptance_rate": _rate(int(fb["accepted"]), decided, alpha),
            "correction_rate": _rate(int(fb["corrected"]), decided, alpha),
        },
        "labeled": {
            s: _labeled_figures(window["labeled"][s], order, n_bins, n_boot, alpha, seed)
            for s in SOURCES
        },
        "intervals": {"level": 1 - alpha, "n_boot": n_boot, "seed": seed},
        "stats": dict(window),
    }


def window_metrics(
    labels: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float | None] | None = None,
    *,
    feedback: Iterable[Mapping[str, Any]] = (),
    labeled: Iterable[Mapping[str, Any]] = (),
    n_bins: int = N_BINS,
    n_boot: int = N_BOOT,
    alpha: float = ALPHA,
    seed: int = 0,
) -> dict:
    """The figures of one window: :func:`summarize` of :func:`window_stats` (same arguments).

    The result keeps its sufficient statistics under ``"stats"``, so stored results can be
    merged by :func:`merge_windows`.
    """
    window = window_stats(
        labels, predicted, confidence, feedback=feedback, labeled=labeled, n_bins=n_bins
    )
    return summarize(window, n_boot=n_boot, alpha=alpha, seed=seed)


def merge_windows(
    windows: Iterable[Mapping[str, Any]],
    *,
    n_boot: int = N_BOOT,
    alpha: float = ALPHA,
    seed: int = 0,
) -> dict:
    """The figures of a longer period from stored windows, without their raw rows.

    Args:
        windows: :func:`window_metrics` results (or bare :func:`window_stats` dicts) of
            disjoint windows.
        n_boot: Bootstrap resamples.
        alpha: One minus the confidence level.
        seed: Seed of the bootstrap.

    Returns:
        The :func:`summarize` dict of the merged statistics: the same as
        :func:`window_metrics` on the union of the windows' rows.
    """
    return summarize(merge_stats(windows), n_boot=n_boot, alpha=alpha, seed=seed)


# --- CBPE: confidence-based performance estimation ------------------------------------------

#: Half-width of an estimate's band in standard deviations (NannyML's default).
SIGMAS = 3.0
#: Fewer calibration rows than this: no isotonic calibration is attempted.
MIN_CALIBRATION_ROWS = 50


def _top_label_null_ece(
    P: np.ndarray, n_bins: int, n_sim: int, rng: np.random.Generator
) -> np.ndarray:
    """ECE of ``n_sim`` label draws from the probabilities themselves (perfect calibration)."""
    top = P.max(axis=1)
    bins = stats.confidence_bins(top, n_bins)
    conf_sum = np.bincount(bins, weights=top, minlength=n_bins)
    onehot = np.zeros((len(top), n_bins))
    onehot[np.arange(len(top)), bins] = 1.0
    out = np.empty(n_sim)
    step = max(1, 2_000_000 // max(1, len(top)))
    for start in range(0, n_sim, step):
        size = min(step, n_sim - start)
        correct = rng.random((size, len(top))) < top
        out[start : start + size] = np.abs(correct @ onehot - conf_sum).sum(axis=1) / len(top)
    return out


def _fit_isotonic(P: np.ndarray, t: np.ndarray) -> list[dict]:
    """One increasing isotonic map per class (one-vs-rest), as JSON threshold lists."""
    maps = []
    for c in range(P.shape[1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(P[:, c], (t == c).astype(float))
        maps.append(
            {
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            }
        )
    return maps


def _apply_isotonic(P: np.ndarray, maps: Sequence[Mapping]) -> np.ndarray:
    """Map every column through its isotonic thresholds, then renormalise each row.

    ``np.interp`` with the stored thresholds is what ``IsotonicRegression.predict`` does
    (linear between thresholds, clipped outside). A row all of whose calibrated values are 0
    keeps its raw probabilities.
    """
    Q = np.column_stack([np.interp(P[:, c], m["x"], m["y"]) for c, m in enumerate(maps)]).reshape(
        P.shape
    )
    total = Q.sum(axis=1, keepdims=True)
    ok = total[:, 0] > 0
    out = P.astype(float).copy()
    out[ok] = Q[ok] / total[ok]
    return out


class CBPE:
    """Confidence-based performance estimation (as NannyML's CBPE), for multiclass models.

    :meth:`fit` calibrates the model's probabilities on held-out labelled rows (the audits):
    an isotonic regression per class (one-vs-rest, rows renormalised) is used only when it
    lowers the held-out expected calibration error; otherwise the probabilities are used as
    they are (``method == "identity"``). "Held-out" means cross-fitted: each fold is calibrated
    by maps fitted on the other folds, and that out-of-fold ECE is compared with the raw ECE on
    the same rows. The isotonic maps are also skipped when the raw ECE is no larger than a
    perfectly calibrated model's would be by chance (labels drawn from the probabilities
    themselves: the share of ``n_null`` draws with an ECE at least as large is ``p_calibrated``,
    and calibration needs it below ``alpha``), so a calibrated model keeps its probabilities
    instead of winning a coin toss between two noise levels; and on fewer than
    ``min_rows`` rows.

    :meth:`estimate` then treats each production row's calibrated probabilities as the
    distribution of its unknown label: the expected confusion matrix (row ``i``, column ``j``:
    the summed probability of label ``i`` over rows predicted ``j``) gives the expected
    accuracy and per-class precision, recall and F1. Their standard deviations are those of
    the realised metric when each row's label is drawn from its calibrated probabilities:
    exact for accuracy and precision (sums of independent Bernoulli draws over fixed rows),
    first-order (delta method) for recall and F1. The band is the estimate ± ``sigmas``
    standard deviations. It covers sampling only: it assumes the calibration still holds,
    which is what a concept shift breaks (see :func:`compare_estimate`).

    The fitted state is :meth:`to_dict` / :meth:`from_dict` JSON (isotonic thresholds as
    lists), so it can be fitted at promotion and stored.
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        n_bins: int = N_BINS,
        n_splits: int = 5,
        n_null: int = 500,
        alpha: float = ALPHA,
        min_rows: int = MIN_CALIBRATION_ROWS,
        seed: int = 0,
    ) -> None:
        self.labels = [str(v) for v in labels]
        if len(set(self.labels)) != len(self.labels) or not self.labels:
            raise ValueError("labels must be distinct and not empty")
        if n_splits < 2:
            raise ValueError(f"n_splits must be at least 2, got {n_splits}")
        self.n_bins = n_bins
        self.n_splits = n_splits
        self.n_null = n_null
        self.alpha = alpha
        self.min_rows = max(min_rows, n_splits)
        self.seed = seed
        self.method = "identity"
        self.reason = "not fitted"
        self.isotonic: list[dict] | None = None
        self.fit_report: dict = {}

    # -- fitting --

    def fit(self, y_true: Sequence[str], proba: Any) -> CBPE:
        """Choose and fit the calibration on held-out rows.

        Args:
            y_true: True label per row (a label outside ``labels`` is never predicted right).
            proba: ``(rows, len(labels))`` probabilities in ``labels`` order (or a sequence of
                ``{label: p}``).

        Returns:
            ``self``, with ``method`` (``"isotonic"`` or ``"identity"``), ``reason`` and
            ``fit_report`` (``n``, ``ece_raw``, ``ece_isotonic`` out of fold,
            ``p_calibrated``) set.
        """
        y = [str(v) for v in y_true]
        P = self._matrix(proba)
        P, t = stats._proba_matrix(y, P, self.labels)
        n = len(t)
        ece_raw = stats.expected_calibration_error(y, P, self.labels, self.n_bins) if n else None
        report = {"n": n, "ece_raw": _json_float(ece_raw), "ece_isotonic": None}
        report["p_calibrated"] = None
        self.isotonic = None
        self.method = "identity"
        if n < self.min_rows:
            self.reason = f"{n} calibration rows, fewer than {self.min_rows}: probabilities as is"
            self.fit_report = report
            return self
        rng = np.random.default_rng(self.seed)
        null = _top_label_null_ece(P, self.n_bins, self.n_null, rng)
        p_cal = float((1 + np.count_nonzero(null >= ece_raw - 1e-12)) / (1 + self.n_null))
        oof = np.empty_like(P)
        folds = KFold(self.n_splits, shuffle=True, random_state=self.seed)
        for train, test in folds.split(P):
            oof[test] = _apply_isotonic(P[test], _fit_isotonic(P[train], t[train]))
        ece_iso = stats.expected_calibration_error(y, oof, self.labels, self.n_bins)
        report |= {"ece_isotonic": _json_float(ece_iso), "p_calibrated": p_cal}
        self.fit_report = report
        if p_cal >= self.alpha:
            self.reason = (
                f"raw ECE {ece_raw:.4f} is what a calibrated model shows by chance "
                f"(p = {p_cal:.3f} ≥ {self.alpha:g}): probabilities as is"
            )
        elif ece_iso >= ece_raw:
            self.reason = (
                f"isotonic calibration does not lower the held-out ECE ({ece_iso:.4f} ≥ raw "
                f"{ece_raw:.4f}): probabilities as is"
            )
        else:
            self.method = "isotonic"
            self.isotonic = _fit_isotonic(P, t)
            self.reason = (
                f"isotonic calibration lowers the held-out ECE from {ece_raw:.4f} to "
                f"{ece_iso:.4f} (out of fold, {self.n_splits} folds)"
            )
        return self

    def _matrix(self, proba: Any) -> np.ndarray:
        if isinstance(proba, np.ndarray):
            return proba.astype(float)
        rows = list(proba)
        if rows and isinstance(rows[0], Mapping):
            return proba_matrix(rows, self.labels)
        return np.asarray(rows, dtype=float).reshape(len(rows), len(self.labels))

    def calibrate(self, proba: Any) -> np.ndarray:
        """The calibrated probabilities (the raw ones when ``method == "identity"``)."""
        P = self._matrix(proba)
        if P.ndim != 2 or P.shape[1] != len(self.labels):
            raise ValueError(f"proba must have {len(self.labels)} columns, got shape {P.shape}")
        if self.method == "isotonic" and self.isotonic is not None:
            return _apply_isotonic(P, self.isotonic)
        return P

    # -- estimation --

    def estimate_stats(self, proba: Any, predicted: Sequence[str] | None = None) -> dict:
        """Sufficient statistics of the estimate for one window (they add up across windows).

        Args:
            proba: The model's raw ``(rows, len(labels))`` probabilities of the window.
            predicted: The label the model predicted per row; the raw argmax when omitted.

        Returns:
            ``{"schema", "kind": "cbpe_estimate", "labels", "method", "n",
            "expected_confusion": [[float]] (rows true, columns predicted), "tp_var", "tp_sq",
            "fn_var": [float per label]}``: over rows predicted ``c``, ``tp_var`` sums
            ``p_c (1 - p_c)`` and ``tp_sq`` sums ``p_c**2``; ``fn_var`` sums ``p_c (1 - p_c)``
            over rows predicted otherwise.
        """
        P = self._matrix(proba)
        k = len(self.labels)
        if P.size == 0:
            P = P.reshape(0, k)
        Q = self.calibrate(P)
        if predicted is None:
            pred = P.argmax(axis=1) if len(P) else np.zeros(0, dtype=int)
        else:
            index = {v: i for i, v in enumerate(self.labels)}
            unknown = {str(v) for v in predicted} - set(index)
            if unknown:
                raise ValueError(f"predicted labels outside the model's labels: {sorted(unknown)}")
            pred = np.fromiter((index[str(v)] for v in predicted), dtype=np.int64)
            if len(pred) != len(Q):
                raise ValueError(f"{len(Q)} probability rows but {len(pred)} predictions")
        onehot = np.zeros((len(Q), k))
        onehot[np.arange(len(Q)), pred] = 1.0
        expected = Q.T @ onehot  # [true i, predicted j]
        var = Q * (1 - Q)
        own = (onehot * var).sum(axis=0)
        return {
            "schema": SCHEMA,
            "kind": "cbpe_estimate",
            "labels": list(self.labels),
            "method": self.method,
            "n": len(Q),
            "expected_confusion": expected.tolist(),
            "tp_var": [float(v) for v in own],
            "tp_sq": [float(v) for v in (onehot * Q * Q).sum(axis=0)],
            "fn_var": [float(v) for v in var.sum(axis=0) - own],
        }

    def estimate(
        self, proba: Any, predicted: Sequence[str] | None = None, *, sigmas: float = SIGMAS
    ) -> dict:
        """The estimated metrics of one window of unlabelled predictions.

        Returns:
            :func:`summarize_estimate` of :meth:`estimate_stats`.
        """
        return summarize_estimate(self.estimate_stats(proba, predicted), sigmas=sigmas)

    # -- storage --

    def to_dict(self) -> dict:
        """The fitted calibrator as JSON.

        Returns:
            ``{"schema", "kind": "cbpe", "labels", "method": "isotonic" | "identity",
            "reason", "n_bins", "n_splits", "n_null", "alpha", "min_rows", "seed", "fit":
            {"n", "ece_raw", "ece_isotonic", "p_calibrated"}, "isotonic": [{"x": [float],
            "y": [float]} per label] | None}``.
        """
        return {
            "schema": SCHEMA,
            "kind": "cbpe",
            "labels": list(self.labels),
            "method": self.method,
            "reason": self.reason,
            "n_bins": self.n_bins,
            "n_splits": self.n_splits,
            "n_null": self.n_null,
            "alpha": self.alpha,
            "min_rows": self.min_rows,
            "seed": self.seed,
            "fit": dict(self.fit_report),
            "isotonic": None if self.isotonic is None else [dict(m) for m in self.isotonic],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CBPE:
        """A calibrator from :meth:`to_dict` JSON (no refitting)."""
        if data.get("kind") != "cbpe":
            raise ValueError("not a CBPE calibrator")
        model = cls(
            data["labels"],
            n_bins=int(data.get("n_bins", N_BINS)),
            n_splits=int(data.get("n_splits", 5)),
            n_null=int(data.get("n_null", 500)),
            alpha=float(data.get("alpha", ALPHA)),
            min_rows=int(data.get("min_rows", MIN_CALIBRATION_ROWS)),
            seed=int(data.get("seed", 0)),
        )
        method = data.get("method", "identity")
        if method not in ("isotonic", "identity"):
            raise ValueError(f"unknown calibration method {method!r}")
        maps = data.get("isotonic")
        if method == "isotonic" and (not maps or len(maps) != len(model.labels)):
            raise ValueError("an isotonic calibrator needs one map per label")
        model.method = method
        model.reason = str(data.get("reason", ""))
        model.fit_report = dict(data.get("fit") or {})
        model.isotonic = (
            [{"x": [float(v) for v in m["x"]], "y": [float(v) for v in m["y"]]} for m in maps]
            if method == "isotonic"
            else None
        )
        return model


def _band(value: float | None, var: float | None, sigmas: float) -> dict:
    if value is None or var is None or not math.isfinite(value) or not math.isfinite(var):
        return {"value": _json_float(value), "std": None, "lo": None, "hi": None}
    std = math.sqrt(max(var, 0.0))
    return {
        "value": float(value),
        "std": std,
        "lo": max(0.0, value - sigmas * std),
        "hi": min(1.0, value + sigmas * std),
    }


def _class_parts(s: Mapping) -> dict[str, np.ndarray]:
    E = np.asarray(s["expected_confusion"], dtype=float).reshape(len(s["labels"]), -1)
    tp = np.diagonal(E).copy()
    return {
        "tp": tp,
        "fn": E.sum(axis=1) - tp,  # expected rows of the class predicted as another
        "pred": E.sum(axis=0),  # rows predicted as the class (exact counts)
        "tp_var": np.asarray(s["tp_var"], dtype=float),
        "tp_sq": np.asarray(s["tp_sq"], dtype=float),
        "fn_var": np.asarray(s["fn_var"], dtype=float),
    }


def _recall_f1_var(a: float, b: float, npred: float, var_a: float, var_b: float):
    """Delta-method variances of recall ``a / (a + b)`` and F1 ``2a / (npred + a + b)``."""
    rec = None if a + b <= 0 else (b * b * var_a + a * a * var_b) / (a + b) ** 4
    d = npred + a + b
    f1 = None if d <= 0 else ((2 * (npred + b) / d**2) ** 2 * var_a + (2 * a / d**2) ** 2 * var_b)
    return rec, f1


def summarize_estimate(estimate: Mapping[str, Any], *, sigmas: float = SIGMAS) -> dict:
    """Estimated metrics with their bands from :meth:`CBPE.estimate_stats` (or merged ones).

    Returns:
        ``{"schema", "kind": "cbpe", "labels", "method", "n", "accuracy", "macro_f1",
        "per_class": {label: {"predicted", "expected_support", "precision", "recall",
        "f1"}}, "band": {"sigmas"}, "stats": estimate}``; each metric is ``{"value", "std",
        "lo", "hi"}`` (``macro_f1`` has no std or band; None where undefined, e.g. on no
        rows or for a class never predicted).
    """
    labels = list(estimate["labels"])
    n = int(estimate["n"])
    c = _class_parts(estimate)
    acc = float(c["tp"].sum() / n) if n else None
    acc_var = float(c["tp_var"].sum() / n**2) if n else None
    per_class, f1s = {}, []
    for i, label in enumerate(labels):
        a, b, npred = float(c["tp"][i]), float(c["fn"][i]), float(c["pred"][i])
        var_rec, var_f1 = _recall_f1_var(a, b, npred, float(c["tp_var"][i]), float(c["fn_var"][i]))
        f1 = _ratio(2 * a, npred + a + b)
        if f1 is not None:
            f1s.append(f1)
        per_class[label] = {
            "predicted": int(round(npred)),
            "expected_support": a + b,
            "precision": _band(
                _ratio(a, npred), c["tp_var"][i] / npred**2 if npred > 0 else None, sigmas
            ),
            "recall": _band(_ratio(a, a + b), var_rec, sigmas),
            "f1": _band(f1, var_f1, sigmas),
        }
    return {
        "schema": SCHEMA,
        "kind": "cbpe",
        "labels": labels,
        "method": estimate["method"],
        "n": n,
        "accuracy": _band(acc, acc_var, sigmas),
        "macro_f1": {
            "value": float(np.mean(f1s)) if f1s else None,
            "std": None,
            "lo": None,
            "hi": None,
        },
        "per_class": per_class,
        "band": {"sigmas": float(sigmas)},
        "stats": dict(estimate),
    }


def merge_estimates(estimates: Iterable[Mapping[str, Any]], *, sigmas: float = SIGMAS) -> dict:
    """The estimate of a longer period from stored per-window estimates (of one calibrator).

    Args:
        estimates: :func:`summarize_estimate` results or :meth:`CBPE.estimate_stats` dicts
            of disjoint windows, all with the same labels.
        sigmas: Band half-width in standard deviations.

    Returns:
        :func:`summarize_estimate` of the summed statistics (as if estimated on the union).
    """
    items = [e["stats"] if "stats" in e else e for e in estimates]
    if not items:
        raise ValueError("no estimates to merge")
    labels = list(items[0]["labels"])
    if any(list(e["labels"]) != labels for e in items):
        raise ValueError("estimates with different labels cannot be merged")
    methods = sorted({e["method"] for e in items})
    k = len(labels)
    merged = {
        "schema": SCHEMA,
        "kind": "cbpe_estimate",
        "labels": labels,
        "method": methods[0] if len(methods) == 1 else "+".join(methods),
        "n": sum(int(e["n"]) for e in items),
        "expected_confusion": sum(
            (np.asarray(e["expected_confusion"], dtype=float).reshape(k, k) for e in items),
            np.zeros((k, k)),
        ).tolist(),
    }
    for key in ("tp_var", "tp_sq", "fn_var"):
        total = sum((np.asarray(e[key], dtype=float) for e in items), np.zeros(k))
        merged[key] = [float(v) for v in total]
    return summarize_estimate(merged, sigmas=sigmas)


def _mean_var(total_p: float, total_sq: float, count: float, m: float) -> float | None:
    """Variance of a mean over ``m`` rows drawn uniformly from ``count`` rows, each right
    with its own probability (``total_p`` and ``total_sq`` sum the probabilities and their
    squares): Bernoulli noise plus the spread of the probabilities across rows."""
    if count <= 0 or m <= 0:
        return None
    mean = total_p / count
    spread = max(total_sq / count - mean * mean, 0.0)
    noise = mean - total_sq / count
    fpc = max(0.0, 1 - m / count) if m < count else 0.0
    return (spread * fpc + noise) / min(m, count)


def compare_estimate(
    estimate: Mapping[str, Any], realised: Mapping[str, Any], *, sigmas: float | None = None
) -> dict:
    """An estimate beside the realised figures once labels arrive.

    Args:
        estimate: A :func:`summarize_estimate` result for a window (or merged windows).
        realised: The labelled block of the same window from :func:`summarize`, normally
            ``summary["labeled"]["audit"]`` (the ``all`` block over-weights disputed items,
            so its band comparison is biased).
        sigmas: Band half-width in standard deviations; the estimate's own by default.

    When the realised figures cover fewer rows than the estimate (``m`` audits out of ``n``
    predictions, assumed a uniform sample), the band is widened to the spread of the realised
    metric on ``m`` such rows: exactly for accuracy and precision (Bernoulli noise plus the
    spread of the probabilities, with a finite-population correction), by ``n / m`` times
    the variance for recall and F1 (which leaves out the spread, so a little narrow).

    Returns:
        ``{"sigmas", "n_estimated", "n_realised", "accuracy": cmp, "per_class": {label:
        {"precision": cmp, "recall": cmp, "f1": cmp}}}`` where ``cmp`` is ``{"estimated",
        "realised", "difference" (realised - estimated), "lo", "hi", "inside"}``; None values
        (and ``inside`` None) where either side is missing.
    """
    sig = float(estimate.get("band", {}).get("sigmas", SIGMAS) if sigmas is None else sigmas)
    s = estimate["stats"]
    n = int(estimate["n"])
    m = int(realised.get("n") or 0)
    c = _class_parts(s)

    def cmp(est: float | None, real: float | None, var: float | None) -> dict:
        band = _band(est, var, sig)
        real = _json_float(real)
        inside = None
        if real is not None and band["lo"] is not None:
            inside = bool(band["lo"] - 1e-12 <= real <= band["hi"] + 1e-12)
        return {
            "estimated": band["value"],
            "realised": real,
            "difference": None if real is None or band["value"] is None else real - band["value"],
            "lo": band["lo"],
            "hi": band["hi"],
            "inside": inside,
        }

    def value(block: Mapping | None) -> float | None:
        return None if not block else block.get("value")

    acc_var = _mean_var(float(c["tp"].sum()), float(c["tp_sq"].sum()), n, m) if m else None
    out = {
        "sigmas": sig,
        "n_estimated": n,
        "n_realised": m,
        "accuracy": cmp(estimate["accuracy"]["value"], value(realised.get("accuracy")), acc_var),
        "per_class": {},
    }
    scale = n / m if m else None
    for i, label in enumerate(estimate["labels"]):
        est = estimate["per_class"][label]
        real = (realised.get("per_class") or {}).get(label) or {}
        npred = float(c["pred"][i])
        m_pred = float(real.get("predicted") or 0)
        prec_var = _mean_var(float(c["tp"][i]), float(c["tp_sq"][i]), npred, m_pred)
        rows = {"precision": prec_var}
        for name in ("recall", "f1"):
            std = est[name]["std"]
            rows[name] = None if std is None or scale is None else std * std * max(scale, 1.0)
        out["per_class"][label] = {
            name: cmp(est[name]["value"], value(real.get(name)), rows[name])
            for name in ("precision", "recall", "f1")
        }
    return out
