"""The gate's error rates on synthetic pairs at n = 500 (bench/gate_simulation.py, fewer trials).

Held to the figures the gate is meant to have: a candidate truly 2 points worse is promoted at
most 5% of the time in either mode, and superiority promotes a candidate 5 points better at
least 80% of the time.
"""

import pytest

from bench.gate_simulation import (
    candidate_accuracy,
    error_phi,
    promotion_rates,
    reuse_rates,
    spread_for_phi,
)

TRIALS = 300


def test_simulated_models_have_the_asked_for_quality_and_error_correlation():
    s = spread_for_phi(0.6)
    assert error_phi(0.85, s) == pytest.approx(0.6)
    # Five points of macro-F1 on five skewed classes is about five points of accuracy.
    assert candidate_accuracy("macro_f1", 0.05, (0.30, 0.25, 0.20, 0.15, 0.10)) == pytest.approx(
        0.90, abs=0.01
    )


@pytest.mark.parametrize("n_classes", [2, 5])
def test_two_points_worse_is_rarely_promoted_in_either_mode(n_classes):
    rates = promotion_rates(n_classes, 500, -0.02, TRIALS, seed=11)
    assert rates["superiority"] <= 0.05
    assert rates["non_inferiority"] <= 0.05


@pytest.mark.parametrize("n_classes", [2, 5])
def test_five_points_better_is_usually_promoted_under_superiority(n_classes):
    rates = promotion_rates(n_classes, 500, 0.05, TRIALS, seed=12, modes=("superiority",))
    assert rates["superiority"] >= 0.80


def test_a_champion_is_inflated_on_the_items_it_won_on_and_fresh_items_undo_it():
    # Why Corrigo decides on audits labeled since the champion's promotion once there are
    # enough: on the set it won on, the champion looks better than it is, and a truly better
    # candidate is promoted less often there than on fresh items.
    r = reuse_rates(2, 200, 200, 0.05, 400, seed=13, mode="superiority")
    assert r["won"] > 0.1 and r["inflation"] > 0.01
    assert r["fresh"] > r["reused"] + 0.1
