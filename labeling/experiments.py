"""A/B experiments between the champion and a challenger, safe to watch continuously.

Serving splits traffic by a *unit* (a user or session id): :func:`assign` hashes the unit with
the experiment's salt, so a unit always sees the same model and raising the challenger's share
only moves units from the champion to the challenger. One unit yields several predictions,
and those are correlated (the same user accepts or corrects in the same way), so a metric is a
*ratio* per arm (the sum of the units' numerators over the sum of their denominators) and its
variance comes from the delta method on unit-level sums (:func:`ratio_summary`). Treating the
predictions as independent would understate the variance by the design effect (about 3x for
three perfectly correlated predictions per unit) and call noise significant.

People look at a running experiment every day and the service decides after every look. A
fixed-horizon test peeked at that often declares a winner far more often than its alpha (the
bench measures it). Decisions therefore rest on a *confidence sequence* (Waudby-Smith et al.,
"Time-uniform central limit theory and asymptotic confidence sequences", in GrowthBook's
parametrisation): an interval that covers the true difference at every look at once with
probability ``1 - alpha``, so stopping whenever it excludes 0 keeps the false-positive rate
at most alpha however often anyone looks. Its price is width: it is wider than the
fixed-horizon interval at the same sample size, which :func:`power` and :func:`plan` account
for. The fixed-horizon interval is still reported, for comparison only.

The array helpers (:func:`ratio_from_sums`, :func:`sequential_interval`,
:func:`fixed_interval`, :func:`verdict_codes`, :func:`decision_rules`) work elementwise on
numpy arrays: :func:`compare` and :func:`decide` call them with one experiment's numbers, and
``bench/ab_simulation.py`` with thousands at once, so the simulation measures the very rule
the service applies.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import chi2 as chi2_dist
from scipy.stats import norm

ARMS = ("champion", "challenger")
#: A sample ratio mismatch is called at this p-value: strict, because a false alarm holds every
#: automatic decision, and a real mismatch (a broken assignment or logging path) is large.
SRM_ALPHA = 0.001
#: name -> (higher_is_better, description).
METRICS = {
    "accuracy": (True, "share of the arm's labeled predictions the expert label agrees with"),
    "acceptance_rate": (True, "share of the arm's served predictions that end users accepted"),
    "correction_rate": (False, "share of the arm's predictions with feedback that users corrected"),
}
#: GrowthBook's sequential tuning parameter N*: the total sample size at which the confidence
#: sequence is tightest relative to a fixed-horizon interval.
DEFAULT_TUNING = 5000

ACTIONS = ("continue", "promote", "keep", "rollback")
#: The rules :func:`decide` applies, in order, and the action each one takes.
RULES = (
    ("guardrail", "rollback"),
    ("srm", "continue"),
    ("min_units", "continue"),
    ("promote", "promote"),
    ("futility", "keep"),
    ("max_duration", "keep"),
    ("continue", "continue"),
)
RULE_NAMES = tuple(name for name, _ in RULES)
RULE_ACTIONS = tuple(action for _, action in RULES)


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def _check_metric(metric: str) -> bool:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return METRICS[metric][0]


# --- assignment ---------------------------------------------------------------------------------


def bucket(salt: str, unit: str) -> float:
    """A unit's position in [0, 1) for an experiment: uniform, stable, independent across salts.

    The first 8 bytes (big-endian) of sha256 of ``f"{salt}:{unit}"`` (UTF-8) over 2**64. A new
    salt per experiment keeps the units that were challengers last time from being challengers
    again, which would carry one experiment's effects into the next.
    """
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(salt: str, unit: str, share: float) -> str:
    """``"challenger"`` if the unit's :func:`bucket` is below ``share``, else ``"champion"``.

    Sticky (the same arm at every call) and monotone in ``share``: ramping the challenger from
    10% to 50% only moves units from the champion to the challenger, never back.
    """
    share = _check_fraction("share", share)
    return ARMS[1] if bucket(salt, unit) < share else ARMS[0]


# --- sample ratio mismatch ------------------------------------------------------------------


def srm_chi2(counts, shares) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square statistic and p-value of unit counts against ``shares``, over the last axis.

    Args:
        counts: Units per arm, shape ``(..., k)``.
        shares: The configured split, ``k`` shares summing to 1.

    Returns:
        ``(chi2, p_value)`` of shape ``(...)``; 0 and 1 where there are no units.
    """
    counts = np.asarray(counts, dtype=float)
    shares = np.asarray(shares, dtype=float)
    total = counts.sum(axis=-1, keepdims=True)
    expected = total * shares
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0).sum(axis=-1)
    return stat, chi2_dist.sf(stat, len(shares) - 1)


def srm_test(counts: Sequence[int], shares: Sequence[float], alpha: float = SRM_ALPHA) -> dict:
    """Sample ratio mismatch: chi-square goodness of fit of units per arm to the configured split.

    A split that does not match its configuration (5,000 against 5,400 units on 50/50) means
    units are lost or double-counted somewhere between assignment and logging, and such a loss
    is rarely independent of the outcome, so no comparison of the arms can be trusted.

    Args:
        counts: Units per arm (in :data:`ARMS` order for an A/B split).
        shares: The configured share of each arm; they must sum to 1.
        alpha: Mismatch threshold on the p-value (:data:`SRM_ALPHA`).

    Returns:
        ``{"counts", "expected", "chi2", "p_value", "mismatch" (p < alpha), "alpha"}``; with no
        units, chi2 0.0, p 1.0 and no mismatch.
    """
    alpha = _check_fraction("alpha", alpha)
    counts = [int(c) for c in counts]
    shares = [float(s) for s in shares]
    if len(counts) != len(shares) or len(counts) < 2:
        raise ValueError(f"counts and shares need one entry per arm, got {counts} and {shares}")
    if any(c < 0 for c in counts):
        raise ValueError(f"counts must be non-negative, got {counts}")
    if any(not 0 < s < 1 for s in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-9):
        raise ValueError(f"shares must each be in (0, 1) and sum to 1, got {shares}")
    stat, p = srm_chi2(counts, shares)
    total = sum(counts)
    return {
        "counts": counts,
        "expected": [total * s for s in shares],
        "chi2": float(stat),
        "p_value": float(p),
        "mismatch": bool(p < alpha),
        "alpha": alpha,
    }


# --- one arm's ratio metric -------------------------------------------------------------------


def ratio_from_sums(units, s_n, s_d, s_nn, s_dd, s_nd) -> tuple[np.ndarray, np.ndarray]:
    """A ratio metric and the delta-method variance of its estimator, from unit-level sums.

    With ``n`` units, numerators ``x`` and denominators ``y`` (units with ``y > 0`` only), the
    ratio is ``r = sum x / sum y`` and, to first order,
    ``Var(r) = (var_x - 2 r cov_xy + r**2 var_y) / (n * mean_y**2)`` with the sample
    (co)variances (``n - 1`` in the denominator). Taking sums as input lets a simulation keep
    running totals per look instead of every unit.

    Args:
        units: ``n``; s_n, s_d: sums of ``x`` and ``y``; s_nn, s_dd, s_nd: sums of ``x**2``,
            ``y**2`` and ``x*y``. Arrays broadcast together.

    Returns:
        ``(value, variance)``: value NaN where ``s_d`` is 0, variance NaN also where ``n < 2``.
    """
    n = np.asarray(units, dtype=float)
    s_n, s_d = np.asarray(s_n, dtype=float), np.asarray(s_d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(s_d > 0, s_n / s_d, np.nan)
        var_x = (np.asarray(s_nn) - s_n * s_n / n) / (n - 1)
        var_y = (np.asarray(s_dd) - s_d * s_d / n) / (n - 1)
        cov = (np.asarray(s_nd) - s_n * s_d / n) / (n - 1)
        mean_y = s_d / n
        variance = (var_x - 2 * value * cov + value * value * var_y) / (n * mean_y * mean_y)
    # Sums of squares lose a few ulps to cancellation; a variance cannot be negative.
    variance = np.where((n >= 2) & (s_d > 0), np.maximum(variance, 0.0), np.nan)
    return value, variance


def ratio_summary(num, den, alpha: float = 0.05) -> dict:
    """One arm's ratio metric from per-unit numerators and denominators.

    Units whose denominator is 0 (served, but no labeled prediction yet) are accepted and add
    nothing: they are not counted in ``units`` and do not enter the variance. With one
    observation per unit (every ``den`` 1) the variance is the binomial ``p(1-p)/n`` times
    ``n/(n-1)``, because the sample variance divides by ``n - 1``.

    Args:
        num: Per-unit numerators (e.g. correct predictions), non-negative.
        den: Per-unit denominators (e.g. labeled predictions), non-negative; a unit with a
            positive numerator needs a positive denominator.
        alpha: One minus the level of the normal interval.

    Returns:
        ``{"units" (units with den > 0), "numerator", "denominator", "value", "variance",
        "lo", "hi"}``: value None when the denominator is 0; variance (of the ratio estimator)
        and the interval (clipped to [0, 1]) None with fewer than 2 units.
    """
    alpha = _check_fraction("alpha", alpha)
    x = np.asarray(num, dtype=float).ravel()
    y = np.asarray(den, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"num and den need one entry per unit, got {len(x)} and {len(y)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(x < 0) or np.any(y < 0):
        raise ValueError("num and den must be finite and non-negative")
    if np.any((y == 0) & (x > 0)):
        raise ValueError("num must be 0 where den is 0")
    keep = y > 0
    x, y = x[keep], y[keep]
    n = int(keep.sum())
    value, variance = ratio_from_sums(n, x.sum(), y.sum(), x @ x, y @ y, x @ y)
    value = None if np.isnan(value) else float(value)
    variance = None if np.isnan(variance) else float(variance)
    lo = hi = None
    if value is not None and variance is not None:
        half = float(norm.ppf(1 - alpha / 2)) * math.sqrt(variance)
        lo, hi = max(0.0, value - half), min(1.0, value + half)
    return {
        "units": n,
        "numerator": float(x.sum()),
        "denominator": float(y.sum()),
        "value": value,
        "variance": variance,
        "lo": lo,
        "hi": hi,
    }


# --- the difference between the arms ----------------------------------------------------------


def sequential_rho(alpha: float, tuning: int = DEFAULT_TUNING) -> float:
    """GrowthBook's rho: ``sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / tuning)``.

    It tunes the confidence sequence to be tightest around ``tuning`` total units.
    """
    alpha = _check_fraction("alpha", alpha)
    if tuning <= 0:
        raise ValueError(f"tuning must be positive, got {tuning!r}")
    a = -2 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1)) / tuning)


def cs_halfwidth(variance, n, alpha, rho):
    """Half-width of the asymptotic confidence sequence (Waudby-Smith et al.; GrowthBook).

    ``sqrt(variance * n) * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * ln(sqrt(n rho^2 + 1) / alpha))``
    where ``variance`` is the variance of the difference estimator and ``n`` the total units of
    both arms (so ``variance * n`` is the per-unit variance). Elementwise on arrays.
    """
    variance, n = np.asarray(variance, dtype=float), np.asarray(n, dtype=float)
    r2 = n * rho * rho
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(variance * n) * np.sqrt(
            2 * (r2 + 1) / (n * n * rho * rho) * np.log(np.sqrt(r2 + 1) / alpha)
        )
    return half if half.ndim else float(half)


def sequential_interval(diff, variance, n, alpha: float, rho: float):
    """``(lo, hi, p_value)`` of the confidence sequence at ``alpha``, elementwise.

    The always-valid p-value at this look is the smallest alpha' whose sequence (same rho,
    fixed at the design alpha) excludes 0:
    ``min(1, sqrt(n rho^2 + 1) * exp(-diff^2 n rho^2 / (2 variance (n rho^2 + 1))))``.
    """
    diff, variance = np.asarray(diff, dtype=float), np.asarray(variance, dtype=float)
    n = np.asarray(n, dtype=float)
    half = np.asarray(cs_halfwidth(variance, n, alpha, rho))
    r2 = n * rho * rho
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exponent = -diff * diff * r2 / (2 * variance * (r2 + 1))
        p = np.minimum(1.0, np.sqrt(r2 + 1) * np.exp(exponent))
    # No variance at all: any difference is certain, none is no evidence.
    p = np.where(variance == 0, np.where(diff == 0, 1.0, 0.0), p)
    p = np.where(np.isnan(diff) | np.isnan(variance), np.nan, p)
    return diff - half, diff + half, p


def fixed_interval(diff, variance, alpha: float):
    """``(lo, hi, p_value)`` of the fixed-horizon two-sided z test, elementwise.

    Valid only if the experiment is analysed once, at a sample size fixed in advance.
    """
    diff, variance = np.asarray(diff, dtype=float), np.asarray(variance, dtype=float)
    se = np.sqrt(variance)
    half = float(norm.ppf(1 - alpha / 2)) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * norm.sf(np.abs(diff) / se)
    p = np.where(variance == 0, np.where(diff == 0, 1.0, 0.0), p)
    p = np.where(np.isnan(diff) | np.isnan(variance), np.nan, p)
    return diff - half, diff + half, p


def verdict_codes(lo, hi, higher_is_better: bool) -> np.ndarray:
    """1 where the challenger is significantly better, -1 worse, 0 inconclusive (or NaN)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    up, down = lo > 0, hi < 0
    better, worse = (up, down) if higher_is_better else (down, up)
    return np.where(better, 1, np.where(worse, -1, 0))


VERDICTS = {1: "better", -1: "worse", 0: "inconclusive"}


def compare(
    control: Mapping,
    treatment: Mapping,
    metric: str,
    alpha: float = 0.05,
    tuning: int = DEFAULT_TUNING,
) -> dict:
    """The challenger's difference to the champion on one ratio metric.

    Args:
        control: The champion's :func:`ratio_summary`.
        treatment: The challenger's :func:`ratio_summary`.
        metric: A name in :data:`METRICS` (sets the better direction).
        alpha: Error rate of the confidence sequence (and of the fixed interval).
        tuning: The sequence's tuning parameter (:data:`DEFAULT_TUNING`).

    Returns:
        ``{"metric", "higher_is_better", "diff" (treatment - control, in metric units),
        "variance" (of the difference), "units" (both arms), "sequential": {"lo", "hi",
        "p_value"}, "fixed": {"lo", "hi", "p_value"}, "verdict", "alpha", "champion",
        "challenger" (the arms' values)}``. The verdict ("better" = the challenger is
        significantly better, "worse", "inconclusive") comes from the sequential interval
        only; "fixed" is the z test for one pre-planned look, for comparison. A missing value
        or variance in either arm makes every number None and the verdict "inconclusive".
    """
    higher = _check_metric(metric)
    alpha = _check_fraction("alpha", alpha)
    rho = sequential_rho(alpha, tuning)
    out = {
        "metric": metric,
        "higher_is_better": higher,
        "alpha": alpha,
        "champion": control.get("value"),
        "challenger": treatment.get("value"),
    }
    arms = (control, treatment)
    if any(arm.get("value") is None or arm.get("variance") is None for arm in arms):
        blank = {"lo": None, "hi": None, "p_value": None}
        return out | {
            "diff": None,
            "variance": None,
            "units": sum(int(arm.get("units") or 0) for arm in arms),
            "sequential": dict(blank),
            "fixed": dict(blank),
            "verdict": "inconclusive",
        }
    diff = float(treatment["value"]) - float(control["value"])
    variance = float(treatment["variance"]) + float(control["variance"])
    n = int(control["units"]) + int(treatment["units"])
    s_lo, s_hi, s_p = sequential_interval(diff, variance, n, alpha, rho)
    f_lo, f_hi, f_p = fixed_interval(diff, variance, alpha)
    verdict = VERDICTS[int(verdict_codes(s_lo, s_hi, higher))]
    return out | {
        "diff": diff,
        "variance": variance,
        "units": n,
        "sequential": {"lo": float(s_lo), "hi": float(s_hi), "p_value": float(s_p)},
        "fixed": {"lo": float(f_lo), "hi": float(f_hi), "p_value": float(f_p)},
        "verdict": verdict,
    }


# --- the decision -------------------------------------------------------------------------------


def best_plausible_gain(lo, hi, higher_is_better: bool):
    """The sequential interval's end in the better direction (``hi``, or ``-lo``), elementwise."""
    return np.asarray(hi, dtype=float) if higher_is_better else -np.asarray(lo, dtype=float)


def decision_rules(
    primary_verdict,
    primary_best,
    guardrail_worse,
    srm_mismatch,
    min_arm_units,
    min_units: int,
    mde: float,
    elapsed,
    max_seconds: float | None,
) -> np.ndarray:
    """Index into :data:`RULES` of the rule that decides, elementwise; :func:`decide`'s core.

    Args:
        primary_verdict: :func:`verdict_codes` of the primary metric.
        primary_best: :func:`best_plausible_gain` of the primary metric (NaN when missing).
        guardrail_worse: Whether any guardrail's verdict is "worse".
        srm_mismatch: Whether the split fails the sample ratio test.
        min_arm_units: The smaller arm's units.
        min_units: Units each arm needs before promoting or stopping for futility.
        mde: The minimum detectable effect the experiment was designed for (> 0, metric units).
        elapsed: Seconds since the experiment started.
        max_seconds: Its maximum duration, or None.
    """
    verdict = np.asarray(primary_verdict)
    best = np.asarray(primary_best, dtype=float)
    time_up = (
        np.zeros(np.shape(elapsed), dtype=bool)
        if max_seconds is None
        else np.asarray(elapsed, dtype=float) >= max_seconds
    )
    # The maximum duration ends an experiment whatever its size or split: keeping the champion
    # is always safe, and an experiment that never reaches its units must not run forever.
    enough = np.asarray(min_arm_units) >= min_units
    conditions = [
        np.asarray(guardrail_worse, dtype=bool),
        np.asarray(srm_mismatch, dtype=bool) & ~time_up,
        ~enough & ~time_up,
        enough & (verdict == 1),
        enough & (np.nan_to_num(best, nan=np.inf) < mde),
        time_up,
    ]
    return np.select(conditions, list(range(len(conditions))), default=len(conditions))


def _pct(value: float) -> str:
    return f"{100 * value:g}%"


def describe(result: Mapping) -> str:
    """One compare() result as a sentence with its numbers."""
    metric = result["metric"]
    if result.get("diff") is None:
        return (
            f"{metric}: not enough data yet (each arm needs 2 units with a denominator; "
            f"{result.get('units', 0)} so far)"
        )
    seq = result["sequential"]
    level = _pct(1 - result.get("alpha", 0.05))
    return (
        f"{metric}: challenger {result['challenger']:.3f} vs champion {result['champion']:.3f}, "
        f"{100 * result['diff']:+.1f} points ({level} confidence sequence "
        f"{100 * seq['lo']:+.1f} to {100 * seq['hi']:+.1f}), "
        f"always-valid p = {seq['p_value']:.3g}"
    )


def decide(
    primary: Mapping,
    guardrails: Sequence[Mapping],
    *,
    units: Sequence[int],
    min_units: int,
    mde: float,
    elapsed_seconds: float,
    max_seconds: float | None,
    srm: Mapping | None = None,
) -> dict:
    """The automatic decision after one look at a running experiment.

    Rules, first match wins (:data:`RULES`):

    1. a guardrail's verdict is "worse": ``rollback`` at once. Confidence sequences are valid
       at every look, so this needs no minimum sample: harm is stopped as soon as it shows;
    2. a sample ratio mismatch: ``continue``, every automatic decision held (the split is
       untrustworthy, so are the comparisons) but the maximum duration's keep;
    3. an arm has fewer than ``min_units`` units (and time is not up): ``continue``;
    4. the primary metric is "better": ``promote``;
    5. futility: the sequential interval's end in the better direction is below ``mde``, so
       the challenger cannot win by the effect the experiment was designed to find: ``keep``;
    6. ``max_seconds`` have passed: ``keep``, whatever the units or the split (keeping the
       champion is always safe, and an experiment that never gathers its units must end);
    7. otherwise ``continue``.

    Args:
        primary: :func:`compare` of the primary metric.
        guardrails: :func:`compare` of each guardrail metric.
        units: Units per arm, (champion, challenger).
        min_units: Units each arm needs before rules 4 and 5 apply.
        mde: Minimum detectable effect, in metric units (0.03 = 3 points), > 0.
        elapsed_seconds: Time since the experiment started.
        max_seconds: Its maximum duration, or None for none.
        srm: :func:`srm_test` of the units per arm, or None.

    Returns:
        ``{"action": "continue" | "promote" | "keep" | "rollback", "rule": the deciding rule's
        name, "reasons": [sentences with the numbers], "error_rates": a sentence}``.
    """
    if isinstance(mde, bool) or not isinstance(mde, int | float) or not mde > 0:
        raise ValueError(f"mde must be a positive number, got {mde!r}")
    if len(units) != len(ARMS):
        raise ValueError(f"units needs one count per arm {ARMS}, got {list(units)}")
    if min_units < 0:
        raise ValueError(f"min_units must be non-negative, got {min_units!r}")
    higher = _check_metric(primary["metric"])
    seq = primary["sequential"]
    verdict = {"better": 1, "worse": -1}.get(primary["verdict"], 0)
    best = np.nan
    if seq["lo"] is not None and seq["hi"] is not None:
        best = float(best_plausible_gain(seq["lo"], seq["hi"], higher))
    worse = [g for g in guardrails if g["verdict"] == "worse"]
    mismatch = bool(srm and srm.get("mismatch"))
    rule = int(
        decision_rules(
            verdict,
            best,
            bool(worse),
            mismatch,
            min(units),
            min_units,
            mde,
            elapsed_seconds,
            max_seconds,
        )
    )
    name = RULE_NAMES[rule]
    reasons = []
    if name == "guardrail":
        reasons += [
            f"Guardrail {describe(g)}: the challenger is significantly worse." for g in worse
        ]
        reasons.append("Rolling back to the champion.")
    elif name == "srm":
        reasons.append(
            f"Sample ratio mismatch: {srm['counts']} units per arm against "
            f"{[round(e, 1) for e in srm['expected']]} expected (chi-square p = "
            f"{srm['p_value']:.2g} < {srm['alpha']:g}). The split is untrustworthy, so "
            "automatic decisions are held until it is explained."
        )
        reasons.append(describe(primary) + ".")
    elif name == "min_units":
        reasons.append(
            f"Waiting for {min_units} units per arm before deciding (champion {units[0]}, "
            f"challenger {units[1]})."
        )
        reasons.append(describe(primary) + ".")
    elif name == "promote":
        reasons.append(describe(primary) + ": the challenger is significantly better.")
    elif name == "futility":
        reasons.append(
            describe(primary) + f": the challenger is at best {100 * best:+.1f} points better, "
            f"short of the {100 * mde:.1f} points the experiment was designed to detect; "
            "keeping the champion."
        )
    elif name == "max_duration":
        reasons.append(
            f"The experiment reached its maximum duration ({elapsed_seconds:.0f} of "
            f"{max_seconds:.0f} s) without a significant result; keeping the champion."
        )
        reasons.append(describe(primary) + ".")
    else:
        reasons.append(describe(primary) + ": no conclusion yet.")
    alpha = primary.get("alpha", 0.05)
    error_rates = (
        f"false-positive rate <= {_pct(alpha)} under continuous monitoring (confidence "
        "sequence: valid at every look, however often the experiment is checked)"
    )
    if guardrails:
        error_rates += (
            f"; a false rollback is at most {_pct(alpha)} per guardrail ({len(guardrails)} here)"
        )
    return {
        "action": RULE_ACTIONS[rule],
        "rule": name,
        "reasons": reasons,
        "error_rates": error_rates,
    }


# --- design ---------------------------------------------------------------------------------


def _design_args(baseline, mde, alpha, share, per_unit) -> None:
    _check_fraction("baseline", baseline)
    if isinstance(mde, bool) or not isinstance(mde, int | float) or not 0 < mde < 1:
        raise ValueError(f"mde must be between 0 and 1 (exclusive), got {mde!r}")
    _check_fraction("alpha", alpha)
    _check_fraction("share", share)
    if not per_unit > 0:
        raise ValueError(f"per_unit must be positive, got {per_unit!r}")


def design_variance(baseline: float, mde: float) -> float:
    """The per-observation Bernoulli variance a design assumes: the more conservative one.

    ``p(1-p)`` at ``p = baseline`` or at ``p = baseline + mde/2`` (the arms' midpoint under the
    alternative), whichever is larger. Power falls as the variance grows (a wider sequence and
    a noisier estimate), and ``p(1-p)`` is concave, so this is at least the mean of the two
    arms' true variances: at baseline 0.80 and 3 points it takes 0.80 * 0.20 = 0.16, against
    0.1505 for the arms at 0.80 and 0.83. It assumes the challenger moves the metric up; for a
    lower-is-better metric (a correction rate falling from 0.2) pass ``1 - baseline``: the
    variance is symmetric, so the design is the same.
    """
    mid = min(baseline + mde / 2, 1.0)
    return max(baseline * (1 - baseline), mid * (1 - mid))


def power(
    baseline: float,
    mde: float,
    alpha: float,
    share: float,
    units: int,
    per_unit: float = 1.0,
    tuning: int = DEFAULT_TUNING,
) -> float:
    """The stated power of a design for a Bernoulli ratio metric: a lower bound.

    The probability that the confidence sequence's lower end exceeds 0 at the last look, with
    ``units`` in all, ``share`` of them challengers, ``per_unit`` independent observations per
    unit, and a true difference of ``mde``: ``Phi((mde - h) / se)`` with
    ``se**2 = v / per_unit * (1/n_champion + 1/n_challenger)``, ``v`` from
    :func:`design_variance` (which says how a lower-is-better metric is passed), and
    ``h = cs_halfwidth(se**2, units, alpha, rho)``. Earlier looks can only add detections,
    and ``v`` is a conservative variance, so the real power of :func:`decide` is higher (bar
    the few runs its futility rule stops before they would have been promoted).
    """
    _design_args(baseline, mde, alpha, share, per_unit)
    if units < 2:
        raise ValueError(f"units must be at least 2, got {units!r}")
    n_b, n_a = units * share, units * (1 - share)
    se2 = design_variance(baseline, mde) / per_unit * (1 / n_a + 1 / n_b)
    h = cs_halfwidth(se2, units, alpha, sequential_rho(alpha, tuning))
    return float(norm.cdf((mde - h) / math.sqrt(se2)))


def plan(
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    share: float = 0.5,
    target_power: float = 0.8,
    per_unit: float = 1.0,
    tuning: int = DEFAULT_TUNING,
) -> int:
    """The smallest total number of units whose :func:`power` reaches ``target_power``."""
    _design_args(baseline, mde, alpha, share, per_unit)
    _check_fraction("target_power", target_power)

    def enough(n: int) -> bool:
        return power(baseline, mde, alpha, share, n, per_unit, tuning) >= target_power

    hi = 16
    while not enough(hi):
        hi *= 2
        if hi > 2**50:
            raise ValueError("target_power is out of reach")
    lo = hi // 2 if hi > 16 else 2
    if enough(lo):
        return lo
    while hi - lo > 1:  # enough(hi), not enough(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def fixed_horizon_units(
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    share: float = 0.5,
    target_power: float = 0.8,
    per_unit: float = 1.0,
) -> int:
    """Total units a fixed-horizon two-sided z test needs for ``target_power``, for comparison.

    ``(z_{1-alpha/2} + z_power)**2 * v / per_unit * (1/share + 1/(1-share)) / mde**2``, with the
    same conservative ``v`` as :func:`power`. Valid only when analysed once, at that size.
    """
    _design_args(baseline, mde, alpha, share, per_unit)
    _check_fraction("target_power", target_power)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(target_power)
    v = design_variance(baseline, mde) / per_unit * (1 / share + 1 / (1 - share))
    return math.ceil(z * z * v / (mde * mde))
