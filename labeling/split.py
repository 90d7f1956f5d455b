"""Deterministic train/held-out assignment and snapshot fingerprints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import numpy as np

HELDOUT = "heldout"
TRAIN = "train"

# splitmix64 constants (Steele, Lea & Flood 2014). A fixed published mixer instead of Python's
# hash() so the split is identical across processes, machines and Python versions.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(ids: np.ndarray) -> np.ndarray:
    """Mix uint64 ids with splitmix64; uint64 array arithmetic wraps mod 2**64 by design."""
    z = ids + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def _unit_interval(item_ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Map integer ids to stable pseudo-random floats in [0, 1)."""
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    # view, not astype: reinterprets negative ids as two's complement instead of erroring.
    mixed = _splitmix64(ids.view(np.uint64))
    # Top 53 bits fill a float64 mantissa exactly, giving a uniform value in [0, 1).
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _check_share(share: float) -> float:
    share = float(share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], got {share}")
    return share


def heldout_mask(item_ids: Iterable[int] | np.ndarray, share: float) -> np.ndarray:
    """Say which items belong to the held-out set, deterministically per id.

    Because each id maps to a fixed point in [0, 1), raising ``share`` only ever moves items
    from train into held-out, never the other way.

    Args:
        item_ids: Integer item ids (any iterable or array).
        share: Fraction of items to hold out, in [0, 1].

    Returns:
        Boolean array, True where the item is held out.
    """
    share = _check_share(share)
    return _unit_interval(item_ids) < share


# The lane of the experts' queue whose items are the held-out set: uniform random audits.
AUDIT_LANE = "audit"


def heldout_by_lane(
    item_ids: Iterable[int] | np.ndarray, lanes: Iterable[str | None], share: float
) -> np.ndarray:
    """Say which labeled items are held out, from the lane that first served each one.

    Only uniform random audits evaluate without bias: an item the queue chose because the model
    was unsure of it (or because feedback disputed it, or to start cold) always trains, since a
    held-out set of such items reads far below the true accuracy. Items labeled outside the
    queue (imported labels, whose selection Corrigo did not bias) are split by the stable hash,
    as :func:`heldout_mask` does.

    Args:
        item_ids: Integer item ids.
        lanes: For each item, the queue lane its first expert label came through (``"audit"``,
            ``"uncertain"``, ``"disputed"``, ``"cold-start"``), or None for labels given outside
            the queue.
        share: Held-out fraction for the items labeled outside the queue, in [0, 1].

    Returns:
        Boolean array, True where the item is held out.
    """
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    lane = np.asarray(list(lanes), dtype=object).reshape(-1)
    if len(lane) != len(ids):
        raise ValueError(f"got {len(ids)} ids but {len(lane)} lanes")
    outside = np.equal(lane, None)
    return (lane == AUDIT_LANE) | (outside & heldout_mask(ids, share))


def split_of(item_id: int, share: float) -> str:
    """Name the split a single item belongs to.

    Args:
        item_id: Integer item id.
        share: Fraction of items to hold out, in [0, 1].

    Returns:
        ``"heldout"`` or ``"train"``.
    """
    return HELDOUT if bool(heldout_mask([item_id], share)[0]) else TRAIN


def snapshot_digest(item_ids: Iterable[int], labels: Iterable[str]) -> str:
    """Fingerprint a labeled snapshot independently of input order.

    Args:
        item_ids: Integer item ids.
        labels: Label of each item, aligned with ``item_ids``.

    Returns:
        SHA-256 hex digest over the (id, label) pairs sorted by id.
    """
    ids = [int(i) for i in item_ids]
    labs = [str(label) for label in labels]
    if len(ids) != len(labs):
        raise ValueError(f"got {len(ids)} ids but {len(labs)} labels")
    h = hashlib.sha256()
    # Sorting on (id, label) also fixes the order of duplicate ids; JSON per pair keeps labels
    # containing separators or newlines from colliding with other snapshots.
    for pair in sorted(zip(ids, labs, strict=True)):
        h.update(json.dumps(pair, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
