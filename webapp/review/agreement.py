"""A project's inter-expert agreement, read from its annotations in one pass and handed to
`labeling.agreement` (which knows nothing of the database): each expert's answers and their
agreement with the final labels, Cohen's kappa per pair of experts, Krippendorff's alpha.

An expert's later answer on an item replaces the earlier one (the rows are read in id order,
oldest first, as the helpers expect). Excluded items are left out: a bad row says nothing about
the experts. An item's final label is `Item.label`.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from labeling.agreement import agreement_with_final, krippendorff_alpha, pairwise_kappa

from ..extensions import db
from ..models import Annotation, Item, Project

# Rows fetched per round trip while streaming a project's annotations.
BATCH = 5000


def project_agreement(project: Project) -> dict:
    """The project's agreement figures (see the API's `AgreementOut` schema for each field).

    `experts[*].final` compares an expert with the final labels only on the items another
    expert also answered: on an item they alone answered, the final label is their own answer,
    and counting it would push every expert toward perfect agreement.
    """
    latest: dict[int, dict[str, str]] = defaultdict(dict)
    final: dict[int, str] = {}
    rows = db.session.execute(
        select(Annotation.item_id, Annotation.annotator, Annotation.label, Item.label)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Item.excluded_at.is_(None))
        .order_by(Annotation.id)
        .execution_options(yield_per=BATCH)
    )
    for item_id, annotator, label, item_label in rows:
        latest[item_id][annotator] = label
        if item_label is not None:
            final[item_id] = item_label

    answers = [
        (item_id, annotator, label)
        for item_id, by_expert in latest.items()
        for annotator, label in by_expert.items()
    ]
    several = {item_id for item_id, by_expert in latest.items() if len(by_expert) >= 2}
    answered: dict[str, int] = defaultdict(int)
    shared: dict[str, int] = defaultdict(int)
    for item_id, annotator, _label in answers:
        answered[annotator] += 1
        shared[annotator] += item_id in several
    with_final = agreement_with_final(
        [a for a in answers if a[0] in several],
        {item_id: label for item_id, label in final.items() if item_id in several},
    )
    experts = [
        {
            "annotator": annotator,
            "answers": answered[annotator],
            "shared_items": shared[annotator],
            "final": with_final.get(annotator),
        }
        for annotator in sorted(answered)
    ]
    pairs = pairwise_kappa(answers)
    return {
        "answers": len(answers),
        "items": len(latest),
        "items_with_several_answers": len(several),
        "alpha": krippendorff_alpha(answers) if several else None,
        "experts": experts,
        "pairs": [
            {
                "a": p["a"],
                "b": p["b"],
                "shared_items": p["items"],
                "agreement": p["agreement"],
                "kappa": p["kappa"],
            }
            for p in pairs
        ],
    }
