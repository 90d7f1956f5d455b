"""Agreement between a project's experts over the API: each expert against the final labels,
Cohen's kappa per pair, Krippendorff's alpha (the agreement page's figures,
`webapp.review.agreement`)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..models import Project
from ..review.agreement import project_agreement
from .common import Blueprint, scoped, with_project

blp = Blueprint("agreement", __name__, description="How well the experts agree.")

RATE = validate.Range(0, 1)


class FinalAgreement(Schema):
    """An expert against the final labels, on the items another expert also answered."""

    items = fields.Integer(required=True, metadata={"description": "Items compared."})
    agreed = fields.Integer(required=True, metadata={"description": "Items where they agree."})
    rate = fields.Float(required=True, validate=RATE)
    low = fields.Float(required=True, validate=RATE, metadata={"description": "95% Wilson."})
    high = fields.Float(required=True, validate=RATE, metadata={"description": "95% Wilson."})


class ExpertOut(Schema):
    """One expert (an annotator identity: `user:<id>` or `key:<id>`)."""

    annotator = fields.String(required=True)
    answers = fields.Integer(
        required=True, metadata={"description": "Items answered (the latest answer counts)."}
    )
    shared_items = fields.Integer(
        required=True, metadata={"description": "Items another expert also answered."}
    )
    final = fields.Nested(
        FinalAgreement,
        required=True,
        allow_none=True,
        metadata={"description": "Null when the expert shares no item with another."},
    )


class PairOut(Schema):
    """Two experts on the items both answered."""

    a = fields.String(required=True)
    b = fields.String(required=True)
    shared_items = fields.Integer(required=True)
    agreement = fields.Float(
        required=True, validate=RATE, metadata={"description": "Share of items with one label."}
    )
    kappa = fields.Float(
        required=True,
        allow_none=True,
        validate=validate.Range(-1, 1),
        metadata={
            "description": (
                "Cohen's kappa; null when undefined (both gave one and the same label on every "
                "shared item)."
            )
        },
    )


class AgreementOut(Schema):
    """The project's agreement figures, excluded items left out."""

    answers = fields.Integer(
        required=True,
        metadata={"description": "Answers counted: each expert's latest on each item."},
    )
    items = fields.Integer(required=True, metadata={"description": "Items with an answer."})
    items_with_several_answers = fields.Integer(required=True)
    alpha = fields.Float(
        required=True,
        allow_none=True,
        validate=validate.Range(-1, 1),
        metadata={
            "description": (
                "Krippendorff's alpha (nominal) over every expert and item: 1 is perfect "
                "agreement, 0 what chance gives; at least 0.8 is reliable, 0.667 to 0.8 "
                "tentative. Null when undefined (no item with two answers, or one label "
                "throughout)."
            )
        },
    )
    experts = fields.List(fields.Nested(ExpertOut), required=True)
    pairs = fields.List(
        fields.Nested(PairOut),
        required=True,
        metadata={"description": "Every pair of experts with an item in common."},
    )


@blp.route("/projects/<slug>/agreement")
@scoped(
    "admin",
    "How well the project's experts agree: each expert against the items' final labels (on "
    "the items another expert also answered, with a 95% Wilson interval), Cohen's kappa for "
    "every pair of experts with items in common, and Krippendorff's alpha over all of them. "
    "An expert's later answer on an item replaces the earlier one; excluded items are left out.",
    errors=(404,),
)
@with_project
@blp.response(200, AgreementOut, description="The agreement figures.")
def show_agreement(project: Project):
    """Agreement between experts."""
    return project_agreement(project)
