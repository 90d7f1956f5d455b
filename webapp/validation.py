"""Project-dependent checks shared by the API, the CLI and the web pages.

They are the one step after parsing (once the API's schemas, the import-file parser or a form
have checked the input's shape): the item's data against the project's kind and features, a
label against the project's label set, probabilities against both. Each raises
`ValidationError` naming the offending field.
"""

from __future__ import annotations

import math

from labeling.training import FEATURE_BOUND

from .enums import Kind
from .errors import ValidationError
from .fields import MAX_TEXT_LENGTH
from .models import Project


def validate_data(project: Project, data: object, field: str = "data") -> dict:
    """Check an item's data against the project's kind; return it or raise ValidationError."""
    if not isinstance(data, dict):
        raise ValidationError({field: "must be an object"})
    if project.kind == Kind.TEXT:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValidationError({f"{field}.text": "must be a non-empty string"})
        if len(text) > MAX_TEXT_LENGTH:
            raise ValidationError(
                {f"{field}.text": f"must be at most {MAX_TEXT_LENGTH:,} characters"}
            )
        return data
    features = data.get("features")
    if not isinstance(features, dict):
        raise ValidationError({f"{field}.features": "must be an object of feature values"})
    for name in project.features:
        value = features.get(name)
        if value is None:
            raise ValidationError({f"{field}.features.{name}": "is required"})
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError({f"{field}.features.{name}": "must be a finite number"})
        # Compared, not converted: an int like 10**400 overflows math.isfinite; NaN fails too.
        if not -FEATURE_BOUND <= value <= FEATURE_BOUND:
            raise ValidationError(
                {
                    f"{field}.features.{name}": f"must be a number between -{FEATURE_BOUND:g} "
                    f"and {FEATURE_BOUND:g}"
                }
            )
    unknown = sorted(set(features) - set(project.features))
    if unknown:
        raise ValidationError(
            {f"{field}.features.{unknown[0]}": "is not a feature of this project"}
        )
    return data


def validate_label(project: Project, label: object, field: str = "label") -> str:
    """Check that `label` is one of the project's labels."""
    if not isinstance(label, str):
        raise ValidationError({field: "must be a string"})
    if label not in project.labels:
        raise ValidationError({field: f"unknown label {label!r}; expected one of {project.labels}"})
    return label


def validate_probabilities(project: Project, value: object, field: str) -> dict | None:
    """Check a {label: p} mapping: known labels, numbers in [0, 1]."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError({field: "must be an object mapping labels to probabilities"})
    labels = project.labels  # read once: each read of a mapped attribute costs, per row
    for key, p in value.items():
        if key not in labels:
            validate_label(project, key, f"{field}.{key}")  # raises, naming the label set
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
            raise ValidationError({f"{field}.{key}": "must be a number"})
        if not 0.0 <= p <= 1.0:
            raise ValidationError({f"{field}.{key}": "must be between 0 and 1"})
    return {k: float(v) for k, v in value.items()}
