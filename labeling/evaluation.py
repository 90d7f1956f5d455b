"""Held-out metrics, the majority baseline and the promotion gate."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

# Metrics go through float arithmetic (and JSON round-trips); without a tolerance a candidate
# that exactly ties a threshold could fail on the last bit.
_EPS = 1e-9


def _label_order(labels: Sequence[str], *observed: Sequence[str]) -> list[str]:
    """Project labels in order, then any stray observed labels, so nothing is silently lost."""
    order = [str(label) for label in labels]
    seen = set(order)
    extra = sorted({str(v) for obs in observed for v in obs} - seen)
    return order + extra


def evaluate(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Compute JSON-serialisable classification metrics.

    Args:
        y_true: True label per row.
        y_pred: Predicted label per row.
        labels: The project's labels, in display order (labels only seen in the data are
            appended).

    Returns:
        Dict with ``n``, ``accuracy``, ``macro_f1`` (over labels present in ``y_true`` or
        ``y_pred``), ``per_class`` (precision/recall/f1/support per label) and ``confusion``
        (``labels`` and ``matrix``, rows are true labels).
    """
    t = np.asarray([str(v) for v in y_true], dtype=object)
    p = np.asarray([str(v) for v in y_pred], dtype=object)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} rows but y_pred has {len(p)}")
    order = _label_order(labels, t, p)
    n = len(t)
    if n == 0:
        zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {
            "n": 0,
            "accuracy": 0.0,
            "macro_f1": 0.0,
            "per_class": {label: dict(zero) for label in order},
            "confusion": {"labels": order, "matrix": [[0] * len(order) for _ in order]},
        }
    # Only classes that occur anywhere count towards macro-F1, so a project label nobody has
    # used yet does not drag the score towards 0.
    observed = set(t) | set(p)
    present = [label for label in order if label in observed]
    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=order, zero_division=0
    )
    matrix = confusion_matrix(t, p, labels=order)
    return {
        "n": int(n),
        "accuracy": float(accuracy_score(t, p)),
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(order)
        },
        "confusion": {"labels": order, "matrix": matrix.astype(int).tolist()},
    }


def majority_baseline(y_train: Sequence[str], y_true: Sequence[str], labels: Sequence[str]) -> dict:
    """Evaluate always predicting the most common training label.

    Args:
        y_train: Training labels the majority is taken from.
        y_true: True labels of the evaluation rows.
        labels: The project's labels, in display order; ties go to the earliest.

    Returns:
        The :func:`evaluate` dict of the constant prediction.
    """
    counts = Counter(str(v) for v in y_train)
    if not counts:
        raise ValueError("need at least one training label for a majority baseline")
    rank = {label: i for i, label in enumerate(_label_order(labels, list(counts)))}
    # Ties are broken by project label order so the baseline is deterministic.
    majority = min(counts, key=lambda label: (-counts[label], rank[label]))
    return evaluate(y_true, [majority] * len(y_true), labels)


@dataclass
class GateConfig:
    """Thresholds of the promotion gate.

    A candidate must beat the champion's macro-F1 by strictly more than ``min_delta`` (a
    negative value counts as 0: a candidate that is not better is never promoted).
    """

    min_heldout: int = 20
    min_delta: float = 0.0
    max_class_drop: float = 0.10
    min_class_support: int = 10

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> GateConfig:
        """Build a config from a settings mapping, ignoring unknown keys.

        Args:
            settings: Mapping possibly holding some of the field names; ``None`` values and
                unknown keys are ignored so defaults apply.

        Returns:
            A :class:`GateConfig`.
        """
        settings = settings or {}
        kwargs = {}
        for f in dataclasses.fields(cls):
            value = settings.get(f.name)
            if value is not None:
                # Settings often come from forms or JSON as strings; coerce to the field type.
                kwargs[f.name] = int(value) if f.type in (int, "int") else float(value)
        return cls(**kwargs)


@dataclass
class GateDecision:
    """Outcome of the gate: whether to promote and every rule's verdict."""

    promote: bool
    reasons: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable copy.

        Returns:
            ``{"promote": bool, "reasons": [{"rule", "passed", "detail"}, ...]}``.
        """
        return {"promote": bool(self.promote), "reasons": [dict(r) for r in self.reasons]}


def _rule(rule: str, passed: bool, detail: str) -> dict:
    return {"rule": rule, "passed": bool(passed), "detail": detail}


def _beats_champion(cand_f1: float, champ_f1: float, config: GateConfig) -> dict:
    """Pass only on an improvement strictly greater than `min_delta` (so never on a tie)."""
    gain = cand_f1 - champ_f1
    need = max(config.min_delta, 0.0)
    scores = f"macro-F1 {cand_f1:.3f} vs champion {champ_f1:.3f}"
    if gain > need + _EPS:
        return _rule("beats_champion", True, f"{scores}: gain {gain:+.4f} > {need:.3f}")
    if abs(gain) <= _EPS:
        why = "a tie is not an improvement, so the champion stays"
    elif gain < 0:
        why = f"gain {gain:+.4f}: the candidate is worse"
    else:
        why = f"gain {gain:+.4f} is not more than the required min_delta {need:.3f}"
    return _rule("beats_champion", False, f"{scores}: {why}")


def _class_regression(candidate: dict, champion: dict, config: GateConfig) -> dict:
    cand_classes = candidate.get("per_class", {})
    champ_classes = champion.get("per_class", {})
    checked: list[tuple[float, str, float, float]] = []
    unchecked: list[str] = []
    for label, stats in cand_classes.items():
        if label not in champ_classes:
            continue  # the champion never predicted or saw this class; nothing to regress from
        if int(stats.get("support", 0)) < config.min_class_support:
            unchecked.append(label)
            continue
        old, new = float(champ_classes[label]["f1"]), float(stats["f1"])
        checked.append((old - new, label, old, new))
    skipped = (
        f"; not checked (support < {config.min_class_support}): {', '.join(unchecked)}"
        if unchecked
        else ""
    )
    if not checked:
        return _rule(
            "no_class_regression",
            True,
            f"no class has held-out support ≥ {config.min_class_support}{skipped}",
        )
    drop, label, old, new = max(checked)
    if drop <= _EPS:
        names = ", ".join(repr(lb) for _, lb, _, _ in sorted(checked, key=lambda c: c[1]))
        return _rule(
            "no_class_regression", True, f"no class dropped: F1 held or rose for {names}{skipped}"
        )
    passed = drop <= config.max_class_drop + _EPS
    verb = "≤" if passed else ">"
    detail = (
        f"largest drop: class {label!r} F1 {old:.3f} → {new:.3f} (drop {drop:.3f} {verb} "
        f"allowed {config.max_class_drop:.3f}){skipped}"
    )
    return _rule("no_class_regression", passed, detail)


def gate(
    candidate: dict,
    champion: dict | None,
    baseline: dict,
    heldout_size: int,
    config: GateConfig,
) -> GateDecision:
    """Decide whether a candidate model may replace the champion.

    Every rule is evaluated and reported, whether it passes or fails.

    Args:
        candidate: :func:`evaluate` dict of the candidate on the held-out set.
        champion: :func:`evaluate` dict of the current champion on the same held-out set, or
            ``None`` if there is no champion yet.
        baseline: :func:`majority_baseline` dict on the same held-out set.
        heldout_size: Number of held-out rows the metrics were computed on.
        config: Gate thresholds.

    Returns:
        A :class:`GateDecision`; ``promote`` is True only if every rule passed.
    """
    reasons = []
    ok = heldout_size >= config.min_heldout
    reasons.append(
        _rule(
            "heldout_size",
            ok,
            f"held-out size {heldout_size} {'≥' if ok else '<'} minimum {config.min_heldout}",
        )
    )

    cand_f1 = float(candidate["macro_f1"])
    if champion is None:
        base_f1 = float(baseline["macro_f1"])
        ok = cand_f1 > base_f1 + _EPS
        reasons.append(
            _rule(
                "beats_baseline",
                ok,
                f"macro-F1 {cand_f1:.3f} {'>' if ok else '≤'} majority baseline {base_f1:.3f}",
            )
        )
        reasons.append(_rule("no_class_regression", True, "no champion to compare"))
    else:
        reasons.append(_beats_champion(cand_f1, float(champion["macro_f1"]), config))
        reasons.append(_class_regression(candidate, champion, config))

    return GateDecision(promote=all(r["passed"] for r in reasons), reasons=reasons)
