"""What the labeling page explains: the words behind a text suggestion, a tabular item's rare
values."""

import numpy as np
import pytest

from labeling import drift, training
from labeling.explain import percentile, segments, term_weights, unusual_values

SPORT = ["the team won the match", "a goal in the final match", "the striker scored a goal"]
POLITICS = ["the minister lost the vote", "an election and a vote", "the minister won the election"]


@pytest.fixture(scope="module")
def text_model():
    texts = (SPORT + POLITICS) * 5
    labels = (["sport"] * 3 + ["politics"] * 3) * 5
    return training.fit_model("text-logreg", texts, labels, params={"C": 10.0})


def test_the_words_that_pushed_the_suggestion_are_the_labels_own(text_model):
    weights = term_weights(
        text_model, "The striker missed; the minister watched the match", "sport"
    )
    assert {"striker", "match"} <= set(weights)
    assert "minister" not in weights  # it pointed the other way
    # "the" is as common in both labels' texts: next to nothing.
    assert weights.get("the", 0) < min(weights["striker"], weights["match"]) / 5
    assert all(w > 0 for w in weights.values())
    assert list(weights.values()) == sorted(weights.values(), reverse=True)
    other = term_weights(
        text_model, "The striker missed; the minister watched the match", "politics"
    )
    assert "minister" in other and "striker" not in other


def test_unknown_words_labels_and_models_explain_nothing(text_model):
    assert term_weights(text_model, "zebra quokka", "sport") == {}
    assert term_weights(text_model, "a goal", "weather") == {}
    tabular = training.fit_model("tabular-logreg", np.eye(4), ["a", "b", "a", "b"])
    assert term_weights(tabular, "a goal", "a") == {}


def test_segments_give_the_text_back_with_the_weighted_words_marked():
    text = "Goal! The GOAL came late, in the match."
    pieces = segments(text, {"goal": 1.0, "match": 0.5})
    assert "".join(piece for piece, _ in pieces) == text
    assert [(p, w) for p, w in pieces if w] == [("Goal", 1.0), ("GOAL", 1.0), ("match", 0.5)]


def test_percentiles_come_from_the_reference_sketch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 2))
    reference = drift.build_reference(X_numeric=X, feature_names=["x", "y"])
    sketch = reference["numeric"][0]
    assert percentile(sketch, 0.0) == pytest.approx(0.5, abs=0.01)
    assert percentile(sketch, 1.0) == pytest.approx(0.841, abs=0.01)
    assert percentile(sketch, -1.645) == pytest.approx(0.05, abs=0.005)
    assert percentile(sketch, 100.0) == 1.0 and percentile(sketch, -100.0) == 0.0
    assert percentile(sketch, "n/a") is None
    rare = unusual_values(reference, {"x": 3.2, "y": 0.1, "z": 99})
    assert set(rare) == {"x"} and rare["x"] > 0.99
    assert unusual_values(None, {"x": 3.2}) == {}
