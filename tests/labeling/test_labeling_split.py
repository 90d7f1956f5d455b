import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labeling.split import heldout_mask, snapshot_digest, split_of

MASK64 = (1 << 64) - 1
REPO = Path(__file__).resolve().parents[2]


def reference_unit(item_id: int) -> float:
    """Independent pure-Python splitmix64, to check the vectorised numpy version."""
    z = (item_id + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def test_share_is_respected_over_many_ids():
    mask = heldout_mask(np.arange(100_000), 0.2)
    assert mask.dtype == bool
    assert mask.shape == (100_000,)
    assert abs(mask.mean() - 0.2) < 0.02


def test_consecutive_id_blocks_are_not_clumped():
    # A hash that kept id order would put whole ranges in one split.
    mask = heldout_mask(np.arange(10_000), 0.2)
    block_shares = mask.reshape(10, 1000).mean(axis=1)
    assert np.all(np.abs(block_shares - 0.2) < 0.05)


def test_matches_reference_splitmix64():
    ids = [0, 1, 2, 41, 12345, 2**31 - 1, 2**40 + 7, -1, -(2**63)]
    for share in (0.05, 0.2, 0.5, 0.9):
        expected = [reference_unit(i & MASK64) < share for i in ids]
        assert heldout_mask(ids, share).tolist() == expected


def test_deterministic_within_process():
    ids = np.arange(5000)
    assert np.array_equal(heldout_mask(ids, 0.3), heldout_mask(ids.tolist(), 0.3))
    assert all(split_of(int(i), 0.3) == split_of(int(i), 0.3) for i in ids[:100])


def test_deterministic_across_processes_with_different_hash_seeds():
    ids = list(range(2000))
    here = np.flatnonzero(heldout_mask(ids, 0.25)).tolist()
    code = (
        "import numpy as np; from labeling.split import heldout_mask; "
        "print(np.flatnonzero(heldout_mask(range(2000), 0.25)).tolist())"
    )
    for seed in ("1", "987"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
        )
        assert out.stdout.strip() == str(here)


def test_growing_share_only_moves_items_into_heldout():
    ids = np.arange(50_000)
    small, large = heldout_mask(ids, 0.1), heldout_mask(ids, 0.2)
    assert np.all(large[small])  # heldout at 0.1 ⊂ heldout at 0.2
    assert large.sum() > small.sum()


def test_extreme_shares_and_validation():
    ids = np.arange(1000)
    assert not heldout_mask(ids, 0.0).any()
    assert heldout_mask(ids, 1.0).all()
    assert heldout_mask([], 0.5).shape == (0,)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            heldout_mask(ids, bad)


def test_split_of_agrees_with_mask():
    ids = list(range(300))
    mask = heldout_mask(ids, 0.2)
    assert [split_of(i, 0.2) for i in ids] == ["heldout" if m else "train" for m in mask]


def test_snapshot_digest_ignores_order():
    ids, labels = [3, 1, 2], ["b", "a", "c"]
    digest = snapshot_digest(ids, labels)
    assert len(digest) == 64
    assert digest == snapshot_digest([1, 2, 3], ["a", "c", "b"])
    assert digest == snapshot_digest(np.array([2, 3, 1]), ["c", "b", "a"])


def test_snapshot_digest_changes_with_content():
    base = snapshot_digest([1, 2], ["a", "b"])
    assert snapshot_digest([1, 2], ["a", "c"]) != base
    assert snapshot_digest([1, 3], ["a", "b"]) != base
    assert snapshot_digest([1], ["a"]) != base
    # Label text containing separators must not collide with a different pairing.
    assert snapshot_digest([1], ['a"],[2,"b']) != base
    assert snapshot_digest([], []) != base


def test_snapshot_digest_length_mismatch():
    with pytest.raises(ValueError):
        snapshot_digest([1, 2], ["a"])
