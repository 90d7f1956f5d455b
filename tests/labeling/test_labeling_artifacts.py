from functools import cache

import numpy as np
import numpy.testing._private.utils as np_testing_utils
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from labeling.artifacts import UntrustedArtifactError, dumps, loads, untrusted_types
from labeling.training import TEMPLATES, fit_model

TEXTS = ["good fun", "great film", "lovely", "bad film", "awful", "boring mess"] * 3
TEXT_LABELS = ["pos", "pos", "pos", "neg", "neg", "neg"] * 3


def double(x):
    return x * 2


class Custom:
    def __init__(self):
        self.payload = 1


@cache
def fitted(template):
    if template == "text-logreg":
        return fit_model(template, TEXTS, TEXT_LABELS), TEXTS
    X, y = load_iris(return_X_y=True)
    X = X.copy()
    X[::9, 1] = np.nan  # exercise the imputer / NaN-aware code paths in the artifact
    return fit_model(template, X, np.array(["a", "b", "c"])[y]), X


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_round_trip_keeps_predictions(template):
    model, X = fitted(template)
    data = dumps(model)
    assert isinstance(data, bytes)
    assert untrusted_types(data) == []
    restored = loads(data)
    assert restored is not model
    assert restored.classes_.tolist() == model.classes_.tolist()
    assert np.array_equal(restored.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "func, name",
    [
        (double, "test_labeling_artifacts.double"),
        # Inside an allowed package but a function, not a class: it exec()s its argument.
        (np_testing_utils.runstring, "numpy.testing._private.utils.runstring"),
    ],
)
def test_function_transformer_with_foreign_function_is_refused(func, name):
    X, y = load_iris(return_X_y=True)
    model = Pipeline(
        [("f", FunctionTransformer(func=func)), ("clf", LogisticRegression(max_iter=1000))]
    )
    if func is double:
        model.fit(X, y)
    data = dumps(model)
    assert any(t.endswith(name) for t in untrusted_types(data))
    with pytest.raises(UntrustedArtifactError, match=name.split(".")[-1]) as err:
        loads(data)
    assert isinstance(err.value, ValueError)
    assert any(t.endswith(name) for t in err.value.types)


def test_custom_class_is_refused():
    data = dumps({"model": Custom()})
    with pytest.raises(UntrustedArtifactError, match="Custom"):
        loads(data)


def test_allowed_numpy_function_transformer_loads():
    # numpy ufuncs are trusted by skops itself; they must keep working through our wrapper.
    X, y = load_iris(return_X_y=True)
    model = Pipeline(
        [("f", FunctionTransformer(func=np.log1p)), ("clf", LogisticRegression(max_iter=1000))]
    ).fit(X, y)
    assert np.allclose(loads(dumps(model)).predict_proba(X), model.predict_proba(X))
