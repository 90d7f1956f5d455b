"""The engineers' review of a gate decision: the paired per-item outcomes, the per-class deltas
and what changed between two training snapshots, as plain values.

The retrain stores the predictions its decision was made on with :func:`pack_paired` (labels as
indices into one label list, so a held-out set of thousands of items stays a few tens of
kilobytes of JSON); the review pages and the API read them back with :func:`unpack_paired`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Outcomes of one item under a paired comparison (candidate against champion).
FIXED = "fixed"  # the champion was wrong, the candidate is right
BROKEN = "broken"  # the champion was right, the candidate is wrong
BOTH_RIGHT = "both_right"
BOTH_WRONG = "both_wrong"
# The class rule's verdict on one class (see :func:`class_deltas`).
CLASS_VERDICTS = ("failed", "not_significant", "passed", "unchecked")


def pack_paired(
    item_ids: Iterable[int],
    y_true: Sequence[str],
    candidate: Sequence[str],
    champion: Sequence[str] | None,
    labels: Sequence[str],
) -> dict:
    """Pack the per-item predictions of a decision compactly for JSON.

    Args:
        item_ids: Id of each item the decision was made on.
        y_true: Its true label.
        candidate: The candidate's prediction for it.
        champion: The champion's prediction for it, or ``None`` without a champion.
        labels: The project's labels; labels seen only in the data are appended.

    Returns:
        ``{"labels", "ids", "truth", "candidate", "champion"}``: the last three are indices
        into ``labels`` (``champion`` is ``None`` without a champion).
    """
    ids = [int(i) for i in item_ids]
    columns = [[str(v) for v in y_true], [str(v) for v in candidate]]
    if champion is not None:
        columns.append([str(v) for v in champion])
    if any(len(col) != len(ids) for col in columns):
        raise ValueError(f"every column needs one value per item ({len(ids)} items)")
    order = [str(label) for label in labels]
    order += sorted({v for col in columns for v in col} - set(order))
    index = {label: i for i, label in enumerate(order)}
    coded = [[index[v] for v in col] for col in columns]
    return {
        "labels": order,
        "ids": ids,
        "truth": coded[0],
        "candidate": coded[1],
        "champion": coded[2] if champion is not None else None,
    }


def unpack_paired(packed: Mapping[str, Any] | None) -> dict | None:
    """Read back what :func:`pack_paired` stored.

    Args:
        packed: The stored dict, or ``None`` (runs recorded before the predictions were kept).

    Returns:
        ``{"ids", "truth", "candidate", "champion"}`` with labels as strings (``champion``
        ``None`` without a champion), or ``None`` when nothing was stored.
    """
    if not packed:
        return None
    labels = list(packed["labels"])
    champion = packed.get("champion")
    return {
        "ids": [int(i) for i in packed["ids"]],
        "truth": [labels[i] for i in packed["truth"]],
        "candidate": [labels[i] for i in packed["candidate"]],
        "champion": None if champion is None else [labels[i] for i in champion],
    }


def outcomes(paired: Mapping[str, Any]) -> dict:
    """Sort paired items by who got them right.

    Args:
        paired: What :func:`unpack_paired` returns, with a champion.

    Returns:
        ``{"fixed", "broken"}``: lists of ``{"item_id", "label", "candidate", "champion"}``
        in the stored order, and ``counts`` of ``fixed``, ``broken``, ``both_right`` and
        ``both_wrong``. Without a champion both lists are empty and the counts are ``None``.
    """
    if paired.get("champion") is None:
        return {"fixed": [], "broken": [], "counts": None}
    counts = {FIXED: 0, BROKEN: 0, BOTH_RIGHT: 0, BOTH_WRONG: 0}
    lists: dict[str, list[dict]] = {FIXED: [], BROKEN: []}
    rows = zip(paired["ids"], paired["truth"], paired["candidate"], paired["champion"], strict=True)
    for item_id, truth, cand, champ in rows:
        cand_ok, champ_ok = cand == truth, champ == truth
        kind = (
            (BOTH_RIGHT if champ_ok else FIXED) if cand_ok else (BROKEN if champ_ok else BOTH_WRONG)
        )
        counts[kind] += 1
        if kind in lists:
            lists[kind].append(
                {"item_id": item_id, "label": truth, "candidate": cand, "champion": champ}
            )
    return {"fixed": lists[FIXED], "broken": lists[BROKEN], "counts": counts}


def class_deltas(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    class_rule: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Per-class precision, recall and F1 of the candidate beside the champion's.

    Args:
        candidate: The candidate's ``evaluation.evaluate`` dict.
        champion: The champion's, on the same items, or ``None``.
        class_rule: The ``numbers`` of the gate's ``no_class_regression`` rule, if any.

    Returns:
        One dict per class of the candidate's metrics, in their order: ``label``, ``support``,
        ``candidate`` and ``champion`` (``precision``, ``recall``, ``f1``, ``recall_lo``,
        ``recall_hi``; ``champion`` ``None`` when it has no such class), ``delta`` (candidate
        minus champion per metric, ``None`` without one), ``gate`` (the class rule's verdict:
        ``"failed"``, ``"not_significant"`` for a drop over the tolerance that is not
        significant, ``"passed"``, ``"unchecked"`` for too little support, or ``None`` when the
        rule did not look at classes), ``p_worse`` (its McNemar p-value, or ``None``) and
        ``flagged`` (the rule failed on this class).
    """
    rule = class_rule or {}
    judged = rule.get("classes") or {}
    verdicts = {
        **{label: "passed" for label in judged},
        **{label: "unchecked" for label in rule.get("unchecked", [])},
        **{label: "not_significant" for label in rule.get("not_significant", [])},
        **{label: "failed" for label in rule.get("failed", [])},
    }

    def scores(metrics: Mapping[str, Any] | None, label: str) -> dict | None:
        stats = (metrics or {}).get("per_class", {}).get(label)
        if stats is None:
            return None
        bounds = (metrics.get("intervals") or {}).get("recall", {}).get(label) or {}
        return {
            "precision": stats["precision"],
            "recall": stats["recall"],
            "f1": stats["f1"],
            "recall_lo": bounds.get("lo"),
            "recall_hi": bounds.get("hi"),
        }

    rows = []
    for label, stats in candidate.get("per_class", {}).items():
        new, old = scores(candidate, label), scores(champion, label)
        delta = None
        if old is not None:
            delta = {key: new[key] - old[key] for key in ("precision", "recall", "f1")}
        verdict = verdicts.get(label)
        rows.append(
            {
                "label": label,
                "support": int(stats["support"]),
                "candidate": new,
                "champion": old,
                "delta": delta,
                "gate": verdict,
                "p_worse": (judged.get(label) or {}).get("p_worse"),
                "flagged": verdict == "failed",
            }
        )
    return rows


def snapshot_changes(
    before: Iterable[tuple[int, str]], after: Iterable[tuple[int, str]], limit: int = 100
) -> dict:
    """What changed between two training snapshots of (item id, label) pairs.

    Args:
        before: The older snapshot (the champion's).
        after: The newer one (the candidate's).
        limit: The most items listed per kind (the counts are complete).

    Returns:
        ``added``, ``corrected`` and ``removed`` counts, and ``added_items``
        (``{"item_id", "label"}``), ``corrected_items`` (``{"item_id", "old", "new"}``) and
        ``removed_items`` (``{"item_id", "label"}``), each the first ``limit`` by item id.
    """
    old = {int(i): str(label) for i, label in before}
    new = {int(i): str(label) for i, label in after}
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    corrected = sorted(i for i in new.keys() & old.keys() if new[i] != old[i])
    return {
        "added": len(added),
        "corrected": len(corrected),
        "removed": len(removed),
        "added_items": [{"item_id": i, "label": new[i]} for i in added[:limit]],
        "corrected_items": [
            {"item_id": i, "old": old[i], "new": new[i]} for i in corrected[:limit]
        ],
        "removed_items": [{"item_id": i, "label": old[i]} for i in removed[:limit]],
    }
