"""Why an item looks the way it does to the model: the words behind a text suggestion, and the
feature values of a tabular item that are rare in the training data.

- :func:`term_weights` reads a linear text pipeline (hashed n-grams, tf-idf, logistic
  regression: the ``text-logreg`` template) and gives each word of a text its contribution to
  the logit of one label: the word's tf-idf weight in this text times the label's coefficient
  for it. Positive words pushed the model towards the label.
- :func:`percentile` and :func:`unusual_values` place a tabular item's values in the training
  distribution that monitoring's reference summarised (``labeling.drift`` sketches), without
  reading the training rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import murmurhash3_32

from labeling import training

_TEXT_STEPS = ("hash", "seen", "tfidf", "clf")


def term_weights(model: Any, text: str, label: str, top: int = 8) -> dict[str, float]:
    """The words of `text` that pushed the model most towards `label`, with their weights.

    Args:
        model: A fitted ``text-logreg`` pipeline (steps hash, seen, tfidf, clf). Any other
            model gives an empty dict: there is nothing linear to read.
        text: The item's text.
        label: The label to explain (usually the suggestion).
        top: Most words returned.

    Returns:
        Lower-cased word -> contribution to the label's logit (> 0), largest first. Only single
        words are read (the pipeline's word pairs are not shown).
    """
    steps = getattr(model, "named_steps", None)
    if steps is None or tuple(steps) != _TEXT_STEPS or not text:
        return {}
    row = model[:-1].transform([text]).tocsr()  # this text's tf-idf, in the model's columns
    return _weights(steps, row, text, label, top)


def suggest_and_explain(
    model: Any, text: str, labels: Sequence[str], top: int = 8
) -> tuple[np.ndarray, dict[str, float]] | None:
    """The text pipeline's probabilities (in `labels` order) and the words behind its most
    likely label, from one pass through the pipeline; None for a model that is not one.

    The labeling page needs both for every item: transforming the text once saves the second
    pass :func:`term_weights` would make.
    """
    steps = getattr(model, "named_steps", None)
    if steps is None or tuple(steps) != _TEXT_STEPS or not text:
        return None
    row = model[:-1].transform([text]).tocsr()
    proba = training.predict_proba_for(steps["clf"], row, labels)[0]
    best = str(labels[int(np.argmax(proba))])
    return proba, _weights(steps, row, text, best, top)


def _weights(steps: Mapping[str, Any], row: Any, text: str, label: str, top: int) -> dict:
    """`term_weights` from the text's tf-idf row."""
    clf = steps["clf"]
    classes = [str(c) for c in clf.classes_]
    if str(label) not in classes:
        return {}
    k = classes.index(str(label))
    coef = np.asarray(clf.coef_)
    # A binary logistic regression keeps one row, the second class's; the first's is minus it.
    weights = (coef[0] if k == 1 else -coef[0]) if coef.shape[0] == 1 else coef[k]
    hasher = steps["hash"]
    words = sorted(set(words_of(text, hasher.token_pattern)))
    if not words:
        return {}
    # Each word's column: its hashed bucket (as the vectorizer hashes a single word), then its
    # place among the buckets the model kept. No word is run through the pipeline on its own.
    kept = _kept_buckets(steps["seen"])
    buckets = np.fromiter(
        (abs(murmurhash3_32(word, seed=0)) % hasher.n_features for word in words),
        dtype=np.int64,
        count=len(words),
    )
    cols = np.searchsorted(kept, buckets)
    known = (cols < len(kept)) & (kept[np.minimum(cols, len(kept) - 1)] == buckets)
    tfidf = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
    out = {}
    for word, col, ok in zip(words, cols.tolist(), known.tolist(), strict=True):
        if not ok:
            continue  # a word no training text had: the model ignores it
        value = tfidf.get(col, 0.0) * float(weights[col])
        if value > 0:
            out[word] = value
    ranked = sorted(out.items(), key=lambda kv: -kv[1])[:top]
    return dict(ranked)


def _kept_buckets(selector: Any) -> np.ndarray:
    """The hashed buckets a fitted VarianceThreshold kept, ascending (cached on the step)."""
    kept = getattr(selector, "_corrigo_kept", None)
    if kept is None:
        kept = np.flatnonzero(selector.get_support())
        selector._corrigo_kept = kept
    return kept


def words_of(text: str, token_pattern: str = r"(?u)\b\w\w+\b") -> list[str]:
    """The text's words as the pipeline's vectorizer sees them (lower-cased)."""
    return [m.group().lower() for m in re.finditer(token_pattern, text)]


def segments(
    text: str, weights: Mapping[str, float], token_pattern: str = r"(?u)\b\w\w+\b"
) -> list[tuple[str, float | None]]:
    """Cut `text` into (piece, weight) in order: weighted words carry their weight, the rest
    None. Joining the pieces gives the text back."""
    out: list[tuple[str, float | None]] = []
    at = 0
    for m in re.finditer(token_pattern, text):
        weight = weights.get(m.group().lower())
        if weight is None:
            continue
        if m.start() > at:
            out.append((text[at : m.start()], None))
        out.append((m.group(), weight))
        at = m.end()
    if at < len(text):
        out.append((text[at:], None))
    return out


def percentile(sketch: Mapping[str, Any], value: float) -> float | None:
    """Where `value` falls in a numeric reference sketch: the share of training values below it
    (ties count half), interpolated between the sketch's quantile edges; None when the sketch
    holds no values or `value` is not a finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    n = sketch.get("n") or 0
    edges = sketch.get("edges") or []
    if n == 0 or not edges or not np.isfinite(v):
        return None
    below, at = sketch["below"], sketch["at"]
    i = int(np.searchsorted(edges, v, "left"))
    if i < len(edges) and edges[i] == v:
        return (below[i] + at[i]) / 2 / n
    if i == 0:
        return 0.0
    if i == len(edges):
        return 1.0
    lo, hi = edges[i - 1], edges[i]
    share = (v - lo) / (hi - lo) if hi > lo else 0.5
    return (at[i - 1] + share * (below[i] - at[i - 1])) / n


def unusual_values(
    reference: Mapping[str, Any] | None, features: Mapping[str, Any], tail: float = 0.01
) -> dict[str, float]:
    """The item's features whose value lies in the outer `tail` of the training distribution
    on either side: feature -> percentile (0 to 1). Features the reference does not hold are
    left out."""
    if not reference:
        return {}
    out = {}
    for sketch in reference.get("numeric") or []:
        name = sketch.get("feature")
        if name not in features:
            continue
        p = percentile(sketch, features[name])
        if p is not None and (p < tail or p > 1 - tail):
            out[name] = p
    return out
