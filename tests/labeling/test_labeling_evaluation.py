import json

import pytest

from labeling.evaluation import GateConfig, GateDecision, evaluate, gate, majority_baseline

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
