"""Held-out metrics, the majority baseline and the promotion gate."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import stats

# Metrics go through float arithmetic (and JSON round-trips); without a tolerance a candidate
# that exactly ties a threshold could fail on the last bit.
_EPS = 1e-9


def _label_order(labels: Sequence[str], *observed: Sequence[str]) -> list[str]:
    """Project labels in order, then any stray observed labels, so nothing is silently lost."""
    order = [str(label) for label in labels]
    seen = set(order)
    extra = sorted({str(v) for obs in observed for v in obs} - seen)
    return order + extra


def evaluate(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    proba: Any = None,
    seed: int = 0,
) -> dict:
    """Compute JSON-serialisable classification metrics with their confidence intervals.

    Args:
        y_true: True label per row.
        y_pred: Predicted label per row.
        labels: The project's labels, in display order (labels only seen in the data are
            appended).
        proba: Optional ``(rows, len(labels))`` class probabilities, columns in ``labels``
            order; when given, ``calibration`` is added.
        seed: Seed of the bootstrap intervals (the same seed gives the same dict).

    Returns:
        Dict with ``n``, ``accuracy``, ``macro_f1`` (over labels present in ``y_true`` or
        ``y_pred``), ``balanced_accuracy`` (mean recall over labels present in ``y_true``),
        ``per_class`` (precision/recall/f1/support per label), ``confusion`` (``labels`` and
        ``matrix``, rows are true labels), ``intervals`` (95% intervals: ``accuracy`` by
        Wilson, ``macro_f1``, ``balanced_accuracy`` and ``recall`` per label by percentile
        bootstrap over rows; each ``{"lo", "hi", "method"}``, ``None`` bounds where undefined)
        and, with ``proba``, ``calibration`` (``brier``, ``ece``, ``n_bins``).
    """
    t_list = [str(v) for v in y_true]
    p_list = [str(v) for v in y_pred]
    if len(t_list) != len(p_list):
        raise ValueError(f"y_true has {len(t_list)} rows but y_pred has {len(p_list)}")
    order, (t, p) = stats._encode(labels, t_list, p_list)
    k, n = len(order), len(t_list)
    cm = stats._confusion(t, p, k)
    tp = np.diagonal(cm[0]).astype(float)
    support, predicted = cm[0].sum(axis=1), cm[0].sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(k), where=support + predicted > 0)
    result = {
        "n": int(n),
        # Only classes that occur anywhere count towards macro-F1, so a project label nobody
        # has used yet does not drag the score towards 0.
        "accuracy": _finite_or_zero(stats._accuracy_cm(cm)[0]),
        "macro_f1": _finite_or_zero(stats._macro_f1_cm(cm)[0]),
        "balanced_accuracy": _finite_or_zero(stats._balanced_accuracy_cm(cm)[0]),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(order)
        },
        "confusion": {"labels": order, "matrix": cm[0].astype(int).tolist()},
        "intervals": _intervals(t_list, p_list, order, int(tp.sum()), seed),
    }
    if proba is not None:
        result["calibration"] = {
            "brier": _json_float(stats.brier_score(t_list, proba, labels)),
            "ece": _json_float(stats.expected_calibration_error(t_list, proba, labels, _ECE_BINS)),
            "n_bins": _ECE_BINS,
        }
    return result


_LEVEL_ALPHA = 0.05
_EVAL_BOOT = 1000
_ECE_BINS = 10


def _finite_or_zero(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _json_float(value: float | None) -> float | None:
    """A float for JSON: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _bounds(lo_hi: tuple[float, float], method: str) -> dict:
    lo, hi = lo_hi
    return {"lo": _json_float(lo), "hi": _json_float(hi), "method": method}


def _intervals(t: list[str], p: list[str], order: list[str], correct: int, seed: int) -> dict:
    n = len(t)
    boot = stats.class_recall_intervals(
        t, p, order, _EVAL_BOOT, _LEVEL_ALPHA, seed, extra=("macro_f1", "balanced_accuracy")
    )
    wilson = stats.wilson_interval(correct, n, _LEVEL_ALPHA) if n else (math.nan, math.nan)
    return {
        "level": 1 - _LEVEL_ALPHA,
        "n_boot": _EVAL_BOOT,
        "accuracy": _bounds(wilson, "wilson"),
        "macro_f1": _bounds(boot["macro_f1"], "bootstrap"),
        "balanced_accuracy": _bounds(boot["balanced_accuracy"], "bootstrap"),
        "recall": {label: _bounds(boot["recall"][label], "bootstrap") for label in order},
    }


def majority_label(y_train: Sequence[str], labels: Sequence[str]) -> str:
    """The most common training label; ties go to the earliest in ``labels``.

    Args:
        y_train: Training labels.
        labels: The project's labels, in display order.

    Returns:
        The majority label.
    """
    counts = Counter(str(v) for v in y_train)
    if not counts:
        raise ValueError("need at least one training label for a majority baseline")
    rank = {label: i for i, label in enumerate(_label_order(labels, list(counts)))}
    # Ties are broken by project label order so the baseline is deterministic.
    return min(counts, key=lambda label: (-counts[label], rank[label]))


def majority_baseline(y_train: Sequence[str], y_true: Sequence[str], labels: Sequence[str]) -> dict:
    """Evaluate always predicting the most common training label.

    Args:
        y_train: Training labels the majority is taken from.
        y_true: True labels of the evaluation rows.
        labels: The project's labels, in display order; ties go to the earliest.

    Returns:
        The :func:`evaluate` dict of the constant prediction.
    """
    majority = majority_label(y_train, labels)
    return evaluate(y_true, [majority] * len(y_true), labels)


# ---------------------------------------------------------------------------------------------
# The promotion gate

METRIC_NAMES = tuple(stats.METRICS)
MODES = ("superiority", "non_inferiority")
_METRIC_TITLE = {
    "macro_f1": "macro-F1",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
}
GATE_BOOT = 2000
# Below this many held-out items a bootstrap bound is too optimistic for non-inferiority: with
# only a handful of items where the models differ, every resample can favour the candidate.
# bench.gate_simulation, 1,000 pairs a cell: non-inferiority by bootstrap promoted 10.6% of
# candidates truly 5 points worse at n = 20 and 6.0% of those 2 points worse at n = 50, but at
# most 4.3% (2 points worse) from n = 100 on. Below it, the gain must be significant instead.
NI_MIN_ITEMS = 100


@dataclass
class GateConfig:
    """Thresholds of the promotion gate.

    :func:`decide` compares a candidate with the champion on the same held-out items:

    - ``metric``: what is compared, ``"macro_f1"``, ``"accuracy"`` or ``"balanced_accuracy"``.
    - ``mode``: ``"superiority"`` promotes only a gain significant at ``alpha``;
      ``"non_inferiority"`` promotes an observed gain when the champion is, at confidence
      ``1 - alpha``, at most ``margin`` better (with a bootstrap metric, only from
      :data:`NI_MIN_ITEMS` held-out items on; below, superiority's test applies).
    - ``alpha``: one-sided error rate of every test.
    - ``margin``: the loss non-inferiority tolerates (metric units, 0.01 = one point).
    - ``max_class_drop``: a class fails when its recall drops by more than this *and* the drop
      is significant at ``alpha`` (exact McNemar on that class's rows); classes with fewer
      than ``min_class_support`` held-out rows are not judged.
    - ``min_heldout``: fewer held-out items than this never promote.
    - ``min_delta``: the observed gain must be strictly greater (a negative value counts as
      0, so a tie never promotes).

    The legacy :func:`gate` reads only ``min_heldout``, ``min_delta``, ``max_class_drop``
    (on per-class F1) and ``min_class_support``.
    """

    min_heldout: int = 20
    min_delta: float = 0.0
    max_class_drop: float = 0.10
    min_class_support: int = 10
    metric: str = "macro_f1"
    mode: str = "superiority"
    alpha: float = 0.05
    margin: float = 0.01

    def __post_init__(self) -> None:
        if self.metric not in METRIC_NAMES:
            raise ValueError(
                f"metric must be one of {', '.join(METRIC_NAMES)}, got {self.metric!r}"
            )
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        checks = {
            "alpha": (0.0 < self.alpha < 0.5, "a number between 0 and 0.5"),
            "margin": (0.0 <= self.margin < 1.0, "a number from 0 to 1"),
            "max_class_drop": (0.0 <= self.max_class_drop <= 1.0, "a number from 0 to 1"),
            "min_delta": (math.isfinite(self.min_delta), "a finite number"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> GateConfig:
        """Build a config from a settings mapping, ignoring unknown keys.

        Args:
            settings: Mapping possibly holding some of the field names; ``None`` values and
                unknown keys are ignored so defaults apply. Values may be strings (forms,
                JSON): numbers are parsed, and ``metric`` and ``mode`` are matched ignoring
                case, spaces and hyphens (``"Non-inferiority"`` is ``"non_inferiority"``).

        Returns:
            A :class:`GateConfig`.

        Raises:
            ValueError: A value cannot be parsed or is out of range; the message names the
                field.
        """
        settings = settings or {}
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = settings.get(f.name)
            if value is None:
                continue
            try:
                if f.type in (int, "int"):
                    kwargs[f.name] = _parse_int(value)
                elif f.type in (float, "float"):
                    kwargs[f.name] = float(value)
                else:
                    kwargs[f.name] = str(value).strip().lower().replace("-", "_").replace(" ", "_")
            except (TypeError, ValueError):
                raise ValueError(f"{f.name} must be a {f.type}, got {value!r}") from None
        return cls(**kwargs)


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a count")
    number = float(value)
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


@dataclass
class GateDecision:
    """Outcome of the gate: whether to promote and every rule's verdict.

    Each reason is ``{"rule", "passed", "detail"}``; :func:`decide` adds ``numbers``, the
    rule's figures as a JSON-serialisable dict (``None`` for an undefined value).
    """

    promote: bool
    reasons: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable copy.

        Returns:
            ``{"promote": bool, "reasons": [{"rule", "passed", "detail"[, "numbers"]}, ...]}``.
        """
        return {"promote": bool(self.promote), "reasons": [dict(r) for r in self.reasons]}


def _rule(rule: str, passed: bool, detail: str, numbers: dict | None = None) -> dict:
    reason = {"rule": rule, "passed": bool(passed), "detail": detail}
    if numbers is not None:
        reason["numbers"] = {key: _json_value(value) for key, value in numbers.items()}
    return reason


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    return _json_float(value)


def _defined(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _p(p: float, n_boot: int | None = None) -> str:
    """A p-value for a sentence: a bootstrap share of 0 is below one resample in n_boot."""
    if n_boot and p <= 0:
        return f"p < {1 / n_boot:.4g}"
    return f"p = {p:.4f}" if p >= 1e-4 else "p < 0.0001"


def _pct(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}%"


def _heldout_rule(size: int, config: GateConfig, what: str = "held-out size") -> dict:
    ok = size >= config.min_heldout
    return _rule(
        "heldout_size",
        ok,
        f"{what} {size} {'≥' if ok else '<'} minimum {config.min_heldout}",
        {"size": size, "minimum": config.min_heldout},
    )


def _observed_gain(cand: float, champ: float, config: GateConfig) -> dict:
    """Pass only on an observed gain strictly greater than `min_delta` (so never on a tie)."""
    title = _METRIC_TITLE[config.metric]
    need = max(config.min_delta, 0.0)
    numbers = {
        "metric": config.metric,
        "candidate": cand,
        "champion": champ,
        "gain": cand - champ if _defined(cand, champ) else None,
        "min_delta": need,
    }
    if not _defined(cand, champ):
        return _rule("observed_gain", False, f"{title} is undefined (no rows to score)", numbers)
    gain = cand - champ
    scores = f"{title} {cand:.3f} vs champion {champ:.3f}"
    if gain > need + _EPS:
        return _rule("observed_gain", True, f"{scores}: gain {gain:+.4f} > {need:.3f}", numbers)
    if abs(gain) <= _EPS:
        why = "a tie is not an improvement, so the champion stays"
    elif gain < 0:
        why = f"gain {gain:+.4f}: the candidate is worse"
    else:
        why = f"gain {gain:+.4f} is not more than the required min_delta {need:.3f}"
    return _rule("observed_gain", False, f"{scores}: {why}", numbers)


def _compare(
    rule: str,
    against: str,
    t: list[str],
    cand: list[str],
    other: list[str],
    order: list[str],
    config: GateConfig,
    mode: str,
    seed: int,
    n_boot: int,
) -> dict:
    """The paired test of the candidate against `other` (champion or baseline) on the rows."""
    title = _METRIC_TITLE[config.metric]
    alpha = config.alpha
    level = _pct(alpha)
    n = len(t)
    numbers: dict[str, Any] = {"metric": config.metric, "mode": mode, "alpha": alpha, "n": n}
    note = ""
    if mode == "non_inferiority" and config.metric != "accuracy" and n < NI_MIN_ITEMS:
        # The exact bound of accuracy holds at any size; a bootstrap bound does not.
        mode = "superiority"
        numbers |= {"mode": mode, "requested_mode": "non_inferiority"}
        note = (
            f"fewer than {NI_MIN_ITEMS} items, too few for a bootstrap non-inferiority bound, "
            "so the gain must be significant: "
        )
    if config.metric == "accuracy":
        cand_ok = [a == b for a, b in zip(cand, t, strict=True)]
        other_ok = [a == b for a, b in zip(other, t, strict=True)]
        test = stats.mcnemar_exact(cand_ok, other_ok)
        bounds = stats.paired_accuracy_bounds(cand_ok, other_ok, alpha)
        cand_v = sum(cand_ok) / n if n else math.nan
        other_v = sum(other_ok) / n if n else math.nan
        numbers |= {
            "test": "mcnemar_exact",
            "candidate": cand_v,
            against: other_v,
            "gain": cand_v - other_v if n else None,
            "b": test["b"],
            "c": test["c"],
            "p_better": test["p_better"],
            "p_worse": test["p_worse"],
            "gain_lower": bounds["lower"] if n else None,
            "gain_upper": bounds["upper"] if n else None,
        }
        evidence = f"{test['b']} rows only the candidate got right, {test['c']} only the {against}"
        p_better, lower = test["p_better"], (bounds["lower"] if n else math.nan)
        method, shown = "exact McNemar", _p(p_better)
    else:
        boot = stats.paired_bootstrap(
            config.metric, t, cand, other, n_boot=n_boot, seed=seed, alpha=alpha, labels=order
        )
        cand_v, other_v = boot["candidate"], boot["champion"]
        numbers |= {
            "test": "paired_bootstrap",
            "n_boot": n_boot,
            "seed": seed,
            "candidate": cand_v,
            against: other_v,
            "gain": boot["delta"],
            "p_better": boot["p_better"],
            "p_worse": boot["p_worse"],
            "gain_lower": boot["lower"],
            "gain_upper": boot["upper"],
        }
        evidence = f"gain {boot['delta']:+.4f}" if _defined(boot["delta"]) else "no gain"
        p_better, lower = boot["p_better"], boot["lower"]
        method, shown = "paired bootstrap", _p(p_better, n_boot)
    if not _defined(cand_v, other_v):
        return _rule(rule, False, f"{title} is undefined (no rows to score)", numbers)
    scores = f"{title} {cand_v:.3f} vs {against} {other_v:.3f}"
    if mode == "superiority":
        ok = _defined(p_better) and p_better < alpha
        verdict = f"{method} {shown} {'<' if ok else '≥'} {alpha:g}: " + (
            "the gain is significant" if ok else "the gain is not significant"
        )
        return _rule(rule, ok, f"{note}{scores} ({evidence}); {verdict}", numbers)
    # Non-inferiority: how much better the champion may still be, at one-sided confidence.
    champion_ahead = -lower if _defined(lower) else math.nan
    numbers |= {"champion_ahead_upper": champion_ahead, "margin": config.margin}
    ok = _defined(champion_ahead) and champion_ahead < config.margin - _EPS
    if not _defined(champion_ahead):
        bound = "no bound on the champion's lead"
    elif champion_ahead >= 0:
        bound = f"the {against} is at most {champion_ahead:.4f} better"
    else:
        bound = f"the candidate is at least {-champion_ahead:.4f} better"
    verdict = (
        f"{bound} ({level} one-sided bound, {method}), {'<' if ok else '≥'} margin "
        f"{config.margin:.3f}: " + ("not inferior" if ok else "inferiority not ruled out")
    )
    return _rule(rule, ok, f"{scores} ({evidence}); {verdict}", numbers)


def _class_regression_paired(
    t: list[str], cand: list[str], champ: list[str], order: list[str], config: GateConfig
) -> dict:
    """Recall per class on the same rows; a class fails on a drop over tolerance AND significant."""
    t_arr = np.asarray(t, dtype=object)
    cand_ok = np.asarray(cand, dtype=object) == t_arr
    champ_ok = np.asarray(champ, dtype=object) == t_arr
    classes: dict[str, dict] = {}
    unchecked, failed, spared = [], [], []
    for label in order:
        rows = t_arr == label
        support = int(rows.sum())
        if support == 0:
            continue
        if support < config.min_class_support:
            unchecked.append(label)
            continue
        old, new = float(champ_ok[rows].mean()), float(cand_ok[rows].mean())
        test = stats.mcnemar_exact(cand_ok[rows], champ_ok[rows])
        drop = old - new
        significant = test["p_worse"] < config.alpha
        classes[label] = {
            "support": support,
            "champion_recall": old,
            "candidate_recall": new,
            "drop": drop,
            "b": test["b"],
            "c": test["c"],
            "p_worse": test["p_worse"],
        }
        if drop > config.max_class_drop + _EPS:
            (failed if significant else spared).append(label)
    numbers = {
        "max_class_drop": config.max_class_drop,
        "alpha": config.alpha,
        "min_class_support": config.min_class_support,
        "classes": classes,
        "failed": failed,
        "not_significant": spared,
        "unchecked": unchecked,
    }
    skipped = (
        f"; not checked (support < {config.min_class_support}): {', '.join(unchecked)}"
        if unchecked
        else ""
    )
    if not classes:
        return _rule(
            "no_class_regression",
            True,
            f"no class has held-out support ≥ {config.min_class_support}{skipped}",
            numbers,
        )

    def describe(label: str) -> str:
        c = classes[label]
        return (
            f"class {label!r} recall {c['champion_recall']:.3f} → {c['candidate_recall']:.3f} "
            f"(drop {c['drop']:.3f}, McNemar {_p(c['p_worse'])})"
        )

    if failed:
        worst = max(failed, key=lambda lb: classes[lb]["drop"])
        detail = (
            f"{describe(worst)}: drop > allowed {config.max_class_drop:.3f} and significant "
            f"at {config.alpha:g}"
        )
        if len(failed) > 1:
            detail += f"; also failing: {', '.join(lb for lb in failed if lb != worst)}"
        return _rule("no_class_regression", False, detail + skipped, numbers)
    worst = max(classes, key=lambda lb: (classes[lb]["drop"], lb))
    if classes[worst]["drop"] <= _EPS:
        names = ", ".join(repr(lb) for lb in sorted(classes))
        return _rule(
            "no_class_regression",
            True,
            f"no class dropped: recall held or rose for {names}{skipped}",
            numbers,
        )
    if spared:
        worst = max(spared, key=lambda lb: classes[lb]["drop"])
        why = f"drop > allowed {config.max_class_drop:.3f} but not significant at {config.alpha:g}"
    else:
        why = f"drop ≤ allowed {config.max_class_drop:.3f}"
    detail = f"largest: {describe(worst)}: {why}{skipped}"
    return _rule("no_class_regression", True, detail, numbers)


def _strings(values: Sequence) -> list[str]:
    return [str(v) for v in values]


def decide(
    y_true: Sequence[str],
    candidate_pred: Sequence[str],
    champion_pred: Sequence[str] | None,
    y_train: Sequence[str],
    labels: Sequence[str],
    config: GateConfig,
    seed: int = 0,
    *,
    n_boot: int = GATE_BOOT,
) -> GateDecision:
    """Decide whether a candidate may replace the champion, from paired held-out predictions.

    Both models' predictions are for the SAME held-out items, so every test is paired. The
    rules, all evaluated and reported:

    - ``heldout_size``: at least ``config.min_heldout`` items.
    - With a champion: ``observed_gain`` (the metric rose by more than ``min_delta``; a tie
      never promotes, in either mode), ``paired_test`` (superiority: the gain is significant
      at ``alpha``, exact McNemar for accuracy, paired bootstrap otherwise; non-inferiority:
      the one-sided ``1 - alpha`` upper bound of champion-minus-candidate is below
      ``margin``; for macro-F1 and balanced accuracy on fewer than :data:`NI_MIN_ITEMS` items
      the bootstrap bound is unreliable, so superiority's test applies, as the rule says)
      and ``no_class_regression`` (no class loses more than ``max_class_drop`` recall with a
      drop significant at ``alpha``).
    - Without a champion: ``beats_baseline`` (the candidate is significantly better than
      always predicting the majority training label, by the same paired test of
      ``config.metric`` in superiority mode whatever ``config.mode``) and
      ``no_class_regression`` (passed: nothing to compare).

    A metric that cannot be computed (no rows) fails its rule.

    Args:
        y_true: True label per held-out item.
        candidate_pred: The candidate's prediction per item.
        champion_pred: The champion's prediction per item, or ``None`` without a champion.
        y_train: The candidate's training labels (for the majority baseline).
        labels: The project's labels, in display order.
        config: Gate settings.
        seed: Seed of the bootstrap; the same inputs and seed give the same decision.
        n_boot: Bootstrap resamples.

    Returns:
        A :class:`GateDecision`; ``promote`` is True only if every rule passed. Each reason
        carries ``numbers``.
    """
    t, cand = _strings(y_true), _strings(candidate_pred)
    if len(t) != len(cand):
        raise ValueError(f"y_true has {len(t)} rows but candidate_pred has {len(cand)}")
    champ = None if champion_pred is None else _strings(champion_pred)
    if champ is not None and len(champ) != len(t):
        raise ValueError(f"y_true has {len(t)} rows but champion_pred has {len(champ)}")
    order = _label_order(labels, t, cand, champ or [])
    reasons = [_heldout_rule(len(t), config)]
    if champ is None:
        baseline = [majority_label(y_train, labels)] * len(t)
        reasons.append(
            _compare(
                "beats_baseline",
                "baseline",
                t,
                cand,
                baseline,
                order,
                config,
                "superiority",
                seed,
                n_boot,
            )
        )
        reasons.append(_rule("no_class_regression", True, "no champion to compare", {}))
    else:
        fn = stats.METRICS[config.metric]
        reasons.append(_observed_gain(fn(t, cand, order), fn(t, champ, order), config))
        reasons.append(
            _compare(
                "paired_test", "champion", t, cand, champ, order, config, config.mode, seed, n_boot
            )
        )
        reasons.append(_class_regression_paired(t, cand, champ, order, config))
    return GateDecision(promote=all(r["passed"] for r in reasons), reasons=reasons)


def decide_first_by_cv(
    y_cv_true: Sequence[str],
    y_cv_pred: Sequence[str],
    labels: Sequence[str],
    config: GateConfig,
    seed: int = 0,
    *,
    n_boot: int = GATE_BOOT,
) -> GateDecision:
    """Decide on the first model before a held-out set exists, by cross-validation.

    The candidate's out-of-fold predictions over its own training labels are compared, paired,
    with always predicting the majority of those labels (the same test as ``beats_baseline``
    in :func:`decide`). Only for a first model: with a champion, use :func:`decide` on
    held-out items.

    Args:
        y_cv_true: The training labels.
        y_cv_pred: The out-of-fold prediction of each (every item predicted by a model that
            did not train on it).
        labels: The project's labels, in display order.
        config: Gate settings (``min_heldout`` applies to the number of predictions).
        seed: Seed of the bootstrap.
        n_boot: Bootstrap resamples.

    Returns:
        A :class:`GateDecision` whose first rule, ``judged_by_cross_validation``, says so.
    """
    t, pred = _strings(y_cv_true), _strings(y_cv_pred)
    if len(t) != len(pred):
        raise ValueError(f"y_cv_true has {len(t)} rows but y_cv_pred has {len(pred)}")
    order = _label_order(labels, t, pred)
    reasons = [
        _rule(
            "judged_by_cross_validation",
            True,
            f"no held-out set yet: judged on {len(t)} cross-validated predictions over the "
            "training labels, against their majority label",
            {"n": len(t)},
        ),
        _heldout_rule(len(t), config, "cross-validated predictions"),
    ]
    if t:
        baseline = [majority_label(t, labels)] * len(t)
    else:
        baseline = []
    reasons.append(
        _compare(
            "beats_baseline",
            "baseline",
            t,
            pred,
            baseline,
            order,
            config,
            "superiority",
            seed,
            n_boot,
        )
    )
    reasons.append(_rule("no_class_regression", True, "no champion to compare", {}))
    return GateDecision(promote=all(r["passed"] for r in reasons), reasons=reasons)


# ---------------------------------------------------------------------------------------------
# The legacy gate on metric dicts (unpaired, no statistics)


def _metric_value(metrics: Mapping[str, Any] | None, key: str) -> float:
    """The metric as a float, NaN when it is missing or not a number."""
    try:
        return float((metrics or {})[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _beats_champion(cand_f1: float, champ_f1: float, config: GateConfig) -> dict:
    """Pass only on an improvement strictly greater than `min_delta` (so never on a tie)."""
    if not _defined(cand_f1, champ_f1):
        return _rule("beats_champion", False, "macro-F1 is missing for the candidate or champion")
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
    for label, scores in cand_classes.items():
        if label not in champ_classes:
            continue  # the champion never predicted or saw this class; nothing to regress from
        if int(scores.get("support", 0)) < config.min_class_support:
            unchecked.append(label)
            continue
        old, new = _metric_value(champ_classes[label], "f1"), _metric_value(scores, "f1")
        if not _defined(old, new):
            unchecked.append(label)
            continue
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
    """Legacy gate on metric dicts: unpaired, without statistics (prefer :func:`decide`).

    Kept unchanged for callers that only have :func:`evaluate` dicts: the candidate must beat
    the champion's macro-F1 by more than ``min_delta`` and lose no more than
    ``max_class_drop`` F1 on any class; a first model must beat the baseline's macro-F1. A
    missing or non-numeric macro-F1 fails its rule. Every rule is evaluated and reported.

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

    cand_f1 = _metric_value(candidate, "macro_f1")
    if champion is None:
        base_f1 = _metric_value(baseline, "macro_f1")
        if not _defined(cand_f1, base_f1):
            reasons.append(
                _rule("beats_baseline", False, "macro-F1 is missing for the candidate or baseline")
            )
        else:
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
        reasons.append(_beats_champion(cand_f1, _metric_value(champion, "macro_f1"), config))
        reasons.append(_class_regression(candidate, champion, config))

    return GateDecision(promote=all(r["passed"] for r in reasons), reasons=reasons)
