"""The review's pure functions: packed paired predictions, fixed and broken items, per-class
deltas and snapshot changes."""

from __future__ import annotations

import json

import pytest

from labeling import evaluation, review

LABELS = ["a", "b", "c"]


def test_paired_predictions_pack_to_indices_and_back():
    packed = review.pack_paired(
        [7, 3, 9], ["a", "b", "z"], ["a", "c", "a"], ["b", "b", "z"], LABELS
    )
    # A label only the data has (a retired one) is appended, not lost.
    assert packed == {
        "labels": ["a", "b", "c", "z"],
        "ids": [7, 3, 9],
        "truth": [0, 1, 3],
        "candidate": [0, 2, 0],
        "champion": [1, 1, 3],
    }
    assert review.unpack_paired(json.loads(json.dumps(packed))) == {
        "ids": [7, 3, 9],
        "truth": ["a", "b", "z"],
        "candidate": ["a", "c", "a"],
        "champion": ["b", "b", "z"],
    }
    alone = review.pack_paired([1], ["a"], ["b"], None, LABELS)
    assert alone["champion"] is None and review.unpack_paired(alone)["champion"] is None
    assert review.unpack_paired(None) is None
    with pytest.raises(ValueError, match="one value per item"):
        review.pack_paired([1, 2], ["a"], ["a", "b"], None, LABELS)


def test_outcomes_sort_items_by_who_got_them_right():
    paired = {
        "ids": [1, 2, 3, 4, 5],
        "truth": ["a", "a", "b", "b", "c"],
        "candidate": ["a", "b", "b", "a", "a"],
        "champion": ["b", "a", "b", "c", "c"],
    }
    out = review.outcomes(paired)
    assert out["fixed"] == [{"item_id": 1, "label": "a", "candidate": "a", "champion": "b"}]
    assert [row["item_id"] for row in out["broken"]] == [2, 5]
    assert out["counts"] == {"fixed": 1, "broken": 2, "both_right": 1, "both_wrong": 1}
    assert review.outcomes({**paired, "champion": None}) == {
        "fixed": [],
        "broken": [],
        "counts": None,
    }


def test_class_deltas_are_candidate_minus_champion_with_the_class_rules_verdict():
    truth = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    candidate = evaluation.evaluate(truth, ["a"] * 4 + ["b", "b", "a", "a"] + ["c", "c"], LABELS)
    champion = evaluation.evaluate(truth, ["a", "a", "b", "b"] + ["b"] * 4 + ["c", "a"], LABELS)
    rule = {
        "classes": {"a": {"p_worse": 1.0}, "b": {"p_worse": 0.25}},
        "failed": ["b"],
        "not_significant": [],
        "unchecked": ["c"],
    }
    rows = {row["label"]: row for row in review.class_deltas(candidate, champion, rule)}
    assert rows["a"]["delta"]["recall"] == pytest.approx(0.5)
    assert rows["b"]["delta"]["recall"] == pytest.approx(-0.5)
    assert rows["c"]["delta"]["recall"] == pytest.approx(0.5)
    assert rows["b"]["candidate"]["recall_lo"] == candidate["intervals"]["recall"]["b"]["lo"]
    assert {k: (r["gate"], r["flagged"], r["p_worse"]) for k, r in rows.items()} == {
        "a": ("passed", False, 1.0),
        "b": ("failed", True, 0.25),
        "c": ("unchecked", False, None),
    }
    alone = review.class_deltas(candidate, None)
    assert [(r["champion"], r["delta"], r["gate"]) for r in alone] == [(None, None, None)] * 3


def test_snapshot_changes_count_added_corrected_and_removed_labels():
    before = [(1, "a"), (2, "b"), (3, "a"), (4, "c")]
    after = [(1, "a"), (2, "a"), (4, "b"), (5, "c"), (6, "a")]
    changes = review.snapshot_changes(before, after, limit=1)
    assert (changes["added"], changes["corrected"], changes["removed"]) == (2, 2, 1)
    assert changes["added_items"] == [{"item_id": 5, "label": "c"}]
    assert changes["corrected_items"] == [{"item_id": 2, "old": "b", "new": "a"}]
    assert changes["removed_items"] == [{"item_id": 3, "label": "a"}]
    same = review.snapshot_changes(before, before)
    assert (same["added"], same["corrected"], same["removed"]) == (0, 0, 0)
