"""Several experts per item: how answers resolve, how well experts agree, which labels look wrong.

Every function takes *answers*: ``(item, expert, label)`` triples in the order they were given
(oldest first), as crowd-kit's aggregators take ``(task, worker, label)`` tables. Items and
experts may be any hashable values; labels are compared as strings.

- **Resolution.** :func:`resolve` turns one item's answers into its final label under a
  project's rule: ``latest`` (the newest answer), ``majority`` (the most frequent; a tie goes to
  review), ``review`` (any disagreement goes to review). :class:`DawidSkene` estimates each
  expert's confusion matrix and each item's label jointly over the whole project (crowd-kit's
  EM), which pays off when many experts overlap and some are careless.
- **Agreement.** :func:`pairwise_kappa` (Cohen's kappa for every pair of experts who answered
  the same items), :func:`krippendorff_alpha` (nominal alpha over every answer, any number of
  experts per item, missing answers allowed) and :func:`agreement_with_final` (each expert
  against the resolved labels, with a Wilson interval).
- **Label errors.** :func:`suspect_labels` ranks the labeled items whose label is likely wrong
  by cleanlab's confident learning over out-of-fold probabilities.
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import cohen_kappa_score

from labeling.stats import wilson_interval

Answer = tuple[Hashable, Hashable, str]

LATEST, MAJORITY, REVIEW, DAWID_SKENE = "latest", "majority", "review", "dawid_skene"
#: How an item's answers become its final label.
RULES = (LATEST, MAJORITY, REVIEW, DAWID_SKENE)


@dataclass(frozen=True)
class Resolution:
    """What an item's answers add up to.

    Attributes:
        status: ``pending`` (fewer answers than needed), ``resolved`` or ``review`` (the
            experts disagree in a way the rule does not settle; a reviewer decides).
        label: The final label when ``resolved``, else None.
        votes: Answers per label, most frequent first.
    """

    status: str
    label: str | None = None
    votes: dict[str, int] = field(default_factory=dict)


def _votes(labels: Sequence[str]) -> dict[str, int]:
    # Most frequent first; equal counts in order of first appearance (Counter keeps it).
    return dict(Counter(labels).most_common())


def resolve(labels: Sequence[str], rule: str, needed: int = 1) -> Resolution:
    """Resolve one item from its experts' labels, oldest first.

    Args:
        labels: One label per answer (one answer per expert), in the order given.
        rule: ``latest``, ``majority`` or ``review``. (``dawid_skene`` needs every item at
            once: see :class:`DawidSkene`; for a single item it reads as ``majority``.)
        needed: Answers the item must have before it resolves.

    Returns:
        The :class:`Resolution`.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    if needed < 1:
        raise ValueError("needed must be at least 1")
    labels = [str(label) for label in labels]
    votes = _votes(labels)
    if len(labels) < needed:
        return Resolution("pending", None, votes)
    if rule == "latest":
        return Resolution("resolved", labels[-1], votes)
    counts = list(votes.values())
    if rule == "review":
        if len(votes) == 1:
            return Resolution("resolved", labels[0], votes)
        return Resolution("review", None, votes)
    if len(counts) > 1 and counts[0] == counts[1]:
        return Resolution("review", None, votes)
    return Resolution("resolved", next(iter(votes)), votes)


def _by_item(answers: Iterable[Answer]) -> dict[Hashable, dict[Hashable, str]]:
    """item -> {expert: label}; an expert's later answer on an item replaces the earlier one."""
    table: dict[Hashable, dict[Hashable, str]] = defaultdict(dict)
    for item, expert, label in answers:
        table[item][expert] = str(label)
    return table


class DawidSkene:
    """Dawid-Skene aggregation (crowd-kit's EM): each expert's confusion matrix and each item's
    label, estimated together.

    Parameters:
        n_iter: Most EM iterations.
        tol: Stop when the log-likelihood improves by less than this.

    Fitted attributes:
        labels_: item -> most probable label.
        probas_: item -> {label: posterior probability}.
        expert_accuracy_: expert -> the estimated probability that the expert's answer is the
            true label (the trace of their confusion matrix weighted by the label priors).
    """

    def __init__(self, n_iter: int = 100, tol: float = 1e-5):
        self.n_iter = n_iter
        self.tol = tol

    def fit(self, answers: Iterable[Answer]) -> DawidSkene:
        """Fit on ``(item, expert, label)`` answers; returns self."""
        import pandas as pd

        # crowd-kit imports nltk and its text aggregators at import time (about a second):
        # only projects that choose this rule pay for it.
        from crowdkit.aggregation import DawidSkene as _DawidSkene

        rows = [
            (item, expert, label)
            for item, by_expert in _by_item(answers).items()
            for expert, label in by_expert.items()
        ]
        if not rows:
            raise ValueError("no answers to aggregate")
        # crowd-kit indexes by task and worker: positions keep any hashable ids intact.
        items = list(dict.fromkeys(r[0] for r in rows))
        experts = list(dict.fromkeys(r[1] for r in rows))
        item_pos = {item: i for i, item in enumerate(items)}
        expert_pos = {expert: i for i, expert in enumerate(experts)}
        frame = pd.DataFrame(
            {
                "task": [item_pos[r[0]] for r in rows],
                "worker": [expert_pos[r[1]] for r in rows],
                "label": [r[2] for r in rows],
            }
        )
        with warnings.catch_warnings():
            # crowd-kit 1.4 calls pandas APIs that pandas 3.1 deprecates (DataFrame.eval with
            # inplace=True); the results are unaffected, and the warnings are not ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model = _DawidSkene(n_iter=self.n_iter, tol=self.tol).fit(frame)
        probas = model.probas_.reindex(range(len(items)))
        self.probas_ = {
            items[t]: {str(label): float(p) for label, p in row.items()}
            for t, row in probas.iterrows()
        }
        self.labels_ = {item: max(p, key=p.get) for item, p in self.probas_.items()}
        priors = model.priors_
        errors = model.errors_  # (worker, observed label) rows x true label columns
        self.expert_accuracy_ = {}
        for w, expert in enumerate(experts):
            matrix = errors.loc[w]
            self.expert_accuracy_[expert] = float(
                sum(priors[t] * matrix.at[t, t] for t in priors.index if t in matrix.index)
            )
        return self

    def fit_predict(self, answers: Iterable[Answer]) -> dict[Hashable, str]:
        """Fit, and return item -> most probable label."""
        return self.fit(answers).labels_


def pairwise_kappa(answers: Iterable[Answer]) -> list[dict]:
    """Cohen's kappa for every pair of experts who answered at least one item in common.

    Args:
        answers: ``(item, expert, label)`` triples.

    Returns:
        One dict per pair, ordered by expert: ``a``, ``b``, ``items`` (shared), ``agreement``
        (share of shared items with the same label) and ``kappa`` (None when it is undefined:
        both experts gave one and the same label on every shared item, so chance agreement is
        1).
    """
    table = _by_item(answers)
    shared: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
    for by_expert in table.values():
        for a, b in itertools.combinations(sorted(by_expert, key=str), 2):
            shared[(a, b)].append((by_expert[a], by_expert[b]))
    pairs = []
    for (a, b), rows in sorted(shared.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        left = [r[0] for r in rows]
        right = [r[1] for r in rows]
        agreement = sum(x == y for x, y in rows) / len(rows)
        kappa = None
        if len(set(left) | set(right)) > 1:
            kappa = float(cohen_kappa_score(left, right))
        pairs.append({"a": a, "b": b, "items": len(rows), "agreement": agreement, "kappa": kappa})
    return pairs


def krippendorff_alpha(answers: Iterable[Answer]) -> float | None:
    """Krippendorff's alpha (nominal) over every expert and item; missing answers allowed.

    Args:
        answers: ``(item, expert, label)`` triples.

    Returns:
        Alpha, or None when it is undefined: no item has two answers, or every answer is the
        same label.
    """
    import krippendorff

    table = _by_item(answers)
    pairable = {item: row for item, row in table.items() if len(row) >= 2}
    values = sorted({label for row in pairable.values() for label in row.values()})
    if len(values) < 2:
        return None
    experts = sorted({e for row in pairable.values() for e in row}, key=str)
    code = {label: float(i) for i, label in enumerate(values)}
    data = np.full((len(experts), len(pairable)), np.nan)
    rows = {e: i for i, e in enumerate(experts)}
    for j, row in enumerate(pairable.values()):
        for expert, label in row.items():
            data[rows[expert], j] = code[label]
    return float(
        krippendorff.alpha(
            reliability_data=data,
            level_of_measurement="nominal",
            value_domain=list(code.values()),
        )
    )


def agreement_with_final(answers: Iterable[Answer], final: Mapping[Hashable, str]) -> dict:
    """Each expert's agreement with the items' final labels.

    Args:
        answers: ``(item, expert, label)`` triples.
        final: item -> resolved label; items not in it are left out.

    Returns:
        expert -> ``{"items", "agreed", "rate", "low", "high"}`` (a 95% Wilson interval).
    """
    counts: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for item, by_expert in _by_item(answers).items():
        if item not in final:
            continue
        for expert, label in by_expert.items():
            counts[expert][0] += 1
            counts[expert][1] += label == str(final[item])
    out = {}
    for expert, (n, k) in sorted(counts.items(), key=lambda kv: str(kv[0])):
        low, high = wilson_interval(k, n)
        out[expert] = {"items": n, "agreed": k, "rate": k / n, "low": low, "high": high}
    return out


def suspect_labels(labels: Sequence[str], proba: np.ndarray, classes: Sequence[str]) -> list[int]:
    """Rows whose label is likely wrong, by confident learning (cleanlab), most suspect first.

    Args:
        labels: The given label per row.
        proba: Out-of-fold probabilities, shape (rows, len(classes)): each row predicted by a
            model that did not train on it (see ``labeling.training.cross_val_predictions``).
        classes: The probability columns' labels.

    Returns:
        Row indices, ranked by self-confidence (the lowest probability for the given label
        first). Empty when fewer than two classes have labels.
    """
    from cleanlab.filter import find_label_issues

    labels = [str(label) for label in labels]
    classes = [str(c) for c in classes]
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(labels), len(classes)):
        raise ValueError(f"proba has shape {proba.shape}; expected ({len(labels)}, {len(classes)})")
    unknown = set(labels) - set(classes)
    if unknown:
        raise ValueError(f"labels not among the classes: {', '.join(sorted(unknown))}")
    # Confident learning estimates a threshold per class from that class's rows: classes no
    # row carries are dropped and the probabilities renormalised over the rest.
    present = [c for c in classes if c in set(labels)]
    if len(present) < 2:
        return []
    cols = [classes.index(c) for c in present]
    sub = proba[:, cols]
    sums = sub.sum(axis=1, keepdims=True)
    sub = np.divide(sub, sums, out=np.full_like(sub, 1.0 / len(cols)), where=sums > 0)
    code = {c: i for i, c in enumerate(present)}
    given = np.fromiter((code[label] for label in labels), dtype=np.int64, count=len(labels))
    ranked = find_label_issues(
        labels=given,
        pred_probs=sub,
        filter_by="prune_by_noise_rate",
        return_indices_ranked_by="self_confidence",
    )
    return [int(i) for i in ranked]
