"""A project's pool of items: `items` (import, counts), `queue` (lanes, leases, skips), `cursor`
(where an expert's skipped prefix of the lane ends) and `labels` (annotations and the retrain
claim). The names callers use are re-exported here."""

from .items import (
    IMPORT_BATCH,
    counts,
    counts_by_project,
    find_or_create_item,
    import_items,
    labeled_items,
    recount,
)
from .labels import annotate, label_unlabeled
from .queue import (
    LANE_FILTERS,
    REASONS,
    audit_share_now,
    has_champion,
    leased_to_other,
    next_item,
    release,
    release_held,
    skip,
)

__all__ = [
    "IMPORT_BATCH",
    "LANE_FILTERS",
    "REASONS",
    "annotate",
    "audit_share_now",
    "counts",
    "counts_by_project",
    "find_or_create_item",
    "has_champion",
    "import_items",
    "label_unlabeled",
    "labeled_items",
    "leased_to_other",
    "next_item",
    "recount",
    "release",
    "release_held",
    "skip",
]
