import json
from functools import cache

import numpy as np
import pytest
from sklearn.base import is_classifier
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from labeling.artifacts import dumps, loads
from labeling.training import (
    DEFAULT_C,
    DEFAULT_TEMPLATE,
    TEMPLATE_KIND,
    TEMPLATES,
    TEXT_C_GRID,
    build_model,
    fit_model,
    predict_proba_for,
    select_c,
    select_params,
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


# ---------------------------------------------------------------------------------------------
# C chosen by cross-validation


def _flip(labels, rows):
    flipped = list(labels)
    for i in rows:
        flipped[i] = "neg" if flipped[i] == "pos" else "pos"
    return flipped


TEXTS = POSITIVE + NEGATIVE
TEXT_LABELS = ["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE)


def test_cv_picks_a_smaller_c_for_a_tiny_noisy_set():
    clean = fit_model("text-logreg", TEXTS, TEXT_LABELS).chosen_params_
    # Four of the 24 labels wrong (two of each): a weak penalty would memorise them.
    noisy = fit_model("text-logreg", TEXTS, _flip(TEXT_LABELS, [0, 1, 12, 13])).chosen_params_
    assert clean["selected_by"] == noisy["selected_by"] == "cv"
    assert noisy["C"] < clean["C"]
    assert clean["C"] > DEFAULT_C["text-logreg"]  # clean TF-IDF rows want a weak penalty
    assert set(clean["cv_log_loss"]) >= {"10.0"}  # the search starts at the old default


def test_chosen_c_is_the_lowest_cross_validated_loss_tried():
    chosen = fit_model("text-logreg", TEXTS, _flip(TEXT_LABELS, [0, 12])).chosen_params_
    losses = chosen["cv_log_loss"]
    assert len(losses) >= 2
    assert min(losses, key=losses.get) == str(chosen["C"])
    assert chosen["C"] in TEXT_C_GRID


def test_too_few_labels_per_class_keep_the_default_c():
    # Two "neg" texts cannot be split over three folds.
    X, y = TEXTS[:10] + TEXTS[12:14], TEXT_LABELS[:10] + TEXT_LABELS[12:14]
    model = fit_model("text-logreg", X, y)
    assert model.chosen_params_["selected_by"] == "default"
    assert model.chosen_params_["C"] == model.named_steps["clf"].C == DEFAULT_C["text-logreg"]
    assert model.predict(["great fun, loved it"]).tolist() == ["pos"]


def test_fit_uses_the_chosen_c_and_given_params_skip_the_search():
    searched = fit_model("text-logreg", TEXTS, TEXT_LABELS)
    assert searched.named_steps["clf"].C == searched.chosen_params_["C"]
    given = fit_model("text-logreg", TEXTS, TEXT_LABELS, params=searched.chosen_params_)
    assert given.chosen_params_ == {"C": searched.chosen_params_["C"], "selected_by": "given"}
    new = ["great fun, loved it", "awful and boring"]
    assert np.array_equal(given.predict_proba(new), searched.predict_proba(new))
    assert select_params("text-logreg", TEXTS, TEXT_LABELS) == searched.chosen_params_


def test_cv_is_deterministic_for_a_seed():
    y = _flip(TEXT_LABELS, [0, 12])
    a, b = fit_model("text-logreg", TEXTS, y), fit_model("text-logreg", TEXTS, y)
    assert a.chosen_params_ == b.chosen_params_
    assert np.array_equal(a.named_steps["clf"].coef_, b.named_steps["clf"].coef_)


def test_chosen_params_survive_the_artifact_and_json():
    model = fit_model("text-logreg", TEXTS, TEXT_LABELS)
    restored = loads(dumps(model))
    assert restored.chosen_params_ == model.chosen_params_
    assert json.loads(json.dumps(model.chosen_params_)) == model.chosen_params_


@pytest.mark.parametrize("template", ["tabular-logreg", "tabular-hgb"])
def test_tabular_templates_record_fixed_params(template):
    datas, labels = iris_items()
    model = fit_model(template, to_matrix("tabular", datas, FEATURES), labels)
    assert model.chosen_params_["selected_by"] == "fixed"
    if template == "tabular-logreg":
        assert model.chosen_params_["C"] == model.named_steps["clf"].C == 1.0
    else:
        assert model.chosen_params_["max_iter"] == 100
    json.dumps(model.chosen_params_)


def test_tabular_logreg_takes_a_given_c():
    datas, labels = iris_items()
    X = to_matrix("tabular", datas, FEATURES)
    model = fit_model("tabular-logreg", X, labels, params={"C": 0.01})
    assert model.named_steps["clf"].C == 0.01
    assert model.chosen_params_ == {"C": 0.01, "selected_by": "given"}
    # A strong penalty shrinks the model towards uniform probabilities.
    weak = fit_model("tabular-logreg", X, labels)
    assert model.predict_proba(X).max() < weak.predict_proba(X).max()


def test_select_c_walks_down_for_noise_and_respects_the_grid():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = rng.choice(["a", "b"], size=60)  # labels unrelated to the features
    chosen = select_c(X, y, (0.001, 0.01, 0.1, 1.0, 10.0), default=1.0)
    assert chosen["C"] < 1.0
    assert chosen["cv_rows"] == 60 and chosen["cv_folds"] == 3
