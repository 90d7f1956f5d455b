"""A/B experiments: assignment, the sample ratio test, ratio metrics and the decision rule.

The last tests run bench/ab_simulation.py's simulation (the product's own rule on thousands of
synthetic experiments, fixed seed) and hold the error rates the design promises: an equal
challenger is promoted at most alpha of the time however often the experiment is looked at,
while peeking at a fixed-horizon test is not; a challenger truly 3 points better is promoted
at least as often as the design's stated power.
"""

import hashlib
import math

import numpy as np
import pytest

from bench.ab_simulation import simulate
from labeling import experiments as ex
from labeling.experiments import RULE_NAMES


def arm(correct: int, total: int) -> dict:
    """One arm's summary: `total` units with one prediction each, `correct` of them right."""
    num = np.r_[np.ones(correct), np.zeros(total - correct)]
    return ex.ratio_summary(num, np.ones(total))


# --- assignment -------------------------------------------------------------------------------


def test_bucket_is_the_documented_hash():
    digest = hashlib.sha256(b"exp-1:user-42").digest()
    assert ex.bucket("exp-1", "user-42") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0 <= ex.bucket("exp-1", "user-42") < 1


def test_assignment_is_sticky_and_only_moves_units_to_the_challenger_as_the_share_grows():
    units = [f"user-{i}" for i in range(2000)]
    first = [ex.assign("exp-1", u, 0.1) for u in units]
    assert first == [ex.assign("exp-1", u, 0.1) for u in units]
    at_half = [ex.assign("exp-1", u, 0.5) for u in units]
    assert all(b == "challenger" for a, b in zip(first, at_half, strict=True) if a == "challenger")
    assert sum(a == "challenger" for a in at_half) > sum(a == "challenger" for a in first)


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_the_challenger_gets_its_configured_share(share):
    arms = [ex.assign("exp-2", f"session-{i}", share) for i in range(20_000)]
    assert abs(arms.count("challenger") / len(arms) - share) <= 0.015


def test_a_new_salt_reshuffles_the_units():
    units = [f"user-{i}" for i in range(20_000)]
    a = np.array([ex.assign("exp-a", u, 0.5) == "challenger" for u in units])
    b = np.array([ex.assign("exp-b", u, 0.5) == "challenger" for u in units])
    # Independent splits agree on about half the units; identical ones on all.
    assert abs(np.mean(a == b) - 0.5) < 0.02


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: ex.assign("s", "u", 0.0), "share"),
        (lambda: ex.assign("s", "u", 1.5), "share"),
        (lambda: ex.compare(arm(8, 10), arm(8, 10), "accuracy", alpha=0), "alpha"),
        (lambda: ex.compare(arm(8, 10), arm(8, 10), "f1"), "metric"),
        (lambda: ex.srm_test([10, 10], [0.5, 0.5], alpha=2), "alpha"),
        (lambda: ex.srm_test([10, 10], [0.6, 0.6]), "shares"),
        (lambda: ex.plan(0.8, 0.03, share=1), "share"),
        (lambda: ex.power(0.8, 0.03, 1.0, 0.5, 1000), "alpha"),
        (lambda: ex.ratio_summary([1, 2], [1]), "num"),
    ],
)
def test_bad_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --- sample ratio mismatch ------------------------------------------------------------------


def test_sample_ratio_test():
    even = ex.srm_test([5000, 5000], [0.5, 0.5])
    assert even["chi2"] == 0.0 and even["p_value"] == 1.0 and not even["mismatch"]
    skewed = ex.srm_test([5000, 5400], [0.5, 0.5])
    assert skewed["p_value"] < 0.001 and skewed["mismatch"]
    assert skewed["expected"] == [5200.0, 5200.0] and skewed["alpha"] == ex.SRM_ALPHA
    ramp = ex.srm_test([1030, 8970], [0.1, 0.9])
    assert ramp["p_value"] > 0.001 and not ramp["mismatch"]
    empty = ex.srm_test([0, 0], [0.5, 0.5])
    assert (empty["chi2"], empty["p_value"], empty["mismatch"]) == (0.0, 1.0, False)


# --- ratio metrics --------------------------------------------------------------------------


def test_one_prediction_per_unit_gives_the_binomial_variance():
    s = arm(800, 1000)
    assert s["units"] == 1000 and s["value"] == pytest.approx(0.8)
    # The sample variance divides by n - 1, so the delta method reads p(1-p)/(n-1).
    assert s["variance"] == pytest.approx(0.8 * 0.2 / 999)
    assert s["variance"] == pytest.approx(0.8 * 0.2 / 1000, rel=0.002)
    assert s["lo"] < 0.8 < s["hi"]


def test_correlated_predictions_of_a_unit_triple_the_variance():
    # Every unit's 3 predictions share their outcome: 3,000 observations carry the information
    # of 1,000, and the delta method sees it where a binomial over predictions does not.
    rng = np.random.default_rng(1)
    outcome = (rng.random(1000) < 0.8).astype(float)
    s = ex.ratio_summary(3 * outcome, np.full(1000, 3.0))
    p = s["value"]
    naive = p * (1 - p) / 3000
    assert s["variance"] / naive == pytest.approx(3.0, rel=0.01)


def test_delta_method_matches_the_spread_of_the_ratio_over_replications():
    # Units with 1-6 predictions each and their own accuracy: the ratio's variance across
    # replications is what the delta method estimates from one replication.
    rng = np.random.default_rng(2)
    values, variances = [], []
    for _ in range(800):
        den = rng.integers(1, 7, size=300).astype(float)
        p_unit = rng.beta(8, 2, size=300)
        num = rng.binomial(den.astype(int), p_unit).astype(float)
        s = ex.ratio_summary(num, den)
        values.append(s["value"])
        variances.append(s["variance"])
    assert np.mean(variances) == pytest.approx(np.var(values), rel=0.1)


def test_units_without_a_denominator_add_nothing():
    with_idle = ex.ratio_summary([1, 0, 1, 0, 0], [1, 1, 1, 0, 0])
    assert with_idle == ex.ratio_summary([1, 0, 1], [1, 1, 1])
    assert with_idle["units"] == 3
    nothing = ex.ratio_summary([0, 0], [0, 0])
    assert nothing["value"] is None and nothing["variance"] is None and nothing["units"] == 0
    single = ex.ratio_summary([2], [3])
    assert single["value"] == pytest.approx(2 / 3) and single["variance"] is None


# --- comparing the arms ---------------------------------------------------------------------


def test_a_lower_correction_rate_is_better():
    champion, challenger = arm(300, 2000), arm(200, 2000)  # corrected 15% vs 10%
    result = ex.compare(champion, challenger, "correction_rate")
    assert result["diff"] == pytest.approx(-0.05)
    assert result["higher_is_better"] is False and result["verdict"] == "better"
    assert ex.compare(challenger, champion, "correction_rate")["verdict"] == "worse"
    assert ex.compare(champion, challenger, "accuracy")["verdict"] == "worse"


def test_the_confidence_sequence_is_wider_than_the_fixed_interval_and_its_p_value_agrees():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(50, 5000))
        a = arm(int(rng.binomial(n, 0.8)), n)
        b = arm(int(rng.binomial(n, 0.82)), n)
        r = ex.compare(a, b, "accuracy")
        seq, fixed = r["sequential"], r["fixed"]
        assert seq["lo"] < fixed["lo"] <= fixed["hi"] < seq["hi"]
        assert seq["p_value"] >= fixed["p_value"]
        # The always-valid p-value is below alpha exactly when the sequence excludes 0.
        assert (seq["p_value"] < 0.05) == (r["verdict"] != "inconclusive")


def test_cs_halfwidth_works_on_arrays():
    rho = ex.sequential_rho(0.05)
    n = np.array([100, 1000, 10_000])
    var = 0.64 / n
    assert np.allclose(
        ex.cs_halfwidth(var, n, 0.05, rho),
        [ex.cs_halfwidth(v, k, 0.05, rho) for v, k in zip(var, n, strict=True)],
    )
    assert ex.sequential_rho(0.05, 5000) == pytest.approx(
        math.sqrt((-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 5000)
    )


def test_an_arm_without_data_makes_the_comparison_inconclusive():
    r = ex.compare(arm(8, 10), ex.ratio_summary([1], [1]), "accuracy")
    assert r["diff"] is None and r["variance"] is None and r["verdict"] == "inconclusive"
    assert r["sequential"] == {"lo": None, "hi": None, "p_value": None}
    assert r["fixed"]["p_value"] is None


# --- the decision ---------------------------------------------------------------------------


BETTER = ex.compare(arm(800, 1000), arm(900, 1000), "accuracy")
OPEN = ex.compare(arm(800, 1000), arm(810, 1000), "accuracy")  # inconclusive, could be +3
FUTILE = ex.compare(arm(8000, 10_000), arm(8000, 10_000), "accuracy")  # cannot be +3
WORSE_GUARD = ex.compare(arm(100, 1000), arm(200, 1000), "correction_rate")
FINE_GUARD = ex.compare(arm(100, 1000), arm(100, 1000), "correction_rate")
SETTINGS = {"min_units": 100, "mde": 0.03, "elapsed_seconds": 3600.0, "max_seconds": 86400.0}


def run(primary, guardrails=(), units=(1000, 1000), **overrides):
    return ex.decide(primary, list(guardrails), units=list(units), **(SETTINGS | overrides))


def test_fixtures_read_as_intended():
    assert BETTER["verdict"] == "better" and OPEN["verdict"] == "inconclusive"
    assert OPEN["sequential"]["hi"] > 0.03 > FUTILE["sequential"]["hi"]
    assert WORSE_GUARD["verdict"] == "worse" and FINE_GUARD["verdict"] == "inconclusive"


def test_a_worse_guardrail_rolls_back_at_once_even_before_the_minimum_sample():
    d = run(BETTER, [FINE_GUARD, WORSE_GUARD], units=(10, 10), min_units=100)
    assert d["action"] == "rollback" and d["rule"] == "guardrail"
    assert any("correction_rate" in r and "worse" in r for r in d["reasons"])


def test_a_sample_ratio_mismatch_holds_a_promotion():
    srm = ex.srm_test([5000, 5400], [0.5, 0.5])
    d = run(BETTER, [FINE_GUARD], units=(5000, 5400), srm=srm)
    assert d["action"] == "continue" and d["rule"] == "srm"
    assert "held" in d["reasons"][0] and "5400" in d["reasons"][0]
    fine = ex.srm_test([5000, 5050], [0.5, 0.5])
    assert run(BETTER, [FINE_GUARD], units=(5000, 5050), srm=fine)["action"] == "promote"


def test_nothing_is_decided_before_each_arm_has_its_minimum():
    d = run(BETTER, units=(1000, 60), min_units=100)
    assert d["action"] == "continue" and d["rule"] == "min_units"
    assert "100 units per arm" in d["reasons"][0]


def test_a_significantly_better_challenger_is_promoted_with_its_numbers():
    d = run(BETTER, [FINE_GUARD])
    assert d["action"] == "promote"
    assert d["reasons"][0].startswith("accuracy: challenger 0.900 vs champion 0.800, +10.0 points")
    assert "95% confidence sequence" in d["reasons"][0] and "always-valid p =" in d["reasons"][0]
    assert "5%" in d["error_rates"] and "continuous monitoring" in d["error_rates"]


def test_a_challenger_that_cannot_reach_the_mde_is_not_waited_for():
    d = run(FUTILE)
    assert d["action"] == "keep" and d["rule"] == "futility"
    assert "3.0 points" in d["reasons"][0]
    # For a lower-is-better metric the better direction is down: -lo is the best case.
    futile_lower = ex.compare(arm(1000, 10_000), arm(1000, 10_000), "correction_rate")
    assert run(futile_lower)["rule"] == "futility"
    assert run(futile_lower, mde=0.005)["rule"] == "continue"


def test_the_maximum_duration_keeps_the_champion_and_otherwise_the_experiment_goes_on():
    assert run(OPEN, elapsed_seconds=86400.0)["action"] == "keep"
    assert run(OPEN, elapsed_seconds=86400.0)["rule"] == "max_duration"
    d = run(OPEN)
    assert d["action"] == "continue" and d["rule"] == "continue"
    assert run(OPEN, max_seconds=None, elapsed_seconds=1e9)["action"] == "continue"


# --- design ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("baseline", "mde", "share"), [(0.8, 0.03, 0.5), (0.6, 0.05, 0.2)])
def test_plan_gives_the_smallest_size_with_the_target_power(baseline, mde, share):
    n = ex.plan(baseline, mde, share=share)
    assert ex.power(baseline, mde, 0.05, share, n) >= 0.8
    assert ex.power(baseline, mde, 0.05, share, n - 1) < 0.8
    # Watching continuously costs sample size over a single pre-planned look.
    assert n > ex.fixed_horizon_units(baseline, mde, share=share)


def test_more_predictions_per_unit_need_fewer_units():
    assert ex.plan(0.8, 0.03, per_unit=3) < ex.plan(0.8, 0.03) / 2


# --- the simulation (bench/ab_simulation.py) ------------------------------------------------


def test_peeking_at_every_look_keeps_false_promotions_below_alpha_only_with_the_sequence():
    units = ex.plan(0.80, 0.03)
    aa = simulate(1000, baseline=0.80, effect=0.0, units=units, peek=100, seed=20)
    promoted = np.mean(aa["rule"] == RULE_NAMES.index("promote"))
    assert promoted <= 0.05
    assert np.mean(aa["naive_better"]) > 0.05  # the fixed-horizon test, peeked at every look


def test_a_challenger_three_points_better_is_promoted_at_least_at_the_stated_power():
    units = ex.plan(0.80, 0.03)
    stated = ex.power(0.80, 0.03, 0.05, 0.5, units)
    ab = simulate(1000, baseline=0.80, effect=0.03, units=units, peek=100, seed=21)
    promoted = np.mean(ab["rule"] == RULE_NAMES.index("promote"))
    assert promoted >= stated - 3 * math.sqrt(stated * (1 - stated) / 1000)


def test_the_design_assumes_the_larger_variance_of_the_baseline_and_the_arms_midpoint():
    assert ex.design_variance(0.8, 0.03) == pytest.approx(0.8 * 0.2)
    assert ex.design_variance(0.3, 0.06) == pytest.approx(0.33 * 0.67)
    for baseline, mde in [(0.8, 0.03), (0.3, 0.06), (0.5, 0.1), (0.05, 0.02)]:
        arms = (baseline * (1 - baseline) + (baseline + mde) * (1 - baseline - mde)) / 2
        assert ex.design_variance(baseline, mde) >= arms
