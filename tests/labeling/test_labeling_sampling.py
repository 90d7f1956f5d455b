from functools import cache

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from labeling.sampling import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    informativeness,
    informativeness_from_proba,
    query,
)
from labeling.training import fit_model


@cache
def iris_model():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y), X


@cache
def cancer_model():
    X, y = load_breast_cancer(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), X


MODELS = [iris_model, cancer_model]


def test_strategies():
    assert STRATEGIES == ("margin", "uncertainty", "entropy")
    assert DEFAULT_STRATEGY == "margin"


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_query_picks_highest_informativeness(make, strategy):
    model, X = make()
    scores = informativeness(model, X, strategy)
    picked = query(model, X, n_instances=7, strategy=strategy)
    assert picked.dtype.kind == "i"
    assert len(set(picked.tolist())) == 7
    # Compare scores, not indices, so ties at the cut-off cannot make the test flaky.
    assert np.allclose(scores[picked], np.sort(scores)[::-1][:7])
    assert np.all(np.diff(scores[picked]) <= 0)  # most informative first


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_from_proba_matches_model(make, strategy):
    model, X = make()
    proba = model.predict_proba(X)
    assert np.allclose(
        informativeness_from_proba(proba, strategy), informativeness(model, X, strategy)
    )


def test_default_strategy_is_margin():
    model, X = iris_model()
    assert np.array_equal(informativeness(model, X), informativeness(model, X, "margin"))
    assert np.array_equal(query(model, X, 3), query(model, X, 3, "margin"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_boundary_points_score_higher_than_far_points(strategy):
    X = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, ["a", "a", "a", "b", "b", "b"])
    near, far = np.array([[0.0], [0.2]]), np.array([[6.0], [-6.0]])
    assert (
        informativeness(model, near, strategy).min() > informativeness(model, far, strategy).max()
    )
    pool = np.vstack([far, near])
    assert sorted(query(model, pool, 2, strategy).tolist()) == [2, 3]


def test_margin_scores_are_negated_margins():
    proba = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    assert np.allclose(informativeness_from_proba(proba, "margin"), [0.0, -1.0, -0.3])
    assert np.allclose(informativeness_from_proba(proba, "uncertainty"), [0.5, 0.0, 0.4])
    entropy = informativeness_from_proba(proba, "entropy")
    assert entropy[0] == pytest.approx(np.log(2)) and entropy[1] == 0.0


def test_query_on_text_pipeline():
    texts = ["good great fine", "great good", "bad awful poor", "awful bad", "good bad", "meh"]
    model = fit_model("text-logreg", texts[:4], ["pos", "pos", "neg", "neg"])
    picked = query(model, texts, n_instances=2)
    scores = informativeness(model, texts)
    assert np.allclose(scores[picked], np.sort(scores)[::-1][:2])


def test_query_caps_and_empty():
    model, X = iris_model()
    assert sorted(query(model, X[:4], n_instances=10).tolist()) == [0, 1, 2, 3]
    assert query(model, X, n_instances=0).shape == (0,)
    assert query(model, X[:0], n_instances=3).shape == (0,)


def test_unknown_strategy_names_allowed_ones():
    model, X = iris_model()
    for call in (
        lambda: informativeness(model, X, "random"),
        lambda: informativeness_from_proba(model.predict_proba(X), "random"),
        lambda: query(model, X, 1, "random"),
    ):
        with pytest.raises(ValueError, match="margin, uncertainty, entropy"):
            call()


def test_from_proba_rejects_1d():
    with pytest.raises(ValueError):
        informativeness_from_proba(np.array([0.2, 0.8]))
