import json
import math

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from labeling import alerting, monitoring, stats
from labeling.evaluation import evaluate
from labeling.monitoring import (
    CBPE,
    compare_estimate,
    feedback_verdict,
    merge_estimates,
    merge_stats,
    merge_windows,
    summarize_estimate,
    top_confidence,
    window_metrics,
    window_stats,
)

LABELS = ["cat", "dog"]
ABC = np.array(["a", "b", "c"])


def dumps(obj) -> str:
    """JSON text, failing on NaN or infinity (as a strict JSON column would)."""
    return json.dumps(obj, allow_nan=False)


def flat(obj, prefix=""):
    """Nested dicts and lists as {path: leaf}."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in flat(val, f"{prefix}/{key}").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in flat(val, f"{prefix}/{i}").items()}
    return {prefix: obj}


def assert_same(a, b, rel=1e-9):
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        if isinstance(fa[key], float) or isinstance(fb[key], float):
            assert fa[key] == pytest.approx(fb[key], rel=rel, abs=1e-12), key
        else:
            assert fa[key] == fb[key], key


# --- window metrics on a tiny example -----------------------------------------------------------

TINY = {
    "predicted": ["cat", "cat", "dog", "cat"],
    "confidence": [0.95, 0.55, 0.75, None],
    "feedback": [
        {"predicted": "cat", "correct": True, "label": None},
        {"predicted": "cat", "correct": False, "label": "dog"},
        {"predicted": "dog", "correct": None, "label": "dog"},
        {"predicted": "cat", "correct": None, "label": None},  # a comment alone
    ],
    "labeled": [
        {"true": "cat", "predicted": "cat", "proba": {"cat": 0.9, "dog": 0.1}, "audit": True},
        {"true": "dog", "predicted": "cat", "proba": {"cat": 0.6, "dog": 0.4}, "audit": True},
        {"true": "dog", "predicted": "dog", "proba": {"cat": 0.2, "dog": 0.8}, "audit": True},
        # A disputed item sent to an expert: labelled, but not part of the random audit.
        {"true": "cat", "predicted": "dog", "proba": {"cat": 0.3, "dog": 0.7}, "audit": False},
    ],
}


def tiny(**overrides):
    args = TINY | overrides
    return window_metrics(
        LABELS,
        args["predicted"],
        args["confidence"],
        feedback=args["feedback"],
        labeled=args["labeled"],
    )


def test_window_metrics_match_hand_computed_values():
    m = tiny()
    assert m["volume"] == 4
    assert m["predicted"] == {
        "cat": {"count": 3, "share": 0.75},
        "dog": {"count": 1, "share": 0.25},
    }
    conf = m["confidence"]
    assert conf["n"] == 3 and conf["mean"] == pytest.approx((0.95 + 0.55 + 0.75) / 3)
    assert conf["edges"][:2] == pytest.approx([0.0, 0.1]) and len(conf["edges"]) == 11
    # 0.55 in (0.5, 0.6], 0.75 in (0.7, 0.8], 0.95 in (0.9, 1.0].
    assert conf["counts"] == [0, 0, 0, 0, 0, 1, 0, 1, 0, 1]

    fb = m["feedback"]
    assert (fb["n"], fb["accepted"], fb["corrected"], fb["other"]) == (3, 2, 1, 1)
    lo, hi = stats.wilson_interval(1, 3)
    assert fb["correction_rate"] == {"value": 1 / 3, "lo": lo, "hi": hi, "method": "wilson"}
    assert fb["acceptance_rate"]["value"] == pytest.approx(2 / 3)

    audit = m["labeled"]["audit"]
    assert audit["n"] == 3
    assert audit["confusion"] == {"labels": LABELS, "matrix": [[1, 0], [1, 1]]}
    lo, hi = stats.wilson_interval(2, 3)
    assert audit["accuracy"] == {"value": 2 / 3, "lo": lo, "hi": hi, "method": "wilson"}
    cat, dog = audit["per_class"]["cat"], audit["per_class"]["dog"]
    assert (cat["support"], cat["predicted"], dog["support"], dog["predicted"]) == (1, 2, 2, 1)
    assert cat["precision"]["value"] == 0.5 and cat["recall"]["value"] == 1.0
    assert cat["f1"]["value"] == pytest.approx(2 / 3)
    assert dog["precision"]["value"] == 1.0 and dog["recall"]["value"] == 0.5
    # The held-out evaluation computes the same point values from the same rows.
    held = evaluate(["cat", "dog", "dog"], ["cat", "cat", "dog"], LABELS)
    for label in LABELS:
        for name in ("precision", "recall", "f1"):
            assert audit["per_class"][label][name]["value"] == pytest.approx(
                held["per_class"][label][name]
            )
    assert audit["macro_f1"]["value"] == pytest.approx(held["macro_f1"])

    cal = audit["calibration"]
    # Confidences 0.9 (right), 0.6 (wrong), 0.8 (right).
    assert cal["n"] == 3
    assert cal["ece"] == pytest.approx((0.1 + 0.6 + 0.2) / 3)
    assert cal["brier"] == pytest.approx((0.02 + 0.72 + 0.08) / 3)
    rel = cal["reliability"]
    assert [b["count"] for b in rel] == [0, 0, 0, 0, 0, 1, 0, 1, 1, 0]
    assert rel[5]["accuracy"] == 0.0 and rel[5]["confidence"] == pytest.approx(0.6)
    assert rel[8] == {
        "lo": pytest.approx(0.8),
        "hi": pytest.approx(0.9),
        "count": 1,
        "confidence": pytest.approx(0.9),
        "accuracy": 1.0,
    }
    assert all(b["confidence"] is None and b["accuracy"] is None for b in cal["reliability"][:5])

    # "all" adds the disputed item the model got wrong: lower than the audit estimate.
    everything = m["labeled"]["all"]
    assert everything["confusion"]["matrix"] == [[1, 1], [1, 1]]
    assert everything["accuracy"]["value"] == 0.5
    dumps(m)


def test_window_metrics_agree_with_the_held_out_calibration_figures():
    rng = np.random.default_rng(3)
    proba = rng.dirichlet([1, 1, 1], size=300)
    true = [str(ABC[rng.choice(3, p=p)]) for p in proba]
    pred = [str(v) for v in ABC[proba.argmax(axis=1)]]
    labeled = [
        {"true": t, "predicted": p, "proba": list(q), "audit": True}
        for t, p, q in zip(true, pred, proba, strict=True)
    ]
    m = window_metrics(list(ABC), pred, list(proba.max(axis=1)), labeled=labeled)
    held = evaluate(true, pred, list(ABC), proba=proba)
    cal = m["labeled"]["audit"]["calibration"]
    assert cal["ece"] == pytest.approx(held["calibration"]["ece"])
    assert cal["brier"] == pytest.approx(held["calibration"]["brier"])
    audit = m["labeled"]["audit"]
    assert audit["accuracy"]["value"] == pytest.approx(held["accuracy"])
    # The same seed's bootstrap on the same rows: recall intervals identical to evaluate's.
    for label in ABC:
        got = audit["per_class"][label]["recall"]
        want = held["intervals"]["recall"][label]
        assert (got["lo"], got["hi"]) == pytest.approx((want["lo"], want["hi"]))
    assert audit["accuracy"]["lo"] == pytest.approx(held["intervals"]["accuracy"]["lo"])
    # The reliability diagram's counts add up to the rows, its accuracies to the right ones.
    rel = cal["reliability"]
    assert sum(b["count"] for b in rel) == 300
    right = sum(b["accuracy"] * b["count"] for b in rel if b["count"])
    assert right == pytest.approx(sum(t == p for t, p in zip(true, pred, strict=True)))


def test_bootstrap_intervals_are_seeded_and_contain_the_value():
    rng = np.random.default_rng(0)
    true = rng.choice(ABC, 200)
    pred = np.where(rng.random(200) < 0.7, true, rng.choice(ABC, 200))
    labeled = [{"true": t, "predicted": p, "audit": True} for t, p in zip(true, pred, strict=True)]
    a = window_metrics(list(ABC), list(pred), labeled=labeled, seed=5)
    b = window_metrics(list(ABC), list(pred), labeled=labeled, seed=5)
    c = window_metrics(list(ABC), list(pred), labeled=labeled, seed=6)
    assert a == b
    assert a["labeled"]["audit"]["per_class"] != c["labeled"]["audit"]["per_class"]
    for label in ABC:
        for name in ("precision", "recall", "f1"):
            est = a["labeled"]["audit"]["per_class"][label][name]
            assert est["method"] == "bootstrap"
            assert est["lo"] < est["value"] < est["hi"]
            assert est["hi"] - est["lo"] < 0.35


def test_window_without_labels_or_predictions_gives_none_not_errors():
    m = window_metrics(LABELS, ["cat", "dog", "dog"], [0.9, None, 0.6])
    for source in ("audit", "all"):
        block = m["labeled"][source]
        assert block["n"] == 0
        assert block["accuracy"] == {"value": None, "lo": None, "hi": None, "method": "wilson"}
        assert block["macro_f1"]["value"] is None and block["macro_f1"]["lo"] is None
        for scores in block["per_class"].values():
            for name in ("precision", "recall", "f1"):
                assert scores[name] == {
                    "value": None,
                    "lo": None,
                    "hi": None,
                    "method": "bootstrap",
                }
        assert block["calibration"]["brier"] is None and block["calibration"]["ece"] is None
    assert m["feedback"]["correction_rate"]["value"] is None
    assert m["confidence"]["mean"] == pytest.approx(0.75)

    empty = window_metrics(LABELS, [])
    assert empty["volume"] == 0 and empty["confidence"]["mean"] is None
    assert empty["predicted"]["cat"] == {"count": 0, "share": None}
    dumps(m)
    dumps(empty)
    assert json.loads(dumps(m)) == m

    # Labels but no probabilities: accuracy is known, calibration is not.
    only = window_metrics(LABELS, ["cat"], labeled=[{"true": "dog", "predicted": "cat"}])
    assert only["labeled"]["all"]["accuracy"]["value"] == 0.0
    assert only["labeled"]["all"]["calibration"]["ece"] is None
    assert only["labeled"]["audit"]["n"] == 0


def test_a_class_never_predicted_has_no_precision_but_a_recall():
    labeled = [
        {"true": "dog", "predicted": "cat", "audit": True},
        {"true": "cat", "predicted": "cat", "audit": True},
    ]
    m = window_metrics(LABELS, ["cat", "cat"], labeled=labeled)
    dog = m["labeled"]["audit"]["per_class"]["dog"]
    assert dog["precision"]["value"] is None and dog["precision"]["lo"] is None
    assert dog["recall"]["value"] == 0.0
    assert dog["f1"]["value"] == 0.0


def test_inputs_as_arrays_annotation_reasons_and_stray_labels():
    labeled = [
        # Probabilities as a sequence in the project's label order, an annotation's reason.
        {"true": "cat", "predicted": "cat", "proba": [0.7, 0.3], "reason": "audit"},
        {"true": "fox", "predicted": "dog", "proba": [0.4, 0.6], "reason": "disputed"},
    ]
    m = window_metrics(LABELS, np.array(["cat", "dog"]), np.array([0.7, 0.6]), labeled=labeled)
    assert m["labels"] == ["cat", "dog", "fox"]
    assert m["confidence"]["counts"][6] == 1 and m["confidence"]["counts"][5] == 1
    assert m["labeled"]["audit"]["n"] == 1 and m["labeled"]["all"]["n"] == 2
    assert m["labeled"]["all"]["per_class"]["fox"]["support"] == 1
    # The stray true label had no probability column: it counts as probability 0.
    assert m["labeled"]["all"]["calibration"]["brier"] == pytest.approx(
        ((0.3**2 + 0.3**2) + (0.4**2 + 0.6**2 + 1)) / 2
    )
    with pytest.raises(ValueError):
        window_metrics(LABELS, [], labeled=[{"true": "cat", "predicted": "cat", "proba": [1]}])


def random_window(rng, n, n_labeled, labels=tuple(ABC)):
    proba = rng.dirichlet([2] * len(labels), size=n)
    pred = [labels[i] for i in proba.argmax(axis=1)]
    true = [labels[rng.choice(len(labels), p=p)] for p in proba]
    rows = rng.choice(n, n_labeled, replace=False)
    labeled = [
        {
            "true": true[i],
            "predicted": pred[i],
            "proba": dict(zip(labels, proba[i], strict=True)),
            "audit": bool(rng.random() < 0.5),
        }
        for i in rows
    ]
    feedback = [
        {"predicted": pred[i], "correct": bool(true[i] == pred[i]), "label": None}
        for i in rng.choice(n, n // 4, replace=False)
    ]
    return {
        "predicted": pred,
        "confidence": list(proba.max(axis=1)),
        "labeled": labeled,
        "feedback": feedback,
    }


def test_merging_windows_equals_computing_on_their_union():
    rng = np.random.default_rng(7)
    w1, w2, w3 = (random_window(rng, n, m) for n, m in ((400, 60), (250, 40), (90, 0)))
    # A label the project does not know turns up in the second window only.
    w2["predicted"][0] = "zebra"
    w2["labeled"].append({"true": "zebra", "predicted": "a", "audit": True})
    parts = [window_metrics(list(ABC), **w) for w in (w1, w2, w3)]
    union = window_metrics(
        list(ABC),
        **{key: w1[key] + w2[key] + w3[key] for key in w1},
    )
    merged = merge_windows(parts)
    assert merged["labels"] == ["a", "b", "c", "zebra"]
    # Counts exactly; float sums to rounding; intervals (Wilson and the seeded bootstrap of
    # the merged confusion matrix) recomputed from the merged counts, so equal as well.
    assert_same(merged, union)
    assert merged["volume"] == 740
    assert merged["labeled"]["all"]["n"] == 101
    # The merge does not need the raw rows: stored JSON is enough.
    stored = [json.loads(dumps(p)) for p in parts]
    assert_same(merge_windows(stored), union)
    # A merged interval is narrower than either window's.
    widths = [
        w["labeled"]["all"]["per_class"]["a"]["recall"]["hi"]
        - w["labeled"]["all"]["per_class"]["a"]["recall"]["lo"]
        for w in (parts[0], parts[1], merged)
    ]
    assert widths[2] < min(widths[:2])


def test_merge_of_nothing_and_of_one_window():
    assert merge_windows([])["volume"] == 0
    one = tiny()
    assert merge_windows([one]) == one
    assert merge_stats([one["stats"]]) == one["stats"]
    with pytest.raises(ValueError):
        merge_stats([window_stats(LABELS, [], n_bins=10), window_stats(LABELS, [], n_bins=5)])


def test_audit_estimate_is_unbiased_where_all_labels_are_not():
    # The model is right 80% of the time; experts also label the disputed items, which are
    # mostly errors. The audit sample gives about 80%, all labels together much less.
    rng = np.random.default_rng(11)
    n = 5000
    true = rng.choice(ABC, n)
    right = rng.random(n) < 0.8
    pred = np.where(right, true, np.array([ABC[(list(ABC).index(t) + 1) % 3] for t in true]))
    audit = rng.choice(n, 400, replace=False)
    disputed = rng.choice(np.flatnonzero(~right), 300, replace=False)
    labeled = [{"true": true[i], "predicted": pred[i], "audit": True} for i in audit] + [
        {"true": true[i], "predicted": pred[i], "audit": False} for i in set(disputed) - set(audit)
    ]
    m = window_metrics(list(ABC), list(pred), labeled=labeled)
    acc = m["labeled"]["audit"]["accuracy"]
    assert acc["lo"] < 0.8 < acc["hi"]
    assert m["labeled"]["all"]["accuracy"]["hi"] < 0.6


def test_small_helpers():
    assert top_confidence({"cat": 0.2, "dog": 0.8}) == 0.8
    assert top_confidence(None) is None and top_confidence({}) is None
    assert feedback_verdict("cat", None, "cat") == "accepted"
    assert feedback_verdict("cat", None, "dog") == "corrected"
    assert feedback_verdict("cat", False, None) == "corrected"
    assert feedback_verdict("cat", None, None) == "other"


def test_confusion_intervals_from_counts_match_the_row_bootstrap():
    rng = np.random.default_rng(2)
    true = list(rng.choice(ABC, 150))
    pred = [t if rng.random() < 0.75 else str(rng.choice(ABC)) for t in true]
    cm = evaluate(true, pred, list(ABC))["confusion"]["matrix"]
    got = stats.confusion_intervals(cm, list(ABC), seed=4)
    want = stats.class_recall_intervals(true, pred, list(ABC), seed=4, extra=("macro_f1",))
    assert got["recall"] == want["recall"]
    assert got["macro_f1"] == want["macro_f1"]
    empty = stats.confusion_intervals([[0] * 3] * 3, list(ABC))
    assert all(math.isnan(v) for v in empty["precision"]["a"])


# --- CBPE ---------------------------------------------------------------------------------------


def logistic_world(seed, d=5):
    """Inputs and labels from a fixed logistic labelling function (so LR is well specified)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, 3)) * 1.2

    def draw(n, scale=1.0):
        X = rng.normal(size=(n, d)) * scale
        p = softmax(X @ W, axis=1)
        y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
        return X, ABC[y]

    return draw


@pytest.fixture(scope="module")
def world():
    draw = logistic_world(0)
    X_train, y_train = draw(3000)
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    X_cal, y_cal = draw(5000)
    X_ref, y_ref = draw(5000)
    # Covariate shift: inputs concentrated near the origin, where the classes overlap and the
    # model is less confident; the labelling function is unchanged.
    X_shift, y_shift = draw(5000, scale=0.35)
    return {
        "model": model,
        "cal": (X_cal, y_cal),
        "ref": (X_ref, y_ref),
        "shift": (X_shift, y_shift),
    }


def proba_of(model, X, temperature=1.0):
    return softmax(model.decision_function(X) * temperature, axis=1)


@pytest.mark.parametrize("temperature, method", [(1.0, "identity"), (3.0, "isotonic")])
def test_cbpe_tracks_accuracy_under_covariate_shift(world, temperature, method):
    model = world["model"]
    X_cal, y_cal = world["cal"]
    cbpe = CBPE(list(ABC)).fit(y_cal, proba_of(model, X_cal, temperature))
    # The well-specified model is calibrated as it is; the overconfident one is recalibrated.
    assert cbpe.method == method, cbpe.reason
    realised = {}
    for name in ("ref", "shift"):
        X, y = world[name]
        P = proba_of(model, X, temperature)
        pred = ABC[P.argmax(axis=1)]
        realised[name] = float(np.mean(pred == y))
        est = cbpe.estimate(P, pred)
        assert abs(est["accuracy"]["value"] - realised[name]) < 0.02, name
        if name == "shift":
            shift_est, shift_P, shift_pred, shift_y = est, P, pred, y
    # The shift costs well over ten points, and the estimate follows it down...
    assert realised["shift"] < realised["ref"] - 0.15
    # ...where the raw confidence of the overconfident model would not.
    if temperature > 1:
        assert shift_P.max(axis=1).mean() - realised["shift"] > 0.1
    # Per class too, the estimates are close to what the labels show.
    real = evaluate(list(shift_y), list(shift_pred), list(ABC))
    for label in ABC:
        for name in ("precision", "recall"):
            got = shift_est["per_class"][label][name]["value"]
            assert abs(got - real["per_class"][label][name]) < 0.05, (label, name)


def test_concept_shift_leaves_the_estimate_high_the_comparison_and_an_alert_say_so(world):
    model = world["model"]
    X_cal, y_cal = world["cal"]
    cbpe = CBPE(list(ABC)).fit(y_cal, proba_of(model, X_cal))
    X, y = world["ref"]
    P = proba_of(model, X)
    pred = ABC[P.argmax(axis=1)]

    # Before the shift: the realised accuracy lies inside the estimate's band.
    def realised_block(truth, audit_rows):
        labeled = [{"true": truth[i], "predicted": pred[i], "audit": True} for i in audit_rows]
        return window_metrics(list(ABC), list(pred), list(P.max(axis=1)), labeled=labeled)

    est = cbpe.estimate(P, pred)
    before = compare_estimate(est, realised_block(y, range(len(y)))["labeled"]["audit"])
    assert before["accuracy"]["inside"] is True

    # Concept shift: for inputs with x0 > 0.3 the labels move on by one class; the inputs,
    # and so the model's probabilities and the estimate, do not change.
    flipped = y.copy()
    part = X[:, 0] > 0.3
    flipped[part] = ABC[(np.searchsorted(ABC, y[part]) + 1) % 3]
    window = realised_block(flipped, range(len(y)))
    after = compare_estimate(est, window["labeled"]["audit"])
    acc = after["accuracy"]
    assert acc["estimated"] > 0.7
    assert acc["realised"] < acc["estimated"] - 0.15
    assert acc["inside"] is False and acc["difference"] < -0.15
    assert acc["lo"] <= acc["estimated"] <= acc["hi"]

    # With only the 500 audited rows labelled, the band widens but still excludes the value.
    audits = np.random.default_rng(1).choice(len(y), 500, replace=False)
    few = compare_estimate(est, realised_block(flipped, audits)["labeled"]["audit"])
    assert few["n_realised"] == 500
    assert few["accuracy"]["hi"] - few["accuracy"]["lo"] > acc["hi"] - acc["lo"]
    assert few["accuracy"]["inside"] is False

    # The default realised-accuracy rule (champion accuracy on the calibration set) fires,
    # the CBPE rule does not.
    P_cal = proba_of(model, X_cal)
    champion = evaluate(list(y_cal), list(ABC[P_cal.argmax(axis=1)]), list(ABC))
    rules = {r["id"]: r for r in alerting.default_rules(champion)}
    record = window | {"cbpe": est}
    fired = {}
    for rule_id in ("accuracy_below_champion", "cbpe_accuracy_below_champion"):
        value = alerting.rule_value(rules[rule_id], [record])
        _, fired[rule_id] = alerting.step(rules[rule_id], None, value, 0.0)
    assert fired == {
        "accuracy_below_champion": "alert.firing",
        "cbpe_accuracy_below_champion": None,
    }


def test_isotonic_is_chosen_only_when_it_lowers_the_held_out_ece():
    rng = np.random.default_rng(5)
    labels = list(ABC)

    def sample(n, temperature):
        logits = rng.normal(size=(n, 3)) * 1.5
        true = ABC[
            (rng.random(n)[:, None] > np.cumsum(softmax(logits, axis=1), axis=1)).sum(axis=1)
        ]
        return true, softmax(logits * temperature, axis=1)

    # Calibrated: labels drawn from the very probabilities. Identity, and it says why.
    y, P = sample(3000, 1.0)
    calibrated = CBPE(labels).fit(y, P)
    assert calibrated.method == "identity"
    assert calibrated.isotonic is None
    assert calibrated.fit_report["p_calibrated"] >= 0.05
    assert np.array_equal(calibrated.calibrate(P), P)

    # Badly overconfident: isotonic, and it lowers the ECE on rows it was not fitted on.
    y, P = sample(3000, 4.0)
    fixed = CBPE(labels).fit(y, P)
    assert fixed.method == "isotonic", fixed.reason
    report = fixed.fit_report
    assert report["ece_isotonic"] < report["ece_raw"] - 0.1
    y_new, P_new = sample(3000, 4.0)
    raw = stats.expected_calibration_error(y_new, P_new, labels)
    after = stats.expected_calibration_error(y_new, fixed.calibrate(P_new), labels)
    assert raw > 0.15 and after < raw / 3
    assert np.allclose(fixed.calibrate(P_new).sum(axis=1), 1.0)

    # Too few rows to calibrate on: identity.
    assert CBPE(labels).fit(y[:30], P[:30]).method == "identity"


def test_a_calibration_that_does_not_lower_the_held_out_ece_is_not_used(monkeypatch):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2000, 3)) * 1.5
    y = ABC[(rng.random(2000)[:, None] > np.cumsum(softmax(logits, axis=1), axis=1)).sum(axis=1)]
    P = softmax(logits * 4, axis=1)  # miscalibrated: isotonic would be chosen
    assert CBPE(list(ABC)).fit(y, P).method == "isotonic"

    # A calibration map that makes things worse (it reverses every probability) loses the
    # out-of-fold comparison, so the raw probabilities are kept.
    def reversed_maps(P, t):
        return [{"x": [0.0, 1.0], "y": [1.0, 0.0]} for _ in range(P.shape[1])]

    monkeypatch.setattr(monitoring, "_fit_isotonic", reversed_maps)
    kept = CBPE(list(ABC)).fit(y, P)
    assert kept.method == "identity" and kept.isotonic is None
    assert kept.fit_report["p_calibrated"] < 0.05
    assert kept.fit_report["ece_isotonic"] >= kept.fit_report["ece_raw"]
    assert "does not lower" in kept.reason


def test_calibrator_is_json_and_applies_like_sklearn():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(2000, 3)) * 1.5
    y = ABC[(rng.random(2000)[:, None] > np.cumsum(softmax(logits, axis=1), axis=1)).sum(axis=1)]
    P = softmax(logits * 3, axis=1)
    cbpe = CBPE(list(ABC)).fit(y, P)
    assert cbpe.method == "isotonic"
    data = json.loads(dumps(cbpe.to_dict()))
    assert data["kind"] == "cbpe" and data["method"] == "isotonic"
    assert all(isinstance(m["x"], list) and isinstance(m["y"], list) for m in data["isotonic"])
    restored = CBPE.from_dict(data)
    P_new = softmax(rng.normal(size=(500, 3)) * 4, axis=1)
    assert np.allclose(restored.calibrate(P_new), cbpe.calibrate(P_new))
    # The stored thresholds map each column as sklearn's fitted isotonic regression would.
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(P[:, 0], y == "a")
    m = data["isotonic"][0]
    assert np.allclose(np.interp(P_new[:, 0], m["x"], m["y"]), iso.predict(P_new[:, 0]))
    with pytest.raises(ValueError):
        CBPE.from_dict({"kind": "cbpe", "labels": list(ABC), "method": "isotonic"})


def test_estimate_std_matches_label_draws_from_the_calibrated_probabilities():
    rng = np.random.default_rng(13)
    P = rng.dirichlet([1.0, 1.0, 1.0], size=800)
    cbpe = CBPE(list(ABC))  # unfitted: identity
    est = cbpe.estimate(P)
    pred = P.argmax(axis=1)
    draws = {"accuracy": []} | {
        f"{name}:{c}": [] for name in ("precision", "recall", "f1") for c in range(3)
    }
    for _ in range(600):
        y = (rng.random(len(P))[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
        draws["accuracy"].append(np.mean(y == pred))
        for c in range(3):
            tp = np.sum((y == c) & (pred == c))
            draws[f"precision:{c}"].append(tp / np.sum(pred == c))
            draws[f"recall:{c}"].append(tp / np.sum(y == c))
            draws[f"f1:{c}"].append(2 * tp / (np.sum(y == c) + np.sum(pred == c)))
    assert est["accuracy"]["value"] == pytest.approx(np.mean(draws["accuracy"]), abs=0.005)
    assert est["accuracy"]["std"] == pytest.approx(np.std(draws["accuracy"]), rel=0.15)
    for c, label in enumerate(ABC):
        for name in ("precision", "recall", "f1"):
            got = est["per_class"][label][name]
            sim = draws[f"{name}:{c}"]
            assert got["value"] == pytest.approx(np.mean(sim), abs=0.01), (label, name)
            assert got["std"] == pytest.approx(np.std(sim), rel=0.2), (label, name)
            assert got["lo"] == pytest.approx(max(0, got["value"] - 3 * got["std"]))
    dumps(est)


def test_estimate_band_covers_realised_accuracy_of_an_audit_subsample():
    # With labels drawn from calibrated probabilities, the realised accuracy of 300 random
    # audits falls inside a 2-sigma band about 95% of the time.
    rng = np.random.default_rng(21)
    cbpe = CBPE(list(ABC))
    inside = []
    for _ in range(200):
        P = rng.dirichlet([0.7, 0.7, 0.7], size=2000)
        pred = ABC[P.argmax(axis=1)]
        y = ABC[(rng.random(len(P))[:, None] > np.cumsum(P, axis=1)).sum(axis=1)]
        audits = rng.choice(len(P), 300, replace=False)
        acc = float(np.mean(y[audits] == pred[audits]))
        realised = {"n": 300, "accuracy": {"value": acc}, "per_class": {}}
        cmp = compare_estimate(cbpe.estimate(P, pred, sigmas=2.0), realised)
        inside.append(cmp["accuracy"]["inside"])
    assert 0.9 <= np.mean(inside) <= 0.99


def test_merging_estimates_equals_estimating_on_the_union():
    rng = np.random.default_rng(17)
    cbpe = CBPE(list(ABC))
    P1, P2 = rng.dirichlet([1, 1, 1], size=300), rng.dirichlet([1, 2, 3], size=500)
    parts = [json.loads(dumps(cbpe.estimate(P))) for P in (P1, P2)]
    assert_same(merge_estimates(parts), cbpe.estimate(np.vstack([P1, P2])))
    assert summarize_estimate(parts[0]["stats"]) == parts[0]
    empty = cbpe.estimate(np.zeros((0, 3)))
    assert empty["n"] == 0 and empty["accuracy"]["value"] is None
    dumps(empty)
    with pytest.raises(ValueError):
        cbpe.estimate(P1, ["a"] * 299 + ["zebra"])
