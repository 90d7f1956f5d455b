"""What each model version's monitoring compares it with, summarised once when it is trained.

Every retrain summarises (`reference_for`) a uniform random sample of the project's pool: the
population the version was trained from, without the active-learning bias of the labeled
items (the held-out audits are a uniform sample of the same pool). `labeling.drift` keeps
quantile sketches, category counts, text length and out-of-vocabulary share against the
training texts' vocabulary, the version's predicted labels and confidences, and a capped
sample of its own features for the domain classifier. The CBPE calibrator is fitted on its
held-out audits (`labeling.monitoring.CBPE`). Both are stored with the version; the raw rows
are never read again.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from sqlalchemy import select

from labeling import drift, training
from labeling import monitoring as stats

from .extensions import db
from .models import Item, Project

# Pool items sampled for a version's drift reference.
REFERENCE_ROWS = 2000
# Tokens of the training texts kept as the vocabulary the out-of-vocabulary share is measured
# against (the most frequent ones).
VOCABULARY_CAP = 50_000
_TOKEN = re.compile(drift.TOKEN_PATTERN)


def _vocabulary(texts: Iterable[str]) -> list[str]:
    counts: dict[str, int] = defaultdict(int)
    for text in texts:
        for token in _TOKEN.findall(str(text).lower()):
            counts[token] += 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return sorted(ranked[:VOCABULARY_CAP])


def model_features(model, X):
    """The model's own features of X: its pipeline up to the classifier."""
    return model[:-1].transform(X) if len(model.steps) > 1 else X


def reference_for(project: Project, model, X_train, X_held, y_held) -> tuple[dict, dict]:
    """The drift reference and the CBPE calibrator of a freshly trained version.

    Reads a uniform random sample of the pool (`REFERENCE_ROWS` items by the items' random
    key); the calibrator is fitted on the held-out audits (identity with too few of them).
    """
    labels = list(project.labels)
    rows = db.session.scalars(
        select(Item.data)
        .where(Item.project_id == project.id, Item.excluded_at.is_(None))
        .order_by(Item.rand)
        .limit(REFERENCE_ROWS)
    ).all()
    X = training.to_matrix(project.kind, list(rows), project.features)
    proba = training.predict_proba_for(model, X, labels) if len(rows) else np.zeros((0, 0))
    predicted = [labels[i] for i in proba.argmax(axis=1)] if len(rows) else []
    confidence = proba.max(axis=1) if len(rows) else []
    common = {
        "predicted_labels": predicted,
        "confidences": confidence,
        "bins": int(project.setting("drift_bins")),
        "features": model_features(model, X) if len(rows) else None,
        "source": f"{len(rows)} random pool items and the version's predictions on them",
    }
    if project.kind == "text":
        vocabulary = _vocabulary(X_train)
        reference = drift.build_reference(texts=X, vocabulary=vocabulary, **common)
        reference["vocabulary"] = vocabulary
    else:
        reference = drift.build_reference(X_numeric=X, feature_names=project.features, **common)
    calibrator = stats.CBPE(labels)
    if len(y_held):
        calibrator.fit([str(y) for y in y_held], training.predict_proba_for(model, X_held, labels))
    return reference, calibrator.to_dict()
