from functools import cache

import numpy as np
import pytest
from sklearn.base import is_classifier
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from labeling.training import (
    DEFAULT_TEMPLATE,
    TEMPLATE_KIND,
    TEMPLATES,
    build_model,
    fit_model,
    predict_proba_for,
    to_matrix,
)

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
POSITIVE = [
    "I loved this film, it was wonderful",
    "what a great and fun movie",
    "brilliant acting and a lovely story",
    "wonderful, delightful, great fun",
    "the best film I have seen this year",
    "great story, loved the music",
    "a lovely and brilliant experience",
    "fun, charming and wonderful",
    "I really enjoyed it, great cast",
    "delightful movie with great acting",
    "loved every minute, brilliant",
    "charming, lovely and fun to watch",
]
NEGATIVE = [
    "I hated this film, it was awful",
    "what a boring and terrible movie",
    "dreadful acting and a dull story",
    "awful, tedious, boring mess",
    "the worst film I have seen this year",
    "terrible story, hated the music",
    "a dull and dreadful experience",
    "boring, tedious and awful",
    "I really disliked it, terrible cast",
    "tedious movie with awful acting",
    "hated every minute, dreadful",
    "dull, boring and painful to watch",
]


@cache
def iris_items():
    data = load_iris()
    datas = [{"features": dict(zip(FEATURES, row.tolist(), strict=True))} for row in data.data]
    labels = [str(data.target_names[t]) for t in data.target]
    return datas, labels


def test_template_tables_are_consistent():
    assert set(TEMPLATES) == {"text-logreg", "tabular-logreg", "tabular-hgb"}
    assert set(TEMPLATE_KIND) == set(TEMPLATES)
    assert DEFAULT_TEMPLATE == {"text": "text-logreg", "tabular": "tabular-logreg"}
    for kind, name in DEFAULT_TEMPLATE.items():
        assert TEMPLATE_KIND[name] == kind
    assert all(isinstance(d, str) and d for d in TEMPLATES.values())


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_build_model_is_unfitted_pipeline(template):
    model = build_model(template)
    assert isinstance(model, Pipeline)
    assert is_classifier(model)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    assert build_model(template) is not model


def test_build_model_unknown_template():
    with pytest.raises(ValueError, match="text-logreg"):
        build_model("svm")
    with pytest.raises(ValueError):
        fit_model("svm", [[0.0], [1.0]], ["a", "b"])


def test_text_template_fits_and_predicts():
    datas = [{"text": t} for t in POSITIVE + NEGATIVE]
    X = to_matrix("text", datas, None)
    assert X == POSITIVE + NEGATIVE
    model = fit_model("text-logreg", X, ["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE))
    new = to_matrix("text", [{"text": "great fun, loved it"}, {"text": "awful and boring"}], None)
    assert model.predict(new).tolist() == ["pos", "neg"]
    proba = predict_proba_for(model, new, ["pos", "neg"])
    assert proba.shape == (2, 2)
    assert proba[0, 0] > 0.5 and proba[1, 1] > 0.5


def test_text_to_matrix_tolerates_missing_text():
    assert to_matrix("text", [{}, {"text": None}, {"text": "x"}], ["ignored"]) == ["", "", "x"]


@pytest.mark.parametrize("template", ["tabular-logreg", "tabular-hgb"])
def test_tabular_templates_fit_iris(template):
    datas, labels = iris_items()
    X = to_matrix("tabular", datas, FEATURES)
    model = fit_model(template, X, labels)
    assert set(model.classes_) == {"setosa", "versicolor", "virginica"}
    assert (model.predict(X) == np.array(labels)).mean() > 0.9
    proba = predict_proba_for(model, X, ["virginica", "setosa", "versicolor"])
    assert proba.shape == (150, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert proba[:50, 1].mean() > 0.9  # setosa rows land in the setosa column


@pytest.mark.parametrize("template", ["tabular-logreg", "tabular-hgb"])
def test_tabular_templates_handle_missing_features(template):
    datas, labels = iris_items()
    datas = [dict(d, features=dict(d["features"])) for d in datas]
    for d in datas[::7]:
        del d["features"]["petal_width"]
    datas[3] = {}
    X = to_matrix("tabular", datas, FEATURES + ["never_seen"])
    assert np.isnan(X[0, 3]) and np.isnan(X[:, 4]).all() and np.isnan(X[3]).all()
    model = fit_model(template, X, labels)
    assert predict_proba_for(model, X[:5], sorted(set(labels))).shape == (5, 3)


def test_tabular_to_matrix_shapes_and_errors():
    X = to_matrix(
        "tabular", [{"features": {"a": 1, "b": "2.5"}}, {"features": {"b": None}}], ["a", "b"]
    )
    assert X.dtype == np.float64
    assert X.shape == (2, 2)
    assert X[0].tolist() == [1.0, 2.5]
    assert np.isnan(X[1]).all()
    assert to_matrix("tabular", [], ["a", "b"]).shape == (0, 2)
    with pytest.raises(ValueError, match="'a'"):
        to_matrix("tabular", [{"features": {"a": "tall"}}], ["a"])
    with pytest.raises(ValueError):
        to_matrix("tabular", [{"features": {"a": 1}}], None)
    with pytest.raises(ValueError):
        to_matrix("image", [], None)


def test_predict_proba_for_expands_to_project_labels():
    datas, labels = iris_items()
    model = fit_model("tabular-logreg", to_matrix("tabular", datas, FEATURES), labels)
    X = to_matrix("tabular", datas[::10], FEATURES)
    raw = model.predict_proba(X)
    order = ["virginica", "unseen", "setosa", "versicolor"]
    proba = predict_proba_for(model, X, order)
    assert proba.shape == (len(X), 4)
    assert np.all(proba[:, 1] == 0.0)
    for j, cls in enumerate(model.classes_):
        assert np.array_equal(proba[:, order.index(cls)], raw[:, j])


def test_predict_proba_for_drops_classes_no_longer_listed():
    datas, labels = iris_items()
    model = fit_model("tabular-logreg", to_matrix("tabular", datas, FEATURES), labels)
    X = to_matrix("tabular", datas[:3], FEATURES)
    proba = predict_proba_for(model, X, ["versicolor", "virginica"])
    assert proba.shape == (3, 2)
    assert np.all(proba.sum(axis=1) < 0.5)  # the setosa mass is gone


def test_single_class_is_refused():
    with pytest.raises(ValueError, match="need at least two labels to train"):
        fit_model("tabular-logreg", np.zeros((5, 2)), ["a"] * 5)
    with pytest.raises(ValueError, match="need at least two labels to train"):
        fit_model("text-logreg", [], [])
