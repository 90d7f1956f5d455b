"""Drift statistics: a compact summary of the reference data and the comparison of a window to it.

**The reference** is summarised once, when a champion is promoted (its training data, and its
predicted labels and confidences on held-out data), by :func:`build_reference`; apps that log
their own model's predictions can take the first N logged predictions instead
(:func:`reference_from_predictions`). The summary is a JSON-serialisable dict of a few KB per
feature, never the raw rows:

- a numeric feature keeps its quantiles at the percentiles 0, 1, ..., 100 and, in the tails, at
  0.1, 0.2, 0.5, 99.5, 99.8 and 99.9% (the distinct values are its ``edges``), the exact count of
  reference values below and at or below each edge, where the mean of the values between two
  edges lies (see "the sketch" below), the counts of its ``bins`` PSI bins (cut at the
  reference's quantiles j/bins), its mean and standard deviation and its count of missing values
  (NaN and infinities): about 3-4 KB of JSON;
- a categorical feature keeps the counts of its ``max_categories`` most frequent values (values
  are compared as strings) and the count of all the others;
- texts are reduced to two numeric features, the document length in tokens and the share of a
  document's tokens that are out of the champion's vocabulary (build it on texts the vocabulary
  was not built from, or the reference's share is too low); the vocabulary itself is not
  stored, only its size and a digest, so the same vocabulary must be passed to :func:`compare`;
- for the domain classifier, and only when ``features`` is given: a seeded random sample of at
  most ``sample_rows`` (500) rows of the model's own feature matrix (dense or CSR), fewer when
  rows are wide, so that at most ``sample_values`` (20,000) values are stored (non-zero values
  for CSR, each with its column index); values are rounded to 3 significant digits, and the
  current window's rows are rounded the same way before the two are compared. That sample
  dominates the size when present: up to about 150 KB of JSON dense, 300 KB as CSR.

**The sketch** a numeric feature stands for is exact at its edges (the mass below and at each,
so point masses are exact); between two edges its quantile function is ``e0 + (e1 - e0) * t**a``
over the gap's mass (t from 0 to 1), with ``a`` set so that its mean is the reference values'
own mean in that gap: linear where the density is flat, convex in a long right tail. KS and
Wasserstein are computed against it; on normal, log-normal and Poisson data they agree with
the exact two-sample values within 0.002 (KS) and 3% (W1) in the tests.

**The comparison** (:func:`compare`) sorts each numeric column of the current window once
(numpy's SIMD sort of 1M float32 values took 5-15 ms here, one ``np.searchsorted`` pass of
them into 10 edges 37-47 ms) and reads everything off the sorted array with binary searches
of the few reference edges into it:

- **PSI** on the reference's ``bins`` quantile bins, ``sum((p - q) * ln(p / q))`` over bins
  (p current, q reference shares). Bins are left-closed, ``[c_j, c_j+1)``, and the outer ones are
  open, so values outside the reference's range land in them. Ties: an interior quantile value
  that holds at least half a bin's share of the reference (1 / (2 * bins)) is a point mass and
  gets a bin of its own, ``[v, v]``; a constant feature therefore has three bins (below, equal,
  above). Without ties the bin count is exactly ``bins``; with them it can differ. When either
  side has missing values they form one more bin. An empty bin's share is replaced by
  ``EPS = 1e-4`` (on either side, no renormalising) so the logarithm stays finite.
- **Kolmogorov-Smirnov** against the sketch: the reference's empirical CDF is approximated by
  the sketch's (exact at the stored quantiles, interpolated between them). The statistic is the
  largest gap between it and the window's empirical CDF, evaluated at the reference's edges
  (both sides) and at up to 4,096 of the window's order statistics (all of them for windows of
  up to 4,096 rows); between those points the gap can exceed the one found by at most the
  window's mass between two of them (<= 1 / 4,096 of the window). The p-value is the asymptotic
  Kolmogorov one with Stephens' small-sample correction and the effective size
  ``n m / (n + m)``; for discrete features it is conservative.
- **Normed Wasserstein**: Wasserstein-1 between the sketch and the window, ``integral over u of
  |F^-1(u) - G^-1(u)|`` by the midpoint rule on up to 4,096 levels (the window's exact quantile
  function when it has at most 4,096 rows), divided by the reference's standard deviation as
  Evidently's "normed" Wasserstein is. A constant reference feature has no spread: its W1 is
  reported in the feature's own units.
- **Categorical values**: PSI over the reference's categories plus one bucket for every other
  value (the reference's rarest ones beyond ``max_categories``, and values never seen: unseen
  categories land there, with a reference share of 0 when the reference kept all its values),
  gated by Pearson's chi-square test of homogeneity on the 2 x K table of counts.
- **Predictions** (every project): the predicted-label distribution as a categorical feature,
  the confidence (the top class probability) as a numeric one.
- **Texts**: document length and out-of-vocabulary share as numeric features, and the
  **domain classifier**: a logistic regression told apart the reference sample from an equal-
  size seeded sample of the window on the model's own features, its ROC AUC cross-validated
  (5 stratified folds, out-of-fold scores); no drift gives about 0.5. Its p-value is the
  Mann-Whitney normal approximation of an AUC under no difference.

**Severity: effect sizes first, p-values only gate small samples.** Each result has an effect
statistic and two cut-offs, watch and drift (:class:`Thresholds`: PSI 0.1 / 0.25, KS 0.1 / 0.2,
normed Wasserstein 0.1 / 0.2, domain AUC 0.525 / 0.55). Its severity is ``drift`` when the
statistic reaches the drift cut-off, ``watch`` when it reaches the watch one, else ``none`` -
but only when its test rejects "no drift" at ``alpha / number of results in the comparison``
(Bonferroni, family-wise ``alpha = 0.05``); otherwise ``none``. PSI and categorical PSI are
gated by Pearson's chi-square test on the binned counts, KS and Wasserstein by the KS test, the
domain AUC by the Mann-Whitney one. At large N every test rejects and the cut-offs decide, so a
negligible shift at 1M rows stays ``none``; at small N the noise of the effect estimates is held
back by the test. A feature's severity is the worst of its methods', the window's the worst of
all. An alert needs ``drift`` in ``k`` consecutive windows (:func:`persistent_alerts`, k = 2).
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import chdtrc, kolmogi, kolmogorov, ndtr, ndtri

FORMAT = "corrigo.drift/1"
SEVERITIES = ("none", "watch", "drift")
METHODS = ("psi", "ks", "wasserstein")

#: Share that replaces an empty bin's in PSI, so ``ln(p / q)`` stays finite.
EPS = 1e-4
#: The reference's quantile levels: the percentiles, and finer in the tails.
_TAILS = np.array([0.001, 0.002, 0.005])
_LEVELS = np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), _TAILS, 1.0 - _TAILS]))
#: Order statistics of the window at which KS and Wasserstein are evaluated (at most).
GRID = 4096
#: Domain classifier sample: at most this many rows, and at most this many stored numbers.
SAMPLE_ROWS = 500
SAMPLE_VALUES = 20_000
SAMPLE_DIGITS = 3
MAX_CATEGORIES = 100
#: Bounds of a gap's mean position (see _gap_shapes): the shape exponent stays within 1e3.
_R_MIN = 1e-3
#: scikit-learn's default token pattern, lower-cased text.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"

TEXT_LENGTH = "text:length"
TEXT_OOV = "text:oov_share"
PRED_LABEL = "prediction:label"
PRED_CONFIDENCE = "prediction:confidence"
DOMAIN = "domain_classifier"


@dataclass(frozen=True)
class Thresholds:
    """Effect cut-offs ``(watch, drift)`` per method and the family-wise test level."""

    psi: tuple[float, float] = (0.1, 0.25)
    ks: tuple[float, float] = (0.1, 0.2)
    wasserstein: tuple[float, float] = (0.1, 0.2)
    domain_auc: tuple[float, float] = (0.525, 0.55)
    alpha: float = 0.05

    @classmethod
    def of(cls, value: Thresholds | Mapping[str, Any] | None) -> Thresholds:
        """Thresholds from themselves, a (JSON) mapping of some of the fields, or None."""
        if value is None:
            return cls()
        if isinstance(value, Thresholds):
            return value
        known = set(cls.__dataclass_fields__)
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown thresholds {sorted(unknown)}; expected {sorted(known)}")
        args = {
            k: (float(v) if k == "alpha" else tuple(float(x) for x in v)) for k, v in value.items()
        }
        return cls(**args)

    def __post_init__(self):
        for method in ("psi", "ks", "wasserstein", "domain_auc"):
            cuts = getattr(self, method)
            if len(cuts) != 2 or not cuts[0] <= cuts[1]:
                raise ValueError(f"{method} needs (watch, drift) cut-offs, watch <= drift: {cuts}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def cuts(self, method: str) -> tuple[float, float]:
        return {
            "psi": self.psi,
            "ks": self.ks,
            "wasserstein": self.wasserstein,
            "domain_auc": self.domain_auc,
        }[method]


# --- numeric sketches --------------------------------------------------------------------------


def _dtype(values: np.ndarray) -> np.dtype:
    """float32 stays float32 (half the memory, and JSON edges in its short form); else float64."""
    return np.dtype(np.float32) if values.dtype == np.float32 else np.dtype(np.float64)


def _sorted_finite(column: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """The column's finite values, sorted, and how many were missing (NaN or infinite)."""
    values = np.array(column, dtype=dtype, copy=True)
    values.sort()
    # NaN sorts after +inf, so the finite values are one slice.
    lo = int(np.searchsorted(values, -np.inf, side="right"))
    hi = int(np.searchsorted(values, np.inf, side="left"))
    return values[lo:hi], len(values) - (hi - lo)


def _quantiles(s: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of sorted ``s`` by linear interpolation (numpy's default), rounded to s's dtype."""
    h = levels * (len(s) - 1)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, len(s) - 1)
    a, b = s[lo].astype(np.float64), s[hi].astype(np.float64)
    # A value between two floats of s's dtype rounds to one of them, so it stays in range.
    return (a + (h - lo) * (b - a)).astype(s.dtype)


def _json_floats(values: np.ndarray) -> list[float]:
    """Python floats; float32 values in their shortest form (exact again once cast back)."""
    if values.dtype == np.float32:
        return [float(str(v)) for v in values]
    return [float(v) for v in values]


def _psi_cuts(s: np.ndarray, edges: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Counts of sorted ``s`` in the PSI bins: below each edge, and at-or-below each atom."""
    left = np.searchsorted(s, edges, side="left")
    right = np.searchsorted(s, edges, side="right")
    keep = np.column_stack([np.ones(len(edges), dtype=bool), atoms]).ravel()
    cum = np.column_stack([left, right]).ravel()[keep]
    return np.diff(np.concatenate([[0], cum, [len(s)]]))


def _gap_shapes(s: np.ndarray, edges: np.ndarray, below: np.ndarray, at: np.ndarray) -> list:
    """Where the mean of the values strictly between two edges lies, as a share of the gap.

    The sketch's quantile function over the gap ``(e0, e1)`` is ``e0 + (e1 - e0) * t ** a``
    (t from 0 to 1 over the gap's mass) with ``a = 1 / r - 1``, so its mean is the values' own:
    linear (r = 0.5) where the density is flat, convex in a long right tail. Rounded to 4 decimals.
    """
    if len(edges) < 2:
        return []
    # Centred first, so the differences of the running sum lose little precision.
    centre = float(s[len(s) // 2])
    cum = np.concatenate([[0.0], np.cumsum(s - np.float64(centre), dtype=np.float64)])
    lo, hi = at[:-1], below[1:]
    count = hi - lo
    e0, e1 = edges[:-1].astype(np.float64), edges[1:].astype(np.float64)
    mean = centre + np.divide(cum[hi] - cum[lo], count, out=(e0 + e1) / 2 - centre, where=count > 0)
    r = np.clip((mean - e0) / (e1 - e0), _R_MIN, 1 - _R_MIN)
    return [round(float(v), 4) for v in r]


def _numeric_sketch(name: str, column: np.ndarray, bins: int) -> dict:
    dtype = _dtype(column)
    s, missing = _sorted_finite(column, dtype)
    n = len(s)
    sketch: dict[str, Any] = {
        "feature": name,
        "dtype": dtype.name,
        "n": n,
        "missing": missing,
        "bins": bins,
    }
    if n == 0:
        sketch.update(mean=None, std=0.0, iqr=0.0, edges=[], below=[], at=[])
        sketch.update(shape=[], psi_edges=[], psi_atoms=[], psi_counts=[0])
        return sketch
    edges = np.unique(_quantiles(s, _LEVELS))
    interior = np.unique(_quantiles(s, np.arange(1, bins) / bins))
    mass = np.searchsorted(s, interior, "right") - np.searchsorted(s, interior, "left")
    atoms = mass * 2 * bins >= n
    q25, q75 = _quantiles(s, np.array([0.25, 0.75]))
    below = np.searchsorted(s, edges, "left")
    at = np.searchsorted(s, edges, "right")
    sketch.update(
        mean=float(s.mean(dtype=np.float64)),
        std=float(s.std(dtype=np.float64)),
        iqr=float(q75) - float(q25),
        edges=_json_floats(edges),
        below=below.tolist(),
        at=at.tolist(),
        shape=_gap_shapes(s, edges, below, at),
        psi_edges=_json_floats(interior),
        psi_atoms=atoms.tolist(),
        psi_counts=_psi_cuts(s, interior, atoms).tolist(),
    )
    return sketch


# --- categorical sketches ----------------------------------------------------------------------


def _categorical_sketch(name: str, values: Iterable, max_categories: int) -> dict:
    counts = Counter(str(v) for v in values)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:max_categories]
    return {
        "feature": name,
        "n": int(sum(counts.values())),
        "categories": [k for k, _ in kept],
        "counts": [int(c) for _, c in kept],
        "other": int(sum(c for _, c in ranked[max_categories:])),
    }


# --- texts -------------------------------------------------------------------------------------


def vocabulary_digest(vocabulary: Iterable[str]) -> str:
    """A short digest of a vocabulary, to check that compare gets the reference's one."""
    joined = "\n".join(sorted(str(t) for t in vocabulary))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def text_features(
    texts: Sequence[str], vocabulary: Iterable[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Per document: length in tokens and out-of-vocabulary share; and the pooled OOV rate.

    Tokens are ``TOKEN_PATTERN`` matches of the lower-cased text. A document without tokens has
    no OOV share (NaN, counted as missing).
    """
    token = re.compile(TOKEN_PATTERN)
    vocab = None if vocabulary is None else {str(t) for t in vocabulary}
    lengths = np.empty(len(texts), dtype=np.float64)
    oov = np.full(len(texts), np.nan) if vocab is not None else None
    total = unknown = 0
    for i, text in enumerate(texts):
        tokens = token.findall(str(text).lower())
        lengths[i] = len(tokens)
        if vocab is not None and tokens:
            miss = sum(t not in vocab for t in tokens)
            oov[i] = miss / len(tokens)
            total += len(tokens)
            unknown += miss
    rate = (unknown / total if total else 0.0) if vocab is not None else None
    return lengths, oov, rate


# --- the domain classifier's sample ------------------------------------------------------------


def _round_sig(values: np.ndarray, digits: int = SAMPLE_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant digits with exact powers of ten (short JSON reprs)."""
    a = np.asarray(values, dtype=np.float64)
    out = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    nz = out != 0
    if not nz.any():
        return out
    exp = np.floor(np.log10(np.abs(out[nz]))).astype(np.int64) - (digits - 1)
    x = out[nz]
    small = exp < 0
    scale = np.power(10.0, np.abs(exp))
    x = np.where(small, np.round(x * scale) / scale, np.round(x / scale) * scale)
    out[nz] = x
    return out


def _sample_rows(features: Any, rows: int, seed: int) -> Any:
    """A seeded random subset of ``rows`` rows (in their original order), rounded."""
    n = features.shape[0]
    take = np.sort(np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False))
    if sparse.issparse(features):
        sub = sparse.csr_matrix(features)[take].astype(np.float64)
        sub.data = _round_sig(sub.data)
        sub.eliminate_zeros()
        return sub
    return _round_sig(np.asarray(features, dtype=np.float64)[take])


def _sample_size(features: Any, sample_rows: int, sample_values: int) -> int:
    n, d = features.shape
    width = features.nnz / max(n, 1) if sparse.issparse(features) else d
    return int(max(1, min(sample_rows, n, sample_values // max(math.ceil(width), 1))))


def _encode_sample(sample: Any) -> dict:
    if sparse.issparse(sample):
        return {
            "format": "csr",
            "shape": list(sample.shape),
            "data": sample.data.tolist(),
            "indices": sample.indices.tolist(),
            "indptr": sample.indptr.tolist(),
        }
    return {"format": "dense", "shape": list(sample.shape), "rows": sample.tolist()}


def _decode_sample(stored: Mapping) -> Any:
    shape = tuple(stored["shape"])
    if stored["format"] == "csr":
        return sparse.csr_matrix(
            (
                np.asarray(stored["data"], dtype=np.float64),
                np.asarray(stored["indices"], dtype=np.int64),
                np.asarray(stored["indptr"], dtype=np.int64),
            ),
            shape=shape,
        )
    return np.asarray(stored["rows"], dtype=np.float64).reshape(shape)


def domain_classifier_auc(reference: Any, current: Any, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a classifier telling ``current`` rows from ``reference`` ones.

    A logistic regression (after max-abs scaling for sparse input, standard scaling for dense)
    is fitted in ``folds`` stratified folds; the AUC is of the pooled out-of-fold scores. About
    0.5 when the two come from the same distribution. Both matrices must have the same columns.
    """
    # Imported here: the rest of the module needs numpy and scipy only.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    if reference.shape[1] != current.shape[1]:
        raise ValueError(
            f"the reference sample has {reference.shape[1]} columns, the window {current.shape[1]}"
        )
    n_ref, n_cur = reference.shape[0], current.shape[0]
    folds = min(folds, n_ref, n_cur)
    if folds < 2:
        raise ValueError("the domain classifier needs at least 2 rows on each side")
    if sparse.issparse(reference) or sparse.issparse(current):
        X = sparse.vstack([sparse.csr_matrix(reference), sparse.csr_matrix(current)]).tocsr()
        scaler = MaxAbsScaler()
    else:
        X = np.nan_to_num(np.vstack([np.asarray(reference), np.asarray(current)]).astype(float))
        scaler = StandardScaler()
    y = np.r_[np.zeros(n_ref, dtype=int), np.ones(n_cur, dtype=int)]
    model = make_pipeline(scaler, LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # An unconverged fit still ranks rows; the AUC does not need the exact optimum.
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_predict(model, X, y, cv=cv, method="decision_function")
    return float(roc_auc_score(y, scores))


# --- building the reference --------------------------------------------------------------------


def _as_matrix(X: Any) -> np.ndarray:
    a = np.asarray(X)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (rows, features) array, got {a.ndim} dimensions")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"numeric features must be numbers, got dtype {a.dtype}")
    return a


def _names(X: Any, given: Sequence[str] | None, d: int) -> list[str]:
    if given is not None:
        names = [str(v) for v in given]
    elif hasattr(X, "columns"):
        names = [str(v) for v in X.columns]
    else:
        names = [f"x{j}" for j in range(d)]
    if len(names) != d or len(set(names)) != d:
        raise ValueError(f"expected {d} distinct feature names, got {names}")
    return names


def build_reference(
    X_numeric: Any = None,
    categorical: Mapping[str, Sequence] | None = None,
    texts: Sequence[str] | None = None,
    predicted_labels: Sequence | None = None,
    confidences: Sequence[float] | None = None,
    bins: int = 10,
    seed: int = 0,
    *,
    feature_names: Sequence[str] | None = None,
    vocabulary: Iterable[str] | None = None,
    features: Any = None,
    sample_rows: int = SAMPLE_ROWS,
    sample_values: int = SAMPLE_VALUES,
    max_categories: int = MAX_CATEGORIES,
    source: str = "training data",
) -> dict:
    """Summarise the reference data once, as a compact JSON-serialisable dict.

    Args:
        X_numeric: ``(rows, features)`` numbers (NaN and infinities count as missing).
        categorical: Feature name -> one value per row (compared as strings).
        texts: Documents; summarised as length and, with ``vocabulary``, OOV share.
        predicted_labels: The model's predicted label per row (held-out data).
        confidences: The model's confidence (top class probability) per row.
        bins: PSI bins per numeric feature (quantile bins of the reference).
        seed: Seed of the domain classifier's row sample.
        feature_names: Names of ``X_numeric``'s columns (default its ``columns`` or x0, x1...).
        vocabulary: The champion's vocabulary (tokens), for the OOV share.
        features: The model's own feature matrix (dense or scipy sparse), one row per
            reference row, for the domain classifier; a capped sample of it is stored.
        sample_rows, sample_values: Caps of that sample (rows, stored numbers).
        max_categories: Categories kept per categorical feature (the rest counted together).
        source: What the reference was built from, for display.

    Returns:
        ``{"format", "source", "bins", "seed", "numeric": [sketch], "categorical": [sketch],
        "text": {...} | None, "predictions": {"label", "confidence"} | None,
        "sample": {...} | None}``; see the module docstring.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    reference: dict[str, Any] = {
        "format": FORMAT,
        "source": source,
        "bins": int(bins),
        "seed": int(seed),
        "numeric": [],
        "categorical": [],
        "text": None,
        "predictions": None,
        "sample": None,
    }
    if X_numeric is not None:
        X = _as_matrix(X_numeric)
        names = _names(X_numeric, feature_names, X.shape[1])
        reference["numeric"] = [_numeric_sketch(names[j], X[:, j], bins) for j in range(X.shape[1])]
    if categorical is not None:
        reference["categorical"] = [
            _categorical_sketch(str(name), categorical[name], max_categories)
            for name in categorical
        ]
    if texts is not None:
        lengths, oov, rate = text_features(texts, vocabulary)
        reference["text"] = {
            "n": len(lengths),
            "vocabulary_size": None if vocabulary is None else len(set(vocabulary)),
            "vocabulary_digest": None if vocabulary is None else vocabulary_digest(vocabulary),
            "oov_rate": rate,
            "length": _numeric_sketch(TEXT_LENGTH, lengths, bins),
            "oov_share": None if oov is None else _numeric_sketch(TEXT_OOV, oov, bins),
        }
    if predicted_labels is not None or confidences is not None:
        reference["predictions"] = {
            "label": None
            if predicted_labels is None
            else _categorical_sketch(PRED_LABEL, predicted_labels, max_categories),
            "confidence": None
            if confidences is None
            else _numeric_sketch(PRED_CONFIDENCE, np.asarray(confidences, dtype=float), bins),
        }
    if features is not None:
        features = features if sparse.issparse(features) else _as_matrix(features)
        rows = _sample_size(features, sample_rows, sample_values)
        sample = _encode_sample(_sample_rows(features, rows, seed))
        sample["n_from"] = int(features.shape[0])
        reference["sample"] = sample
    return reference


def confidences_from_probabilities(probabilities: Iterable[Any]) -> np.ndarray:
    """The top class probability of each logged prediction (NaN when none was logged).

    Each item is a ``{label: probability}`` mapping, a sequence of probabilities, or None.
    """
    out = []
    for p in probabilities:
        values = list(p.values()) if isinstance(p, Mapping) else (list(p) if p is not None else [])
        out.append(max(float(v) for v in values) if values else math.nan)
    return np.asarray(out, dtype=float)


def reference_from_predictions(
    labels: Sequence,
    probabilities: Sequence[Any] | None = None,
    first: int = 1000,
    bins: int = 10,
    seed: int = 0,
) -> dict:
    """A reference from the first ``first`` logged predictions, for apps with their own model.

    ``labels`` and ``probabilities`` are in logging order; only prediction drift (labels and,
    with probabilities, confidence) can be compared against it. Windows compared to it should
    start after those predictions.
    """
    labels = list(labels)[:first]
    conf = None
    if probabilities is not None:
        conf = confidences_from_probabilities(list(probabilities)[:first])
    return build_reference(
        predicted_labels=labels,
        confidences=conf,
        bins=bins,
        seed=seed,
        source=f"first {len(labels)} logged predictions",
    )


# --- comparing ---------------------------------------------------------------------------------


def psi(current: np.ndarray, reference: np.ndarray, eps: float = EPS) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    p = np.asarray(current, dtype=np.float64)
    q = np.asarray(reference, dtype=np.float64)
    p = np.maximum(p / p.sum(), eps) if p.sum() > 0 else np.full(len(p), eps)
    q = np.maximum(q / q.sum(), eps) if q.sum() > 0 else np.full(len(q), eps)
    return float(np.sum((p - q) * np.log(p / q)))


def chi2_homogeneity(current: np.ndarray, reference: np.ndarray) -> tuple[float, int, float]:
    """Pearson's chi-square test of one distribution over bins: (statistic, dof, p-value)."""
    table = np.vstack([np.asarray(current, float), np.asarray(reference, float)])
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    total = table.sum()
    if dof < 1 or (table.sum(axis=1) == 0).any():
        return 0.0, max(dof, 0), 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, dof, float(chdtrc(dof, stat))


def _ks_p(d: float, n: int, m: int) -> float:
    ne = n * m / (n + m)
    root = math.sqrt(ne)
    return float(min(1.0, max(0.0, kolmogorov((root + 0.12 + 0.11 / root) * d))))


def _ks_critical(alpha: float, n: int, m: int) -> float:
    """The KS statistic at which the p-value is ``alpha``."""
    root = math.sqrt(n * m / (n + m))
    return float(kolmogi(alpha) / (root + 0.12 + 0.11 / root))


def _numeric_stats(ref: Mapping, s: np.ndarray, missing: int, methods: Sequence[str]) -> list:
    """Raw results for one numeric feature: sorted finite window values ``s``."""
    name = ref["feature"]
    dtype = np.dtype(ref["dtype"])
    n, m = int(ref["n"]), len(s)
    base = {
        "feature": name,
        "n_reference": n + int(ref["missing"]),
        "n_current": m + missing,
        "reference_mean": ref["mean"],
        "current_mean": float(s.mean(dtype=np.float64)) if m else None,
    }
    out = []
    if "psi" in methods:
        ref_counts = np.asarray(ref["psi_counts"], dtype=np.float64)
        if n:
            cur_counts = _psi_cuts(
                s, np.asarray(ref["psi_edges"], dtype=dtype), np.asarray(ref["psi_atoms"], bool)
            )
        else:  # the reference had no finite value: one bin for every value.
            cur_counts = np.array([m])
        if ref["missing"] or missing:
            ref_counts = np.append(ref_counts, ref["missing"])
            cur_counts = np.append(cur_counts, missing)
        _stat, _dof, p = chi2_homogeneity(cur_counts, ref_counts)
        out.append(
            dict(
                base,
                method="psi",
                statistic=psi(cur_counts, ref_counts) if cur_counts.sum() else 0.0,
                test="chi2",
                p_value=p,
                bins=len(ref_counts),
                missing_reference=int(ref["missing"]),
                missing_current=missing,
            )
        )
    if not ({"ks", "wasserstein"} & set(methods)):
        return out
    if n == 0 or m == 0:
        # Nothing to compare the shape of; PSI's missing bin reports the change.
        for method in ("ks", "wasserstein"):
            if method in methods:
                out.append(dict(base, method=method, statistic=0.0, test="ks", p_value=1.0))
        return out
    sketch = _Sketch(ref, dtype)
    # The window's order statistics on a grid (all of them for small windows).
    k = min(m, GRID)
    idx = np.arange(m) if k == m else np.floor((np.arange(k) + 0.5) * (m / k)).astype(np.int64)
    x = s[idx]
    d = sketch.ks(s, x)
    p = _ks_p(d, n, m)
    if "ks" in methods:
        out.append(dict(base, method="ks", statistic=d, test="ks", p_value=p, _sizes=(n, m)))
    if "wasserstein" in methods:
        u = (np.arange(k) + 0.5) / k
        w1 = float(np.mean(np.abs(sketch.quantile(u) - x.astype(np.float64))))
        std = float(ref["std"])
        out.append(
            dict(
                base,
                method="wasserstein",
                statistic=w1 / std if std > 0 else w1,
                test="ks",
                p_value=p,
                wasserstein=w1,
                scale=std if std > 0 else 1.0,
            )
        )
    return out


class _Sketch:
    """The reference distribution a numeric sketch stands for.

    Exact at its edges (the mass below and at each edge); between two edges its quantile
    function is ``e0 + (e1 - e0) * t ** a`` over the gap's mass (see :func:`_gap_shapes`).
    """

    def __init__(self, ref: Mapping, dtype: np.dtype):
        n = int(ref["n"])
        self.edges = np.asarray(ref["edges"], dtype=dtype)
        self.e = self.edges.astype(np.float64)
        self.Fb = np.asarray(ref["below"], dtype=np.float64) / n
        self.Fa = np.asarray(ref["at"], dtype=np.float64) / n
        r = np.asarray(ref["shape"], dtype=np.float64)
        self.a = 1.0 / np.clip(r, _R_MIN, 1 - _R_MIN) - 1.0

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """The sketch's quantile function at levels ``u`` in (0, 1)."""
        e, Fb, Fa = self.e, self.Fb, self.Fa
        last = len(e) - 1
        i = np.searchsorted(Fa, u, "right") - 1  # Fa[i] <= u < Fa[i + 1]
        out = e[np.clip(i + 1, 0, last)]  # in the point mass of edge i + 1
        if last == 0:
            return out
        j = np.clip(i, 0, last - 1)
        in_gap = (i >= 0) & (i < last) & (u < Fb[np.minimum(j + 1, last)])
        mass = Fb[j + 1] - Fa[j]
        t = np.divide(u - Fa[j], mass, out=np.zeros_like(u), where=mass > 0)
        gap = e[j] + (e[j + 1] - e[j]) * np.power(np.clip(t, 0.0, 1.0), self.a[j])
        return np.where(in_gap, gap, out)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """The sketch's CDF at points ``x`` that are not edges."""
        e, Fb, Fa = self.e, self.Fb, self.Fa
        last = len(e) - 1
        i = np.searchsorted(self.edges, x, "right") - 1  # e[i] < x < e[i + 1]
        out = np.where(i < 0, 0.0, 1.0)
        if last == 0:
            return out
        j = np.clip(i, 0, last - 1)
        t = np.clip((x.astype(np.float64) - e[j]) / (e[j + 1] - e[j]), 0.0, 1.0)
        gap = Fa[j] + (Fb[j + 1] - Fa[j]) * np.power(t, 1.0 / self.a[j])
        return np.where((i >= 0) & (i < last), gap, out)

    def ks(self, s: np.ndarray, x: np.ndarray) -> float:
        """sup |G - F| over the edges (both sides) and the points ``x`` of sorted window ``s``."""
        m = len(s)
        Gb = np.searchsorted(s, self.edges, "left") / m
        Ga = np.searchsorted(s, self.edges, "right") / m
        d = max(float(np.max(np.abs(Gb - self.Fb))), float(np.max(np.abs(Ga - self.Fa))))
        x = x[~np.isin(x, self.edges)]
        if len(x) == 0:
            return d
        F = self.cdf(x)
        Gxb = np.searchsorted(s, x, "left") / m
        Gxa = np.searchsorted(s, x, "right") / m
        return max(d, float(np.max(np.abs(Gxa - F))), float(np.max(np.abs(Gxb - F))))


def _categorical_stats(ref: Mapping, values: Iterable) -> dict:
    counts = Counter(str(v) for v in values)
    categories = list(ref["categories"])
    cur = [counts.pop(c, 0) for c in categories]
    cur.append(sum(counts.values()))
    ref_counts = np.asarray([*ref["counts"], ref["other"]], dtype=np.float64)
    cur_counts = np.asarray(cur, dtype=np.float64)
    if ref_counts[-1] == 0 and cur_counts[-1] == 0:
        ref_counts, cur_counts = ref_counts[:-1], cur_counts[:-1]
    stat, _dof, p = chi2_homogeneity(cur_counts, ref_counts)
    unseen = sorted(counts, key=lambda c: (-counts[c], c))
    return {
        "feature": ref["feature"],
        "method": "psi",
        "statistic": psi(cur_counts, ref_counts) if cur_counts.sum() else 0.0,
        "test": "chi2",
        "p_value": p,
        "chi2": stat,
        "n_reference": int(ref["n"]),
        "n_current": int(cur_counts.sum()),
        "other_share": float(cur[-1] / cur_counts.sum()) if cur_counts.sum() else 0.0,
        # A few of the window's values the reference did not keep, most frequent first.
        "unseen": unseen[:10],
    }


def _window_matrix(X: Any, ref_numeric: list) -> np.ndarray:
    X = _as_matrix(X)
    if X.shape[1] != len(ref_numeric):
        raise ValueError(
            f"the window has {X.shape[1]} numeric features, the reference {len(ref_numeric)}"
        )
    return X


def _severity(statistic: float, cuts: tuple[float, float], p: float, alpha: float) -> str:
    if not (p < alpha) or not math.isfinite(statistic):
        return "none"
    if statistic >= cuts[1]:
        return "drift"
    if statistic >= cuts[0]:
        return "watch"
    return "none"


def worst(severities: Iterable[str]) -> str:
    """The most severe of ``severities`` (``none`` for none)."""
    return SEVERITIES[max((SEVERITIES.index(s) for s in severities), default=0)]


def compare(
    reference: Mapping,
    X_current: Any = None,
    categorical: Mapping[str, Sequence] | None = None,
    texts: Sequence[str] | None = None,
    predicted_labels: Sequence | None = None,
    confidences: Sequence[float] | None = None,
    *,
    vocabulary: Iterable[str] | None = None,
    features: Any = None,
    methods: Sequence[str] = METHODS,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict:
    """Compare one window of current data to a reference from :func:`build_reference`.

    Every part given is compared with the reference's part of the same kind (numeric columns in
    the reference's order, categorical features by name); parts the window lacks are skipped.

    Args:
        reference: The reference summary (as built, or after a JSON round trip).
        X_current, categorical, texts, predicted_labels, confidences: The window, as for
            :func:`build_reference`.
        vocabulary: The champion's vocabulary, required with ``texts`` when the reference has
            an OOV share (it must be the same vocabulary).
        features: The window's feature matrix for the domain classifier (same columns as the
            reference's sample).
        methods: Numeric methods to run, among ``"psi", "ks", "wasserstein"``.
        thresholds: :class:`Thresholds` or a mapping of some of its fields.
        seed: Seed of the window's sample and folds for the domain classifier.

    Returns:
        ``{"severity", "results": [result], "features": {feature: severity}, "tests",
        "alpha", "thresholds"}``; each result is ``{"feature", "method", "statistic",
        "threshold", "severity", "watch_threshold", "test", "p_value", "alpha",
        "n_reference", "n_current", ...}`` (``threshold`` is the drift cut-off of the effect
        statistic; see the module docstring for the rule).
    """
    if reference.get("format") != FORMAT:
        raise ValueError(f"not a drift reference of format {FORMAT}")
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; expected some of {METHODS}")
    limits = Thresholds.of(thresholds)
    raw: list[dict] = []
    if X_current is not None:
        if not reference["numeric"]:
            raise ValueError("the reference has no numeric features")
        X = _window_matrix(X_current, reference["numeric"])
        for j, ref in enumerate(reference["numeric"]):
            s, missing = _sorted_finite(X[:, j], np.dtype(ref["dtype"]))
            raw.extend(_numeric_stats(ref, s, missing, methods))
    if categorical is not None:
        by_name = {r["feature"]: r for r in reference["categorical"]}
        for name in categorical:
            if str(name) not in by_name:
                raise ValueError(f"the reference has no categorical feature {name!r}")
            raw.append(_categorical_stats(by_name[str(name)], categorical[name]))
    if texts is not None:
        raw.extend(_text_stats(reference, texts, vocabulary, methods))
    if predicted_labels is not None or confidences is not None:
        preds = reference.get("predictions") or {}
        if predicted_labels is not None:
            if not preds.get("label"):
                raise ValueError("the reference has no predicted labels")
            raw.append(_categorical_stats(preds["label"], predicted_labels))
        if confidences is not None:
            if not preds.get("confidence"):
                raise ValueError("the reference has no confidences")
            conf = np.asarray(confidences, dtype=float)
            s, missing = _sorted_finite(conf, np.dtype(preds["confidence"]["dtype"]))
            raw.extend(_numeric_stats(preds["confidence"], s, missing, methods))
    if features is not None:
        raw.append(_domain_stats(reference, features, seed))
    return _finish(raw, limits)


def _text_stats(
    reference: Mapping, texts: Sequence[str], vocabulary: Iterable[str] | None, methods
) -> list:
    ref = reference.get("text")
    if not ref:
        raise ValueError("the reference has no texts")
    if ref["oov_share"] is not None:
        if vocabulary is None:
            raise ValueError("the reference has an OOV share: pass the champion's vocabulary")
        if vocabulary_digest(vocabulary) != ref["vocabulary_digest"]:
            raise ValueError("this vocabulary is not the one the reference was built with")
    lengths, oov, rate = text_features(texts, vocabulary if ref["oov_share"] else None)
    out = []
    s, missing = _sorted_finite(lengths, np.dtype(ref["length"]["dtype"]))
    out.extend(_numeric_stats(ref["length"], s, missing, methods))
    if ref["oov_share"] is not None:
        s, missing = _sorted_finite(oov, np.dtype(ref["oov_share"]["dtype"]))
        for result in _numeric_stats(ref["oov_share"], s, missing, methods):
            result.update(reference_oov_rate=ref["oov_rate"], current_oov_rate=rate)
            out.append(result)
    return out


def _domain_stats(reference: Mapping, features: Any, seed: int) -> dict:
    stored = reference.get("sample")
    if not stored:
        raise ValueError("the reference has no feature sample for the domain classifier")
    ref_rows = _decode_sample(stored)
    features = features if sparse.issparse(features) else _as_matrix(features)
    if features.shape[1] != ref_rows.shape[1]:
        raise ValueError(
            f"the window has {features.shape[1]} features, the reference sample {ref_rows.shape[1]}"
        )
    cur_rows = _sample_rows(features, ref_rows.shape[0], seed)
    n1, n2 = ref_rows.shape[0], cur_rows.shape[0]
    auc = domain_classifier_auc(ref_rows, cur_rows, seed=seed)
    se = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    return {
        "feature": DOMAIN,
        "method": "domain_auc",
        "statistic": auc,
        "test": "mann_whitney",
        "p_value": float(ndtr(-(auc - 0.5) / se)),
        "n_reference": n1,
        "n_current": n2,
        "se": se,
    }


def _finish(raw: list[dict], limits: Thresholds) -> dict:
    tests = len(raw)
    alpha = limits.alpha / tests if tests else limits.alpha
    results = []
    for r in raw:
        method = r["method"]
        cuts = limits.cuts(method)
        statistic = float(r["statistic"])
        result = {
            "feature": r["feature"],
            "method": method,
            "statistic": statistic,
            "threshold": cuts[1],
            "severity": _severity(statistic, cuts, r["p_value"], alpha),
            "watch_threshold": cuts[0],
            "alpha": alpha,
        }
        result.update({k: v for k, v in r.items() if k not in result})
        sizes = result.pop("_sizes", None)
        if sizes is not None:
            result["critical_value"] = _ks_critical(alpha, *sizes)
        elif method == "domain_auc":
            result["critical_value"] = 0.5 + float(ndtri(1 - alpha)) * r["se"]
        results.append(result)
    per_feature: dict[str, str] = {}
    for r in results:
        per_feature[r["feature"]] = worst([per_feature.get(r["feature"], "none"), r["severity"]])
    return {
        "severity": worst(per_feature.values()),
        "results": results,
        "features": per_feature,
        "tests": tests,
        "alpha": limits.alpha,
        "thresholds": limits.to_dict(),
    }


# --- persistence -------------------------------------------------------------------------------


def next_streak(streak: int, severity: str, level: str = "drift") -> int:
    """Consecutive windows at ``level`` or worse, after one more window of ``severity``."""
    return streak + 1 if SEVERITIES.index(severity) >= SEVERITIES.index(level) else 0


def persistent_alerts(severities: Iterable[str], k: int = 2, level: str = "drift") -> list[bool]:
    """Whether to alert at each window: the last ``k`` windows were all at ``level`` or worse.

    An alert holds for as long as the drift persists (every such window is True).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    streak, out = 0, []
    for severity in severities:
        streak = next_streak(streak, severity, level)
        out.append(streak >= k)
    return out
