"""Several experts per item: resolution rules, agreement statistics, label-error hunting."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labeling import training
from labeling.agreement import (
    DawidSkene,
    agreement_with_final,
    krippendorff_alpha,
    pairwise_kappa,
    resolve,
    suspect_labels,
)


@pytest.mark.parametrize(
    ("labels", "rule", "needed", "status", "label"),
    [
        (["a"], "latest", 2, "pending", None),
        (["a", "b"], "latest", 2, "resolved", "b"),
        (["a", "a", "b"], "majority", 2, "resolved", "a"),
        (["a", "b"], "majority", 2, "review", None),
        (["a", "b", "b", "a"], "majority", 1, "review", None),
        (["a", "a"], "review", 2, "resolved", "a"),
        (["a", "a", "b"], "review", 2, "review", None),
        (["b"], "majority", 1, "resolved", "b"),
    ],
)
def test_resolution_rules(labels, rule, needed, status, label):
    got = resolve(labels, rule, needed)
    assert (got.status, got.label) == (status, label)
    assert sum(got.votes.values()) == len(labels)


def test_unknown_rules_and_needs_are_refused():
    with pytest.raises(ValueError, match="unknown rule"):
        resolve(["a"], "loudest")
    with pytest.raises(ValueError, match="at least 1"):
        resolve(["a"], "latest", 0)


def _crowd(seed: int, items: int = 300):
    """A careful expert, a decent one and two who guess; the truth is known."""
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c"]
    truth = {i: str(rng.choice(labels)) for i in range(items)}
    answers = []
    for item, true in truth.items():
        for expert, accuracy in (("ann", 0.9), ("bob", 0.7), ("cy", 0.34), ("di", 0.34)):
            given = true if rng.random() < accuracy else str(rng.choice(labels))
            answers.append((item, expert, given))
    return truth, answers


def test_dawid_skene_beats_the_majority_when_some_experts_guess():
    truth, answers = _crowd(seed=0)
    ds = DawidSkene().fit(answers)
    ds_right = np.mean([ds.labels_[i] == t for i, t in truth.items()])
    by_item = {}
    for item, _, label in answers:
        by_item.setdefault(item, []).append(label)
    majority = {i: resolve(labels, "majority").label for i, labels in by_item.items()}
    majority_right = np.mean([majority[i] == t for i, t in truth.items()])
    assert ds_right > majority_right + 0.05
    assert ds_right > 0.9
    # It also finds out who is careful: the guessers are rated below the others.
    acc = ds.expert_accuracy_
    assert acc["ann"] > acc["bob"] > max(acc["cy"], acc["di"])
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in ds.probas_.values())


def test_an_experts_later_answer_on_an_item_replaces_the_earlier_one():
    answers = [(1, "ann", "a"), (1, "bob", "b"), (1, "ann", "b")]
    assert pairwise_kappa(answers)[0]["agreement"] == 1.0


def test_cohens_kappa_per_pair_matches_the_textbook_value():
    # 50 items: both say yes on 20, both no on 15, A yes / B no on 5, A no / B yes on 10.
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
    cells = [("yes", "yes")] * 20 + [("no", "no")] * 15 + [("yes", "no")] * 5 + [("no", "yes")] * 10
    answers = [(i, "A", a) for i, (a, _) in enumerate(cells)]
    answers += [(i, "B", b) for i, (_, b) in enumerate(cells)]
    answers += [(100, "C", "yes"), (100, "A", "yes")]  # A and C share one item
    pairs = {(p["a"], p["b"]): p for p in pairwise_kappa(answers)}
    assert set(pairs) == {("A", "B"), ("A", "C")}
    assert pairs[("A", "B")]["items"] == 50
    assert pairs[("A", "B")]["kappa"] == pytest.approx(0.4)
    assert pairs[("A", "B")]["agreement"] == pytest.approx(0.7)
    # One shared item with the same label: agreement, but kappa is undefined.
    assert pairs[("A", "C")]["kappa"] is None


def test_krippendorff_alpha_reproduces_krippendorffs_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the three-coder example
    # with missing values: nominal alpha = 0.691.
    data = [
        [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
        [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
        [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
    ]
    answers = [
        (unit, coder, str(value))
        for coder, row in enumerate(data)
        for unit, value in enumerate(row)
        if value is not None
    ]
    assert krippendorff_alpha(answers) == pytest.approx(0.691, abs=5e-4)


def test_alpha_is_undefined_without_pairs_or_variation():
    assert krippendorff_alpha([(1, "A", "x"), (2, "B", "y")]) is None
    assert krippendorff_alpha([(1, "A", "x"), (1, "B", "x")]) is None


def test_agreement_with_final_labels_has_an_interval():
    answers = [(i, "ann", "a") for i in range(10)] + [(i, "bob", "b") for i in range(10)]
    final = {i: "a" for i in range(8)}
    got = agreement_with_final(answers, final)
    assert got["ann"]["items"] == 8 and got["ann"]["rate"] == 1.0
    assert got["bob"]["agreed"] == 0
    assert 0 < got["ann"]["low"] < 1.0 == pytest.approx(got["ann"]["high"])


def test_confident_learning_finds_flipped_labels():
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], np.array([str(v) for v in y[:600]])
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), 30, replace=False)
    noisy = y.copy()
    for i in flipped:
        noisy[i] = str(rng.choice([c for c in map(str, range(10)) if c != y[i]]))
    classes = [str(i) for i in range(10)]
    _, proba = training.cross_val_predictions("tabular-logreg", X, list(noisy), classes)
    suspects = suspect_labels(noisy, proba, classes)
    found = set(suspects) & set(flipped.tolist())
    assert len(found) >= 24  # at least 80% of the flips (27 of 30 with this seed)
    assert len(found) / len(suspects) >= 0.5  # and at least half of the flagged are flips
    # The most suspect are flips: the first five flagged rows are all wrong labels.
    assert set(suspects[:5]) <= set(flipped.tolist())


def test_suspects_need_two_labelled_classes_and_matching_shapes():
    proba = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert suspect_labels(["a", "a"], proba, ["a", "b"]) == []
    with pytest.raises(ValueError, match="shape"):
        suspect_labels(["a"], proba, ["a", "b"])
    with pytest.raises(ValueError, match="not among"):
        suspect_labels(["a", "z"], proba, ["a", "b"])
