import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, f1_score

from labeling import stats

LABELS = ["cat", "dog", "bird"]


def noisy(n, accuracy, seed, labels=LABELS):
    """True labels and predictions that are right with probability `accuracy`."""
    rng = np.random.default_rng(seed)
    y = rng.choice(labels, n)
    wrong = rng.choice(labels, n)
    return list(y), list(np.where(rng.random(n) < accuracy, y, wrong))


# --- Wilson -----------------------------------------------------------------------------------


def test_wilson_known_values():
    # 8 of 10 at 95%: the textbook interval (Wilson 1927; e.g. Newcombe 1998, method 3).
    lo, hi = stats.wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = stats.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)


def test_wilson_narrows_with_confidence_and_data_and_knows_nothing_on_no_rows():
    wide, narrow = stats.wilson_interval(80, 100), stats.wilson_interval(80, 100, alpha=0.2)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]
    small, large = stats.wilson_interval(8, 10), stats.wilson_interval(800, 1000)
    assert large[1] - large[0] < (small[1] - small[0]) / 5
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)
    with pytest.raises(ValueError):
        stats.wilson_interval(1, 10, alpha=0)


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_agree_with_sklearn():
    y, p = noisy(300, 0.7, seed=1)
    assert set(stats.METRICS) == {"macro_f1", "accuracy", "balanced_accuracy"}
    assert stats.METRICS["macro_f1"](y, p, LABELS) == pytest.approx(f1_score(y, p, average="macro"))
    assert stats.METRICS["accuracy"](y, p, LABELS) == pytest.approx(np.mean(np.equal(y, p)))
    assert stats.METRICS["balanced_accuracy"](y, p, LABELS) == pytest.approx(
        balanced_accuracy_score(y, p)
    )


def test_macro_f1_ignores_classes_nobody_used_and_counts_predicted_ones():
    # bird never occurs: not averaged in. fish is only predicted: it counts, with F1 0.
    assert stats.METRICS["macro_f1"](["cat", "dog"], ["cat", "dog"], LABELS) == 1.0
    assert stats.METRICS["macro_f1"](["cat", "cat"], ["cat", "fish"], LABELS) == pytest.approx(
        1 / 3
    )
    assert math.isnan(stats.METRICS["accuracy"]([], [], LABELS))


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_interval_brackets_the_estimate_and_repeats_for_a_seed():
    y, p = noisy(400, 0.8, seed=2)
    estimate = stats.METRICS["macro_f1"](y, p, LABELS)
    lo, hi = stats.bootstrap_interval("macro_f1", y, p, labels=LABELS)
    assert lo < estimate < hi
    assert 0.03 < hi - lo < 0.15
    assert stats.bootstrap_interval("macro_f1", y, p, labels=LABELS) == (lo, hi)
    assert stats.bootstrap_interval("macro_f1", y, p, seed=1, labels=LABELS) != (lo, hi)
    narrow = stats.bootstrap_interval("macro_f1", y, p, alpha=0.5, labels=LABELS)
    assert lo < narrow[0] < narrow[1] < hi


def test_bootstrap_of_perfect_predictions_is_a_point_and_of_nothing_is_undefined():
    y = ["cat", "dog"] * 20
    assert stats.bootstrap_interval("accuracy", y, y) == (1.0, 1.0)
    lo, hi = stats.bootstrap_interval("accuracy", [], [])
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_by_cell_counts_matches_resampling_rows():
    # Named metrics resample confusion cells (multinomial), functions resample row indices:
    # the two must describe the same distribution.
    y, p = noisy(300, 0.75, seed=3)

    def macro_f1(t, q, labels):
        present = sorted(set(t) | set(q))
        return f1_score(t, q, labels=present, average="macro", zero_division=0)

    by_cells = stats.bootstrap_distribution("macro_f1", y, p, n_boot=2000, seed=4)
    by_rows = stats.bootstrap_distribution(macro_f1, y, p, n_boot=400, seed=5)
    assert by_cells.mean() == pytest.approx(by_rows.mean(), abs=0.006)
    assert by_cells.std() == pytest.approx(by_rows.std(), rel=0.15)


def test_bootstrap_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        stats.bootstrap_interval("f2", ["cat"], ["cat"])


def test_class_recall_intervals():
    y = ["cat"] * 50 + ["dog"] * 50
    p = ["cat"] * 45 + ["dog"] * 5 + ["dog"] * 25 + ["cat"] * 25
    out = stats.class_recall_intervals(y, p, LABELS, extra=("balanced_accuracy",))
    cat_lo, cat_hi = out["recall"]["cat"]
    dog_lo, dog_hi = out["recall"]["dog"]
    assert cat_lo < 0.9 < cat_hi and dog_lo < 0.5 < dog_hi
    assert cat_lo > dog_hi  # 45/50 is clearly better than 25/50
    assert all(math.isnan(v) for v in out["recall"]["bird"])  # no bird rows
    assert out["balanced_accuracy"][0] < 0.7 < out["balanced_accuracy"][1]


# --- calibration ------------------------------------------------------------------------------


def test_brier_score():
    assert stats.brier_score(["cat", "dog"], [[1, 0, 0], [0, 1, 0]], LABELS) == 0.0
    # One row: (1 - 0.7)^2 + 0.2^2 + 0.1^2.
    assert stats.brier_score(["cat"], [[0.7, 0.2, 0.1]], LABELS) == pytest.approx(0.14)
    # Binary: the multiclass sum counts the error twice (once per column).
    y = ["a", "b", "b", "a"]
    pos = np.array([0.2, 0.9, 0.4, 0.6])
    proba = np.column_stack([1 - pos, pos])
    expected = 2 * brier_score_loss([v == "b" for v in y], pos)
    assert stats.brier_score(y, proba, ["a", "b"]) == pytest.approx(expected)
    # A true label without a column: its probability is 0, an error of 1.
    assert stats.brier_score(["fish"], [[0.5, 0.5, 0.0]], LABELS) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="shape"):
        stats.brier_score(["cat"], [[1.0, 0.0]], LABELS)


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    # Confidence 0.8 on every row and right on 8 of 10: perfectly calibrated.
    y = ["cat"] * 8 + ["dog"] * 2
    proba = [[0.8, 0.1, 0.1]] * 10
    assert stats.expected_calibration_error(y, proba, LABELS) == pytest.approx(0.0)
    # Certain on every row, right on half: ECE 0.5.
    y = ["cat", "dog"] * 5
    assert stats.expected_calibration_error(y, [[1.0, 0.0, 0.0]] * 10, LABELS) == pytest.approx(0.5)
    # Two bins: 4 rows at 0.95 all right (gap 0.05), 6 rows at 0.55 with 3 right (gap 0.05).
    y = ["cat"] * 4 + ["cat", "dog"] * 3
    proba = [[0.95, 0.05, 0.0]] * 4 + [[0.55, 0.45, 0.0]] * 6
    assert stats.expected_calibration_error(y, proba, LABELS) == pytest.approx(0.05)


# --- McNemar ------------------------------------------------------------------------------------


def table(b, c, both=3, neither=2):
    """Correctness of two models on rows: b only the candidate right, c only the champion."""
    cand = [True] * both + [True] * b + [False] * c + [False] * neither
    champ = [True] * both + [False] * b + [True] * c + [False] * neither
    return cand, champ


@pytest.mark.parametrize("b,c", [(0, 0), (5, 0), (0, 5), (3, 1), (7, 2), (2, 9), (6, 6), (12, 4)])
def test_mcnemar_exact_matches_binomtest_on_small_tables(b, c):
    result = stats.mcnemar_exact(*table(b, c))
    assert (result["b"], result["c"], result["n_discordant"]) == (b, c, b + c)
    if b + c == 0:
        assert result["p_better"] == result["p_worse"] == result["p_two_sided"] == 1.0
        return
    for key, alternative in (
        ("p_better", "greater"),
        ("p_worse", "less"),
        ("p_two_sided", "two-sided"),
    ):
        assert result[key] == pytest.approx(binomtest(b, b + c, 0.5, alternative).pvalue)


def test_mcnemar_only_discordant_rows_count():
    # 5 wins and no loss: p = 1/32 whatever the rows both models got right or wrong.
    assert stats.mcnemar_exact(*table(5, 0, both=0, neither=0))["p_better"] == 1 / 32
    assert stats.mcnemar_exact(*table(5, 0, both=500, neither=80))["p_better"] == 1 / 32
    with pytest.raises(ValueError):
        stats.mcnemar_exact([True], [True, False])


def test_paired_accuracy_lower_bound_agrees_with_mcnemar():
    for b in range(0, 16):
        for c in range(0, 16):
            cand, champ = table(b, c, both=30, neither=5)
            bounds = stats.paired_accuracy_bounds(cand, champ, alpha=0.05)
            significant = stats.mcnemar_exact(cand, champ)["p_better"] < 0.05
            assert (bounds["lower"] > 0) == significant, (b, c)
            assert bounds["lower"] <= bounds["delta"] <= bounds["upper"]
            assert bounds["delta"] == pytest.approx((b - c) / len(cand))


# --- paired bootstrap ------------------------------------------------------------------------


def test_paired_bootstrap_of_identical_models_never_says_better():
    y, p = noisy(200, 0.8, seed=6)
    for metric in stats.METRICS:
        result = stats.paired_bootstrap(metric, y, p, p, labels=LABELS)
        assert result["delta"] == 0.0
        assert result["lo"] == result["hi"] == 0.0
        assert result["p_better"] == 1.0


def test_paired_bootstrap_sees_a_clear_gain_and_a_clear_loss():
    rng = np.random.default_rng(7)
    y, champ = noisy(400, 0.7, seed=8)
    # The candidate fixes 60 of the champion's mistakes and breaks nothing.
    wrong = [i for i in range(400) if champ[i] != y[i]]
    fixed = set(rng.choice(wrong, 60, replace=False).tolist())
    cand = [y[i] if i in fixed else champ[i] for i in range(400)]
    better = stats.paired_bootstrap("macro_f1", y, cand, champ, labels=LABELS)
    assert better["delta"] > 0.1 and better["lo"] > 0 and better["lower"] > better["lo"]
    assert better["p_better"] == 0.0 and better["p_worse"] == 1.0
    assert better["lo"] < better["delta"] < better["hi"]
    worse = stats.paired_bootstrap("macro_f1", y, champ, cand, labels=LABELS)
    assert worse["delta"] == pytest.approx(-better["delta"])
    assert worse["p_better"] == 1.0 and worse["hi"] < 0
    assert stats.paired_bootstrap("macro_f1", y, cand, champ, labels=LABELS) == better


def test_paired_bootstrap_uncertain_gain_is_not_significant():
    y, champ = noisy(100, 0.8, seed=9)
    wrong = [i for i in range(100) if champ[i] != y[i]]
    cand = list(champ)
    cand[wrong[0]] = y[wrong[0]]  # one item fixed out of 100
    result = stats.paired_bootstrap("accuracy", y, cand, champ, labels=LABELS)
    assert result["delta"] == pytest.approx(0.01)
    assert result["p_better"] > 0.2 and result["lo"] <= 0


def test_paired_bootstrap_checks_lengths():
    with pytest.raises(ValueError, match="row counts"):
        stats.paired_bootstrap("accuracy", ["cat"], ["cat"], [])
