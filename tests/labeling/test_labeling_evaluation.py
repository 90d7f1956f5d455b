import json

import numpy as np
import pytest

from labeling.evaluation import (
    METRIC_NAMES,
    MODES,
    NI_MIN_ITEMS,
    GateConfig,
    GateDecision,
    decide,
    decide_first_by_cv,
    evaluate,
    gate,
    majority_baseline,
)
from labeling.stats import wilson_interval

LABELS = ["cat", "dog", "bird"]


def metrics(macro_f1, per_class=None):
    """Minimal evaluate()-shaped dict; per_class maps label -> (f1, support)."""
    per_class = per_class or {}
    return {
        "macro_f1": macro_f1,
        "per_class": {
            label: {"precision": f1, "recall": f1, "f1": f1, "support": support}
            for label, (f1, support) in per_class.items()
        },
    }


def rule(decision, name):
    (match,) = [r for r in decision.reasons if r["rule"] == name]
    return match


# --- evaluate -------------------------------------------------------------------------------


def test_evaluate_shape_and_values():
    y_true = ["cat", "cat", "dog", "dog", "cat"]
    y_pred = ["cat", "dog", "dog", "dog", "cat"]
    result = evaluate(y_true, y_pred, LABELS)
    assert json.loads(json.dumps(result)) == result
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(0.8)
    cat = result["per_class"]["cat"]
    assert cat == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert isinstance(cat["support"], int) and isinstance(cat["f1"], float)
    assert result["per_class"]["dog"]["f1"] == pytest.approx(0.8)
    assert result["per_class"]["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # bird never occurs, so it is left out of the macro average instead of counting as 0.
    assert result["macro_f1"] == pytest.approx(0.8)
    assert result["confusion"] == {
        "labels": ["cat", "dog", "bird"],
        "matrix": [[2, 1, 0], [0, 2, 0], [0, 0, 0]],
    }


def test_evaluate_counts_class_only_predicted():
    result = evaluate(["cat", "cat"], ["cat", "bird"], LABELS)
    # present = {cat, bird}: cat f1 = 2/3, bird f1 = 0.
    assert result["macro_f1"] == pytest.approx(1 / 3)


def test_evaluate_appends_labels_missing_from_project():
    result = evaluate(["cat", "fish"], ["cat", "cat"], LABELS)
    assert result["confusion"]["labels"] == ["cat", "dog", "bird", "fish"]
    assert result["per_class"]["fish"]["support"] == 1


def test_evaluate_empty():
    result = evaluate([], [], LABELS)
    assert result["n"] == 0 and result["macro_f1"] == 0.0 and result["accuracy"] == 0.0
    assert json.loads(json.dumps(result)) == result


def test_evaluate_length_mismatch():
    with pytest.raises(ValueError):
        evaluate(["cat"], [], LABELS)


def test_majority_baseline():
    result = majority_baseline(["dog", "cat", "dog"], ["dog", "cat", "dog", "bird"], LABELS)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["per_class"]["dog"]["recall"] == 1.0
    assert result["confusion"]["matrix"][0] == [0, 1, 0]  # the cat row was predicted dog


def test_majority_baseline_ties_follow_label_order():
    result = majority_baseline(["dog", "cat"], ["cat"], LABELS)
    assert result["accuracy"] == 1.0  # cat comes before dog in LABELS
    with pytest.raises(ValueError):
        majority_baseline([], ["cat"], LABELS)


# --- config ---------------------------------------------------------------------------------


def test_gate_config_defaults_and_from_settings():
    assert GateConfig() == GateConfig(
        min_heldout=20, min_delta=0.0, max_class_drop=0.10, min_class_support=10
    )
    config = GateConfig.from_settings(
        {"min_heldout": "50", "min_delta": 0.01, "theme": "dark", "max_class_drop": None}
    )
    assert config == GateConfig(min_heldout=50, min_delta=0.01)
    assert isinstance(config.min_heldout, int)
    assert GateConfig.from_settings({}) == GateConfig()


def test_gate_decision_to_dict_is_json():
    decision = GateDecision(promote=True, reasons=[{"rule": "x", "passed": True, "detail": "d"}])
    assert json.loads(json.dumps(decision.to_dict())) == {
        "promote": True,
        "reasons": [{"rule": "x", "passed": True, "detail": "d"}],
    }


# --- gate rules -----------------------------------------------------------------------------


def test_all_rules_reported_even_when_failing():
    decision = gate(metrics(0.1), metrics(0.9), metrics(0.3), heldout_size=5, config=GateConfig())
    assert [r["rule"] for r in decision.reasons] == [
        "heldout_size",
        "beats_champion",
        "no_class_regression",
    ]
    assert decision.promote is False
    assert all(set(r) == {"rule", "passed", "detail"} for r in decision.reasons)


def test_heldout_size_rule_both_ways():
    config = GateConfig(min_heldout=20)
    ok = gate(metrics(0.8), None, metrics(0.3), heldout_size=20, config=config)
    assert ok.promote is True
    assert rule(ok, "heldout_size") == {
        "rule": "heldout_size",
        "passed": True,
        "detail": "held-out size 20 ≥ minimum 20",
    }
    small = gate(metrics(0.8), None, metrics(0.3), heldout_size=19, config=config)
    assert small.promote is False
    assert rule(small, "heldout_size")["passed"] is False
    assert "19" in rule(small, "heldout_size")["detail"]


def test_first_model_must_beat_baseline_strictly():
    config = GateConfig()
    better = gate(metrics(0.6), None, metrics(0.4), 100, config)
    assert better.promote is True
    assert rule(better, "beats_baseline")["detail"] == "macro-F1 0.600 > majority baseline 0.400"
    equal = gate(metrics(0.4), None, metrics(0.4), 100, config)
    assert equal.promote is False
    assert rule(equal, "beats_baseline")["passed"] is False
    worse = gate(metrics(0.3), None, metrics(0.4), 100, config)
    assert rule(worse, "beats_baseline")["passed"] is False


def test_no_champion_reports_regression_rule_as_passed():
    decision = gate(metrics(0.6), None, metrics(0.4), 100, GateConfig())
    assert rule(decision, "no_class_regression") == {
        "rule": "no_class_regression",
        "passed": True,
        "detail": "no champion to compare",
    }
    assert all(r["rule"] != "beats_champion" for r in decision.reasons)


def test_beats_champion_both_ways():
    config = GateConfig(min_delta=0.02)
    win = gate(metrics(0.812), metrics(0.790), metrics(0.3), 100, config)
    assert win.promote is True
    assert rule(win, "beats_champion")["detail"] == (
        "macro-F1 0.812 vs champion 0.790: gain +0.0220 > 0.020"
    )
    lose = gate(metrics(0.805), metrics(0.790), metrics(0.3), 100, config)
    assert lose.promote is False
    assert rule(lose, "beats_champion")["passed"] is False
    assert rule(lose, "beats_champion")["detail"] == (
        "macro-F1 0.805 vs champion 0.790: gain +0.0150 is not more than the required "
        "min_delta 0.020"
    )
    worse = gate(metrics(0.70), metrics(0.79), metrics(0.3), 100, GateConfig())
    assert worse.promote is False
    assert "the candidate is worse" in rule(worse, "beats_champion")["detail"]
    assert all(r["rule"] != "beats_baseline" for r in lose.reasons)


def test_a_tie_with_the_champion_is_not_promoted():
    # Two retrains on the same labels give the same model: the second must not be promoted.
    decision = gate(metrics(0.982), metrics(0.982), metrics(0.3), 100, GateConfig(min_delta=0.0))
    assert decision.promote is False
    assert rule(decision, "beats_champion") == {
        "rule": "beats_champion",
        "passed": False,
        "detail": "macro-F1 0.982 vs champion 0.982: a tie is not an improvement, "
        "so the champion stays",
    }
    # Float noise must not turn a tie into a win, and a gain of exactly min_delta is not more.
    noisy = gate(metrics(0.1 + 0.2), metrics(0.3), metrics(0.1), 100, GateConfig())
    assert rule(noisy, "beats_champion")["passed"] is False
    edge = gate(metrics(0.8), metrics(0.79), metrics(0.3), 100, GateConfig(min_delta=0.01))
    assert rule(edge, "beats_champion")["passed"] is False


def test_any_real_gain_promotes_at_zero_delta_and_negative_delta_counts_as_zero():
    small = gate(metrics(0.7501), metrics(0.75), metrics(0.3), 100, GateConfig())
    assert small.promote is True
    lax = GateConfig(min_delta=-0.05)
    assert gate(metrics(0.74), metrics(0.75), metrics(0.3), 100, lax).promote is False
    assert gate(metrics(0.75), metrics(0.75), metrics(0.3), 100, lax).promote is False


def test_class_regression_both_ways():
    champion = metrics(0.8, {"cat": (0.90, 40), "dog": (0.80, 40)})
    small_drop = metrics(0.82, {"cat": (0.85, 40), "dog": (0.90, 40)})
    ok = gate(small_drop, champion, metrics(0.3), 100, GateConfig())
    assert ok.promote is True
    assert rule(ok, "no_class_regression") == {
        "rule": "no_class_regression",
        "passed": True,
        "detail": "largest drop: class 'cat' F1 0.900 → 0.850 (drop 0.050 ≤ allowed 0.100)",
    }

    big_drop = metrics(0.82, {"cat": (0.70, 40), "dog": (0.99, 40)})
    bad = gate(big_drop, champion, metrics(0.3), 100, GateConfig())
    assert bad.promote is False
    detail = rule(bad, "no_class_regression")["detail"]
    assert rule(bad, "no_class_regression")["passed"] is False
    assert detail == "largest drop: class 'cat' F1 0.900 → 0.700 (drop 0.200 > allowed 0.100)"


def test_when_no_class_dropped_the_rule_says_so():
    # Every class improved: no class is named as the "worst" with a negative drop.
    champion = metrics(0.90, {"sports": (0.940, 40), "tech": (0.90, 40)})
    candidate = metrics(0.95, {"sports": (0.977, 40), "tech": (0.95, 40)})
    decision = gate(candidate, champion, metrics(0.3), 100, GateConfig())
    assert decision.promote is True
    detail = rule(decision, "no_class_regression")["detail"]
    assert detail == "no class dropped: F1 held or rose for 'sports', 'tech'"
    # A class that holds exactly counts as not dropped too.
    same = gate(metrics(0.95, {"sports": (0.94, 40)}), champion, metrics(0.3), 100, GateConfig())
    assert rule(same, "no_class_regression")["detail"].startswith("no class dropped")


def test_small_class_drop_does_not_veto():
    # Skewed champion: "bird" has only 4 held-out rows, so its F1 is too noisy to judge.
    champion = metrics(0.70, {"cat": (0.9, 60), "dog": (0.8, 30), "bird": (1.0, 4)})
    candidate = metrics(0.72, {"cat": (0.95, 60), "dog": (0.85, 30), "bird": (0.0, 4)})
    decision = gate(candidate, champion, metrics(0.3), 94, GateConfig())
    assert decision.promote is True
    detail = rule(decision, "no_class_regression")["detail"]
    assert "not checked" in detail and "bird" in detail


def test_regression_rule_with_no_class_large_enough():
    champion = metrics(0.7, {"cat": (0.9, 3)})
    candidate = metrics(0.7, {"cat": (0.1, 3)})
    decision = gate(candidate, champion, metrics(0.3), 30, GateConfig())
    assert rule(decision, "no_class_regression")["passed"] is True
    assert "cat" in rule(decision, "no_class_regression")["detail"]


def test_gate_on_real_evaluations():
    y_true = ["cat"] * 12 + ["dog"] * 12
    champion = evaluate(y_true, ["cat"] * 12 + ["dog"] * 10 + ["cat"] * 2, LABELS)
    candidate = evaluate(y_true, ["cat"] * 12 + ["dog"] * 11 + ["cat"], LABELS)
    baseline = majority_baseline(["cat", "cat", "dog"], y_true, LABELS)
    decision = gate(candidate, champion, baseline, len(y_true), GateConfig())
    assert decision.promote is True
    assert json.loads(json.dumps(decision.to_dict()))["promote"] is True


def test_legacy_gate_fails_a_missing_or_nan_metric_instead_of_crashing():
    no_f1 = {"per_class": {}}
    decision = gate(no_f1, metrics(0.8), metrics(0.3), 100, GateConfig())
    assert decision.promote is False
    assert "missing" in rule(decision, "beats_champion")["detail"]
    nan = gate(metrics(float("nan")), None, metrics(0.3), 100, GateConfig())
    assert nan.promote is False and rule(nan, "beats_baseline")["passed"] is False


# --- evaluate: intervals, balanced accuracy, calibration --------------------------------------


def test_evaluate_reports_intervals_that_bracket_the_metrics():
    rng = np.random.default_rng(0)
    y = list(rng.choice(LABELS, 600))
    p = [t if rng.random() < 0.8 else str(rng.choice(LABELS)) for t in y]
    result = evaluate(y, p, LABELS)
    assert json.loads(json.dumps(result)) == result
    intervals = result["intervals"]
    assert intervals["level"] == 0.95
    correct = sum(a == b for a, b in zip(y, p, strict=True))
    lo, hi = wilson_interval(correct, 600)
    assert intervals["accuracy"] == {"lo": lo, "hi": hi, "method": "wilson"}
    for name in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert intervals[name]["lo"] < result[name] < intervals[name]["hi"]
    for label in LABELS:
        bounds = intervals["recall"][label]
        assert bounds["lo"] < result["per_class"][label]["recall"] < bounds["hi"]
    # Same seed, same dict; another seed moves only the bootstrap bounds.
    assert evaluate(y, p, LABELS) == result
    other = evaluate(y, p, LABELS, seed=1)
    assert other["intervals"]["accuracy"] == intervals["accuracy"]
    assert other["intervals"]["macro_f1"] != intervals["macro_f1"]


def test_evaluate_balanced_accuracy_is_mean_recall_over_true_classes():
    y = ["cat"] * 8 + ["dog"] * 2
    p = ["cat"] * 8 + ["cat", "dog"]
    result = evaluate(y, p, LABELS)
    assert result["accuracy"] == pytest.approx(0.9)
    assert result["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)  # bird not counted


def test_evaluate_intervals_on_no_rows_and_on_a_class_with_none():
    empty = evaluate([], [], LABELS)
    assert empty["balanced_accuracy"] == 0.0
    assert empty["intervals"]["macro_f1"] == {"lo": None, "hi": None, "method": "bootstrap"}
    assert json.loads(json.dumps(empty)) == empty
    result = evaluate(["cat", "dog"] * 10, ["cat", "dog"] * 10, LABELS)
    assert result["intervals"]["recall"]["bird"]["lo"] is None
    assert result["intervals"]["recall"]["cat"] == {"lo": 1.0, "hi": 1.0, "method": "bootstrap"}


def test_evaluate_calibration_with_probabilities():
    y = ["cat"] * 8 + ["dog"] * 2
    proba = [[0.8, 0.1, 0.1]] * 10  # confidence 0.8, right on 8 of 10: calibrated
    result = evaluate(y, ["cat"] * 10, LABELS, proba=proba)
    assert result["calibration"]["ece"] == pytest.approx(0.0)
    assert result["calibration"]["brier"] == pytest.approx((8 * 0.06 + 2 * 1.46) / 10)
    assert "calibration" not in evaluate(y, ["cat"] * 10, LABELS)
    with pytest.raises(ValueError):
        evaluate(y, ["cat"] * 10, LABELS, proba=[[1.0, 0.0]] * 10)


# --- GateConfig: the statistical settings ------------------------------------------------------


def test_gate_config_new_defaults_and_strings():
    config = GateConfig()
    assert (config.metric, config.mode, config.alpha, config.margin) == (
        "macro_f1",
        "superiority",
        0.05,
        0.01,
    )
    parsed = GateConfig.from_settings(
        {"metric": "Accuracy", "mode": "Non-Inferiority", "alpha": "0.1", "margin": "0.02"}
    )
    assert parsed == GateConfig(metric="accuracy", mode="non_inferiority", alpha=0.1, margin=0.02)
    assert GateConfig.from_settings({"min_heldout": "30.0"}).min_heldout == 30


@pytest.mark.parametrize(
    "settings,field",
    [
        ({"mode": "best"}, "mode"),
        ({"metric": "f2"}, "metric"),
        ({"alpha": "often"}, "alpha"),
        ({"alpha": 0.7}, "alpha"),
        ({"margin": -0.1}, "margin"),
        ({"min_heldout": "many"}, "min_heldout"),
        ({"min_heldout": 2.5}, "min_heldout"),
    ],
)
def test_gate_config_rejects_bad_values_naming_the_field(settings, field):
    with pytest.raises(ValueError, match=field):
        GateConfig.from_settings(settings)


# --- decide: the paired, statistical gate -------------------------------------------------------


def champion_and_fixes(n, accuracy, fixes, seed=0, breaks=0, labels=LABELS):
    """Held-out labels, a champion right with prob. `accuracy`, and a candidate that fixes
    `fixes` of the champion's mistakes and breaks `breaks` of its right answers."""
    rng = np.random.default_rng(seed)
    y = [str(v) for v in rng.choice(labels, n)]
    champ = [t if rng.random() < accuracy else str(rng.choice(labels)) for t in y]
    wrong = [i for i in range(n) if champ[i] != y[i]]
    right = [i for i in range(n) if champ[i] == y[i]]
    cand = list(champ)
    for i in rng.choice(wrong, fixes, replace=False):
        cand[i] = y[i]
    for i in rng.choice(right, breaks, replace=False):
        cand[i] = next(label for label in labels if label != y[i])
    return y, cand, champ


MODES_METRICS = [(mode, metric) for mode in MODES for metric in METRIC_NAMES]


@pytest.mark.parametrize("mode,metric", MODES_METRICS)
def test_decide_never_promotes_a_tie(mode, metric):
    # A retrain on the same labels gives the same predictions: never a promotion.
    y, _, champ = champion_and_fixes(2000, 0.8, 0)
    config = GateConfig(mode=mode, metric=metric)
    decision = decide(y, champ, champ, y, LABELS, config)
    assert decision.promote is False
    gain = rule(decision, "observed_gain")
    assert gain["passed"] is False and "a tie is not an improvement" in gain["detail"]
    assert gain["numbers"]["gain"] == 0.0


@pytest.mark.parametrize("mode,metric", MODES_METRICS)
def test_decide_promotes_a_clearly_better_candidate(mode, metric):
    y, cand, champ = champion_and_fixes(300, 0.7, 50, breaks=5)
    decision = decide(y, cand, champ, y, LABELS, GateConfig(mode=mode, metric=metric))
    assert decision.promote is True, decision.reasons
    assert [r["rule"] for r in decision.reasons] == [
        "heldout_size",
        "observed_gain",
        "paired_test",
        "no_class_regression",
    ]
    test = rule(decision, "paired_test")
    assert test["numbers"]["test"] == (
        "mcnemar_exact" if metric == "accuracy" else "paired_bootstrap"
    )
    assert json.loads(json.dumps(decision.to_dict())) == decision.to_dict()


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_decide_rejects_a_clearly_worse_candidate(metric):
    y, cand, champ = champion_and_fixes(300, 0.7, 50, breaks=5)
    for mode in MODES:
        decision = decide(y, champ, cand, y, LABELS, GateConfig(mode=mode, metric=metric))
        assert decision.promote is False
        assert rule(decision, "observed_gain")["passed"] is False
        assert rule(decision, "paired_test")["passed"] is False


def test_superiority_needs_significance_and_reports_its_numbers():
    # One item fixed out of 200: a real but tiny observed gain, nowhere near significant.
    y, cand, champ = champion_and_fixes(200, 0.8, 1)
    decision = decide(y, cand, champ, y, LABELS, GateConfig(metric="accuracy"))
    assert rule(decision, "observed_gain")["passed"] is True
    test = rule(decision, "paired_test")
    assert test["passed"] is False and "not significant" in test["detail"]
    assert (test["numbers"]["b"], test["numbers"]["c"]) == (1, 0)
    assert test["numbers"]["p_better"] == 0.5
    assert decision.promote is False


def test_non_inferiority_promotes_an_insignificant_gain_when_a_loss_is_ruled_out():
    # 2,000 items, 30 fixed and 22 broken: +0.4 point, not significant (p ≈ 0.17), but the
    # champion is at most ~0.2 point better at 95%, within the 1-point margin.
    y, cand, champ = champion_and_fixes(2000, 0.8, 30, breaks=22)
    superiority = decide(y, cand, champ, y, LABELS, GateConfig(metric="accuracy"))
    assert superiority.promote is False
    config = GateConfig(metric="accuracy", mode="non_inferiority")
    decision = decide(y, cand, champ, y, LABELS, config)
    assert decision.promote is True
    test = rule(decision, "paired_test")
    assert test["numbers"]["champion_ahead_upper"] < 0.01
    assert "not inferior" in test["detail"]
    for metric in ("macro_f1", "balanced_accuracy"):
        config = GateConfig(metric=metric, mode="non_inferiority")
        assert decide(y, cand, champ, y, LABELS, config).promote is True


def test_non_inferiority_fails_when_the_held_out_set_cannot_rule_out_a_loss():
    # 6 fixed, 5 broken on 100 items: +1 point observed, but the champion may be ~4 points better.
    y, cand, champ = champion_and_fixes(100, 0.8, 6, breaks=5)
    config = GateConfig(metric="accuracy", mode="non_inferiority")
    decision = decide(y, cand, champ, y, LABELS, config)
    assert rule(decision, "observed_gain")["passed"] is True
    test = rule(decision, "paired_test")
    assert test["passed"] is False and "inferiority not ruled out" in test["detail"]
    assert test["numbers"]["champion_ahead_upper"] > 0.03
    assert decision.promote is False


def class_regression_case(small_class_rows=40, small_right=(36, 20)):
    """cat: the champion gets small_right[0] of its rows right, the candidate small_right[1]
    (only on rows the champion also got right); dog and bird: the candidate fixes many."""
    rng = np.random.default_rng(3)
    y, champ, cand = [], [], []
    old, new = small_right
    for i in range(small_class_rows):
        y.append("cat")
        champ.append("cat" if i < old else "dog")
        cand.append("cat" if i < new else "dog")
    for label in ("dog", "bird"):
        for _ in range(200):
            y.append(label)
            champ_right = rng.random() < 0.7
            champ.append(label if champ_right else "cat")
            cand.append(label if champ_right or rng.random() < 0.85 else "cat")
    return y, cand, champ


def test_a_significant_class_regression_blocks_promotion():
    y, cand, champ = class_regression_case()  # cat recall 0.90 -> 0.50 on 40 rows
    decision = decide(y, cand, champ, y, LABELS, GateConfig())
    assert rule(decision, "paired_test")["passed"] is True  # better overall
    regression = rule(decision, "no_class_regression")
    assert regression["passed"] is False and decision.promote is False
    assert regression["detail"].startswith("class 'cat' recall 0.900 → 0.500 (drop 0.400")
    assert "significant" in regression["detail"]
    cat = regression["numbers"]["classes"]["cat"]
    assert (cat["b"], cat["c"], cat["support"]) == (0, 16, 40)
    assert cat["p_worse"] < 1e-4
    assert regression["numbers"]["failed"] == ["cat"]


def test_a_class_drop_over_tolerance_but_not_significant_does_not_block():
    # 12 cat rows: 10 -> 8 right is a 0.167 recall drop, but two rows is no evidence (p = 0.25).
    y, cand, champ = class_regression_case(small_class_rows=12, small_right=(10, 8))
    decision = decide(y, cand, champ, y, LABELS, GateConfig())
    regression = rule(decision, "no_class_regression")
    assert regression["passed"] is True and decision.promote is True
    assert "not significant" in regression["detail"] and "'cat'" in regression["detail"]
    assert regression["numbers"]["not_significant"] == ["cat"]
    # A stricter alpha never makes it fail; a class under min_class_support is not judged.
    small = decide(y, cand, champ, y, LABELS, GateConfig(min_class_support=20))
    assert rule(small, "no_class_regression")["numbers"]["unchecked"] == ["cat"]


def test_decide_fails_rules_whose_metric_is_undefined():
    decision = decide([], [], [], ["cat"], LABELS, GateConfig(min_heldout=0))
    assert decision.promote is False
    gain = rule(decision, "observed_gain")
    assert gain["passed"] is False and "undefined" in gain["detail"]
    assert gain["numbers"]["gain"] is None
    assert rule(decision, "paired_test")["passed"] is False
    assert json.loads(json.dumps(decision.to_dict())) == decision.to_dict()


def test_decide_every_rule_carries_numbers_and_is_deterministic():
    y, cand, champ = champion_and_fixes(300, 0.7, 20, breaks=8)
    first = decide(y, cand, champ, y, LABELS, GateConfig(), seed=5)
    assert all(set(r) == {"rule", "passed", "detail", "numbers"} for r in first.reasons)
    assert decide(y, cand, champ, y, LABELS, GateConfig(), seed=5) == first
    with pytest.raises(ValueError):
        decide(y, cand[:-1], champ, y, LABELS, GateConfig())


def test_decide_heldout_size_and_min_delta():
    y, cand, champ = champion_and_fixes(300, 0.7, 50)
    small = decide(y, cand, champ, y, LABELS, GateConfig(min_heldout=301))
    assert small.promote is False and rule(small, "heldout_size")["passed"] is False
    strict = decide(y, cand, champ, y, LABELS, GateConfig(min_delta=0.5))
    assert rule(strict, "observed_gain")["passed"] is False and strict.promote is False


# --- the first model ----------------------------------------------------------------------------


def test_first_model_must_be_significantly_better_than_the_majority():
    y_train = ["cat"] * 30 + ["dog"] * 10
    y, good, _ = champion_and_fixes(200, 0.9, 0)
    decision = decide(y, good, None, y_train, LABELS, GateConfig())
    assert decision.promote is True
    assert [r["rule"] for r in decision.reasons] == [
        "heldout_size",
        "beats_baseline",
        "no_class_regression",
    ]
    assert rule(decision, "no_class_regression")["detail"] == "no champion to compare"
    majority = decide(y, ["cat"] * len(y), None, y_train, LABELS, GateConfig())
    assert majority.promote is False
    assert rule(majority, "beats_baseline")["numbers"]["gain"] == 0.0


def test_first_model_on_skewed_labels_is_judged_by_the_configured_metric():
    # 90% cat: a model that finds the dogs but misfiles some cats has lower accuracy than
    # always saying cat, yet is the useful one; macro-F1 (the default) promotes it.
    y = ["cat"] * 180 + ["dog"] * 20
    pred = ["cat"] * 160 + ["dog"] * 20 + ["dog"] * 18 + ["cat"] * 2
    y_train = ["cat"] * 90 + ["dog"] * 10
    assert decide(y, pred, None, y_train, LABELS, GateConfig()).promote is True
    by_accuracy = decide(y, pred, None, y_train, LABELS, GateConfig(metric="accuracy"))
    assert by_accuracy.promote is False


def test_first_model_by_cross_validation():
    y, cv_pred, _ = champion_and_fixes(120, 0.85, 0)
    decision = decide_first_by_cv(y, cv_pred, LABELS, GateConfig())
    assert decision.promote is True
    first = decision.reasons[0]
    assert first["rule"] == "judged_by_cross_validation" and first["passed"] is True
    assert "cross-validated" in first["detail"] and first["numbers"]["n"] == 120
    assert [r["rule"] for r in decision.reasons][1:] == [
        "heldout_size",
        "beats_baseline",
        "no_class_regression",
    ]
    constant = decide_first_by_cv(y, [y[0]] * 120, LABELS, GateConfig())
    assert constant.promote is False
    few = decide_first_by_cv(y[:10], cv_pred[:10], LABELS, GateConfig())
    assert few.promote is False and rule(few, "heldout_size")["passed"] is False


def test_non_inferiority_on_few_items_needs_a_significant_gain():
    # 60 items, the candidate fixes two and breaks none: every bootstrap resample favours it,
    # a bound that would promote on no evidence; below NI_MIN_ITEMS superiority's test applies.
    y, cand, champ = champion_and_fixes(60, 0.8, 2)
    assert len(y) < NI_MIN_ITEMS
    decision = decide(y, cand, champ, y, LABELS, GateConfig(mode="non_inferiority"))
    test = rule(decision, "paired_test")
    assert test["passed"] is False and decision.promote is False
    assert test["numbers"]["mode"] == "superiority"
    assert test["numbers"]["requested_mode"] == "non_inferiority"
    assert test["detail"].startswith(f"fewer than {NI_MIN_ITEMS} items")
    # Accuracy's exact bound holds at any size, and it does not rule out a loss here either.
    exact = decide(y, cand, champ, y, LABELS, GateConfig(mode="non_inferiority", metric="accuracy"))
    assert rule(exact, "paired_test")["numbers"]["mode"] == "non_inferiority"
    assert exact.promote is False
    # With the fixes significant, the candidate is promoted all the same.
    y, cand, champ = champion_and_fixes(60, 0.7, 10)
    assert decide(y, cand, champ, y, LABELS, GateConfig(mode="non_inferiority")).promote is True
