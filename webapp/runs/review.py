"""Glue for the engineers' review of one gate decision: the candidate beside the champion it was
judged against, the items it fixed and broke, the per-class deltas, and what changed in the
training data since the champion's snapshot. The run page and the API's `…/review` read it.

Read-only: nothing here writes (webapp/transaction.py).
"""

from __future__ import annotations

import json
import zlib

from sqlalchemy import select

from labeling import review

from ..enums import JudgedBy, values
from ..extensions import db
from ..models import ModelVersion, Project, RetrainRun

# The most items listed per kind of snapshot change (the counts are complete).
CHANGE_LIMIT = 100
# The metrics shown side by side with their intervals, in display order.
ESTIMATES = ("accuracy", "macro_f1", "balanced_accuracy")
# How a decision was judged (`judged_by` in the metrics `webapp.training._judge` records).
JUDGED_BY = values(JudgedBy)


def snapshot_pairs(run: RetrainRun | None) -> list[tuple[int, str]] | None:
    """The (item id, label) pairs a run trained on, or None when it recorded no snapshot."""
    if run is None or run.snapshot is None:
        return None
    return [(int(i), str(label)) for i, label in json.loads(zlib.decompress(run.snapshot))]


def summary(metrics: dict | None) -> dict | None:
    """A model's metrics as the review shows them: each estimate with its interval, the
    calibration and the confusion matrix (None for no metrics)."""
    if not metrics:
        return None
    intervals = metrics.get("intervals") or {}
    calibration = metrics.get("calibration") or {}
    out = {"n": int(metrics.get("n", 0))}
    for name in ESTIMATES:
        bounds = intervals.get(name) or {}
        out[name] = {
            "value": metrics.get(name),
            "lo": bounds.get("lo"),
            "hi": bounds.get("hi"),
            "method": bounds.get("method"),
        }
    out["brier"] = calibration.get("brier")
    out["ece"] = calibration.get("ece")
    out["confusion"] = metrics.get("confusion")
    return out


def class_rule(reasons: list[dict] | None) -> dict | None:
    """The numbers of the gate's class rule (`no_class_regression`), if it recorded any."""
    for reason in reasons or []:
        if isinstance(reason, dict) and reason.get("rule") == "no_class_regression":
            return reason.get("numbers") or None
    return None


def _version_numbered(project: Project, number: int | None) -> ModelVersion | None:
    if number is None:
        return None
    return db.session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.version == number
        )
    )


def changes_since(project: Project, run: RetrainRun) -> dict:
    """The run's training snapshot against that of the champion it was judged against.

    Returns `against` (that champion's version number, or None), `why` when there is nothing
    to compare (no champion then, or a snapshot that was not recorded: the counts are then
    None and the lists empty), and the counts and bounded lists of
    `labeling.review.snapshot_changes`.
    """
    number = (run.metrics or {}).get("champion_version")
    out = {"against": number, "why": None, **review.snapshot_changes([], [])}
    out.update(added=None, corrected=None, removed=None)
    if number is None:
        out["why"] = "There was no champion when this run was judged: nothing to compare with."
        return out
    champion = _version_numbered(project, number)
    champion_run = (
        db.session.get(RetrainRun, champion.run_id) if champion and champion.run_id else None
    )
    before, after = snapshot_pairs(champion_run), snapshot_pairs(run)
    if before is None or after is None:
        whose = f"v{number}" if before is None else "this run"
        out["why"] = f"The training snapshot of {whose} was not recorded."
        return out
    out.update(review.snapshot_changes(before, after, CHANGE_LIMIT))
    return out


def of_run(project: Project, run: RetrainRun | None, version: ModelVersion | None) -> dict:
    """Everything the review of one decision shows, from the run's stored outcome.

    `run` may be None (a version no retrain made) or unfinished: the fields are then empty.
    """
    metrics = (run.metrics if run is not None else None) or {}
    candidate, champion = metrics.get("candidate"), metrics.get("champion")
    paired = review.unpack_paired(metrics.get("items"))
    sorted_out = review.outcomes(paired) if paired else {"fixed": [], "broken": [], "counts": None}
    return {
        "version": version.version if version is not None else None,
        "run_id": run.id if run is not None else None,
        "decision": run.decision if run is not None else None,
        "judged_by": (candidate or {}).get("judged_by"),
        # Runs recorded before `judged_n` were judged on all their metrics' items.
        "judged_n": (candidate or {}).get("judged_n", (candidate or {}).get("n")),
        "champion_version": metrics.get("champion_version"),
        "candidate": summary(candidate),
        "champion": summary(champion),
        "baseline": summary(metrics.get("baseline")),
        "class_deltas": (
            review.class_deltas(candidate, champion, class_rule(run.reasons)) if candidate else []
        ),
        "paired_items": len(paired["ids"]) if paired else None,
        "agreement": sorted_out["counts"],
        "fixed": sorted_out["fixed"],
        "broken": sorted_out["broken"],
        "changes": changes_since(project, run) if candidate else None,
        "gate": [r for r in run.reasons or [] if isinstance(r, dict)] if run is not None else [],
    }


def of_version(project: Project, version: ModelVersion) -> dict:
    """The review of the decision that made `version` (empty for a version no retrain made)."""
    run = db.session.get(RetrainRun, version.run_id) if version.run_id else None
    return of_run(project, run, version)
