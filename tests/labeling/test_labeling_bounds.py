"""Extreme tabular values read as missing, so every template trains and predicts with them (on
main one labeled 1.7e308 failed every retrain with "Input X contains NaN")."""

import numpy as np
import pytest

from labeling.training import FEATURE_BOUND, fit_model, predict_proba_for, to_matrix

TABULAR = ["tabular-logreg", "tabular-hgb"]


def _rows(n=100, seed=0):
    """Two separable classes on x1; x2 is noise."""
    rng = np.random.default_rng(seed)
    labels = ["a" if i % 2 else "b" for i in range(n)]
    datas = [
        {"features": {"x1": rng.normal(3.0 if y == "a" else -3.0), "x2": rng.normal()}}
        for y in labels
    ]
    return datas, labels


def test_to_matrix_reads_values_beyond_the_bound_as_missing():
    datas = [
        {"features": {"x1": 1.7e308, "x2": -1.7e308}},
        {"features": {"x1": float("inf"), "x2": float("-inf")}},
        {"features": {"x1": None, "x2": 10**400}},
        {"features": {"x1": -2.5, "x2": FEATURE_BOUND}},
    ]
    X = to_matrix("tabular", datas, ["x1", "x2"])
    assert np.isnan(X[:3]).all()
    assert X[3].tolist() == [-2.5, FEATURE_BOUND], "values within the bound are kept as they are"


@pytest.mark.parametrize("template", TABULAR)
@pytest.mark.parametrize("value", [1.7e308, -1.7e308, float("inf")])
def test_every_template_trains_and_predicts_with_extreme_rows(template, value):
    datas, labels = _rows()
    # Several extreme rows of one class: the sum that overflowed needs more than one.
    datas += [{"features": {"x1": value, "x2": 0.0}} for _ in range(3)]
    labels += ["a"] * 3
    X = to_matrix("tabular", datas, ["x1", "x2"])
    model = fit_model(template, X, labels)
    unseen = to_matrix("tabular", [{"features": {"x1": -value, "x2": 1e300}}], ["x1", "x2"])
    proba = predict_proba_for(model, np.vstack([X, unseen]), ["a", "b"])
    assert np.isfinite(proba).all()
    assert np.allclose(proba.sum(axis=1), 1.0)
    # The ordinary rows are still learned: one extreme value does not wreck the model.
    predicted = np.array(["a", "b"])[proba[:100].argmax(axis=1)]
    assert (predicted == np.array(labels[:100])).mean() > 0.9


@pytest.mark.parametrize("template", TABULAR)
def test_values_at_the_bound_train_without_overflow(template):
    datas, labels = _rows()
    datas[0]["features"]["x1"] = FEATURE_BOUND
    datas[1]["features"]["x1"] = -FEATURE_BOUND
    X = to_matrix("tabular", datas, ["x1", "x2"])
    proba = predict_proba_for(fit_model(template, X, labels), X, ["a", "b"])
    assert np.isfinite(proba).all()
