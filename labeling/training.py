"""Model templates, feature matrices, fitting and label-aligned probabilities."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

TEMPLATES: dict[str, str] = {
    "text-logreg": (
        "TF-IDF over hashed word 1-2 grams (2^18 buckets, those seen in training, sublinear "
        "tf) followed by logistic regression whose regularisation C is chosen by 3-fold "
        "cross-validation on the labels at each retrain; a strong, fast baseline for texts."
    ),
    "tabular-logreg": (
        "Median imputation with missing-value indicators, standardisation, then logistic "
        "regression; linear and well calibrated on numeric features."
    ),
    "tabular-hgb": (
        "Median imputation with missing-value indicators, then histogram gradient boosting "
        "(100 rounds, learning rate 0.1); captures non-linear interactions on numeric features."
    ),
}
DEFAULT_TEMPLATE: dict[str, str] = {"text": "text-logreg", "tabular": "tabular-logreg"}
TEMPLATE_KIND: dict[str, str] = {
    "text-logreg": "text",
    "tabular-logreg": "tabular",
    "tabular-hgb": "tabular",
}
KINDS = ("text", "tabular")

# The largest magnitude a tabular feature may have. Ingest refuses anything beyond it, and
# `to_matrix` reads whatever still gets through (rows stored before the bound, other paths) as
# missing: one labeled 1.7e308 made StandardScaler's sums overflow to inf and every retrain fail
# with "Input X contains NaN". At 1e15 integers stay exact in float64 (2^53 is 9.0e15) and a
# square is 1e30, so sums of squares over billions of rows stay far below float64's 1.8e308
# (and one square fits even float32's 3.4e38): no template overflows, fitting or predicting.
FEATURE_BOUND = 1e15

# The C the text template's cross-validation searches, and the C a logistic-regression template
# uses when it does not search (too few labels to cross-validate: fewer than CV_FOLDS of some
# label). Text features are L2-normalised TF-IDF rows, which need a weak penalty: on BBC News
# the held-out log loss fell from C=10 to C=1000 at every labeled-set size from 50 to 1,500, so
# the grid reaches well past the old fixed C=10 (a grid that stopped at 30 or 100 always ended
# at its top). tabular-logreg keeps C=1: the same search on the breast-cancer, wine and digits
# sets changed macro-F1 by -0.7 to +0.1 points (bench.templates prints it), so it is not run.
TEXT_C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
DEFAULT_C: dict[str, float] = {"text-logreg": 10.0, "tabular-logreg": 1.0}
_C_GRID: dict[str, tuple[float, ...]] = {"text-logreg": TEXT_C_GRID}
CV_FOLDS = 3
# Cross-validation runs on at most this many labeled rows (a stratified subsample beyond it),
# so its cost stops growing with the labeled set; the final model still fits on every row.
CV_MAX_ROWS = 500


def _imputer() -> SimpleImputer:
    # keep_empty_features keeps an all-missing column instead of dropping it, so the column
    # count stays stable; add_indicator keeps "was missing" available as a signal to the model.
    return SimpleImputer(strategy="median", keep_empty_features=True, add_indicator=True)


def build_model(template: str) -> Pipeline:
    """Build an unfitted pipeline for a named template.

    Args:
        template: A key of :data:`TEMPLATES`.

    Returns:
        Unfitted scikit-learn ``Pipeline`` whose last step is named ``"clf"``.
    """
    if template == "text-logreg":
        # Hashing instead of a fitted vocabulary: on the 2,127 BBC articles a vocabulary of
        # 360k 1-2 grams made a 243 MB artifact that took 26 s to save and 33 s to load with
        # skops; hashed features give the same macro-F1 in a 6 MB artifact loaded in 0.1 s.
        steps = [
            (
                "hash",
                HashingVectorizer(
                    ngram_range=(1, 2),
                    n_features=2**18,
                    alternate_sign=False,
                    norm=None,
                    dtype=np.float32,
                ),
            ),
            # Buckets no training text hit would get the highest idf and drown the known words
            # of a short text at predict time; dropping them mirrors a fitted vocabulary.
            ("seen", VarianceThreshold(0.0)),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
            # C=10 is only the starting point: fit_model chooses C by cross-validation (see
            # select_c). With C=1 the default penalty underfits small labeled sets (BBC, 300
            # labels: macro-F1 0.80 against 0.94 with C=10, the same 0.98 on all of them).
            ("clf", LogisticRegression(C=DEFAULT_C["text-logreg"], max_iter=1000)),
        ]
    elif template == "tabular-logreg":
        steps = [
            # Features are missing as NaN (see to_matrix), which LogisticRegression rejects.
            ("impute", _imputer()),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=DEFAULT_C["tabular-logreg"], max_iter=1000)),
        ]
    elif template == "tabular-hgb":
        steps = [
            # HGB handles NaN natively but crashes on a column that is NaN in every row (a
            # feature no labeled item has yet), so it gets the same imputer as the linear model.
            ("impute", _imputer()),
            (
                "clf",
                HistGradientBoostingClassifier(
                    learning_rate=0.1,
                    max_iter=100,
                    max_leaf_nodes=31,
                    min_samples_leaf=20,
                    # "auto" only turns early stopping on above 10k rows, where it saves time;
                    # small labeled sets keep every row for fitting.
                    early_stopping="auto",
                    random_state=0,
                ),
            ),
        ]
    else:
        raise ValueError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")
    return Pipeline(steps)


def _as_float(value: Any, name: str) -> float:
    if value is None:
        return np.nan
    try:
        return float(value)
    except OverflowError:
        # An integer beyond float range (JSON allows 10**400): as far out as it gets.
        return np.inf if value > 0 else -np.inf
    except (TypeError, ValueError):
        raise ValueError(f"feature {name!r} is not numeric: {value!r}") from None


def to_matrix(
    kind: str, datas: Sequence[Mapping[str, Any]], features: Sequence[str] | None
) -> list[str] | np.ndarray:
    """Turn stored item payloads into model input.

    Args:
        kind: ``"text"`` or ``"tabular"``.
        datas: Item payloads; text items carry ``"text"``, tabular items ``"features"``.
        features: Ordered feature names for tabular data; ignored for text.

    Returns:
        For text, a list of strings; for tabular, a float64 array of shape
        (len(datas), len(features)) with NaN for missing features. A value beyond
        +-FEATURE_BOUND (infinities included) cannot be a measurement and reads as missing too,
        so the imputer fills it and no row can make a model's arithmetic overflow.
    """
    if kind == "text":
        return [str(d.get("text") or "") for d in datas]
    if kind == "tabular":
        if features is None:
            raise ValueError("tabular data needs a list of feature names")
        names = list(features)
        rows = [
            [_as_float((d.get("features") or {}).get(name), name) for name in names] for d in datas
        ]
        X = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
        # Missing rather than clipped: a clipped 1e308 would still be an outlier that squeezes
        # every ordinary value of its column to ~0 after scaling, wrecking the linear model.
        with np.errstate(invalid="ignore"):
            X[~(np.abs(X) <= FEATURE_BOUND)] = np.nan
        return X
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _stratified_cap(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Row indices of a stratified subsample of at most about ``cap`` rows.

    Every label keeps at least CV_FOLDS rows (all of them when it has fewer), so a subsample
    never loses the cross-validation a label's count allows.
    """
    n = len(y)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        quota = min(len(rows), max(CV_FOLDS, round(cap * len(rows) / n)))
        keep.append(rng.permutation(rows)[:quota])
    return np.sort(np.concatenate(keep))


def _used_columns(Z: Any) -> Any:
    """Column indices worth a cross-validation model's parameters.

    For sparse (text) features, the buckets at least two of the rows hit: a bucket one training
    text hits cannot carry a pattern to another text, and lbfgs's time grows with the number
    of coefficients. On BBC News this made the C search 3-6 times faster and chose the same C.
    Dense (tabular) features keep every column.
    """
    if sp.issparse(Z):
        return np.flatnonzero(Z.getnnz(axis=0) >= 2)
    return slice(None)


def select_c(
    Z: Any,
    y: Sequence[str],
    grid: Sequence[float],
    default: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Choose a logistic regression's C by stratified cross-validated log loss.

    The search walks the grid from ``default``: upwards while the mean held-out log loss
    falls, and downwards when the first step up did not help. Each fold's model is warm
    started from its previous C, so a step costs a fraction of a fresh fit. Log loss rather
    than accuracy or macro-F1 because with a few dozen labels those tie across most of the
    grid, while log loss still ranks the candidates.

    Args:
        Z: Feature matrix (the template's transformed features, rows aligned with ``y``).
        y: Label string per row.
        grid: Candidate C values, ascending; ``default`` must be one of them.
        default: The C to start from, and to return when a label has fewer than
            :data:`CV_FOLDS` rows (too few to cross-validate).
        seed: Seeds the subsample (beyond :data:`CV_MAX_ROWS` rows) and the fold split.

    Returns:
        JSON-serialisable dict: ``C`` (float), ``selected_by`` (``"cv"`` or ``"default"``),
        ``cv_folds``, ``cv_rows`` (rows cross-validated) and ``cv_log_loss`` (mean held-out
        log loss per C tried, keyed by ``str(C)``; empty for ``"default"``).
    """
    grid = [float(c) for c in grid]
    y_arr = np.asarray([str(label) for label in y], dtype=object)
    _, counts = np.unique(y_arr, return_counts=True)
    if len(counts) < 2 or counts.min() < CV_FOLDS:
        return {
            "C": float(default),
            "selected_by": "default",
            "cv_folds": 0,
            "cv_rows": 0,
            "cv_log_loss": {},
        }
    rows = _stratified_cap(y_arr, CV_MAX_ROWS, seed)
    Zs, ys = Z[rows], y_arr[rows]
    folds = []
    for train, held in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed).split(
        np.zeros(len(ys)), ys
    ):
        cols = _used_columns(Zs[train])
        folds.append((Zs[train][:, cols], ys[train], Zs[held][:, cols], ys[held]))
    models = [LogisticRegression(C=default, max_iter=1000, warm_start=True) for _ in folds]
    losses: dict[int, float] = {}

    def loss_at(i: int) -> float:
        if i not in losses:
            total = 0.0
            for model, (Z_fit, y_fit, Z_held, y_held) in zip(models, folds, strict=True):
                model.set_params(C=grid[i]).fit(Z_fit, y_fit)
                proba = model.predict_proba(Z_held)
                total += log_loss(y_held, proba, labels=model.classes_)
            losses[i] = total / len(folds)
        return losses[i]

    with warnings.catch_warnings():
        # A candidate that stops at max_iter is still a fair point on the loss curve; the
        # final model (fit_model) is fitted without this filter.
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = i = grid.index(float(default))
        while i + 1 < len(grid) and loss_at(i + 1) < loss_at(i):
            i += 1
        if i == start:
            while i > 0 and loss_at(i - 1) < loss_at(i):
                i -= 1
    return {
        "C": grid[i],
        "selected_by": "cv",
        "cv_folds": CV_FOLDS,
        "cv_rows": int(len(rows)),
        "cv_log_loss": {str(grid[k]): round(v, 6) for k, v in sorted(losses.items())},
    }


def _labels_array(y: Sequence[str]) -> np.ndarray:
    y_arr = np.asarray([str(label) for label in y], dtype=object)
    if len(np.unique(y_arr)) < 2:
        raise ValueError("need at least two labels to train")
    return y_arr


def _fixed_params(template: str, model: Pipeline) -> dict[str, Any]:
    clf = model.named_steps["clf"]
    keys = ("C", "learning_rate", "max_iter", "max_leaf_nodes", "min_samples_leaf")
    if template in DEFAULT_C:
        keys = ("C",)
    params = {k: v for k, v in clf.get_params().items() if k in keys}
    return {**params, "selected_by": "fixed"}


def select_params(template: str, X: Any, y: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """Choose a template's hyper-parameters on labeled rows without fitting the final model.

    Args:
        template: A key of :data:`TEMPLATES`.
        X: Model input as returned by :func:`to_matrix`.
        y: Label string per row.
        seed: Seeds the cross-validation (see :func:`select_c`).

    Returns:
        The dict :func:`fit_model` records as ``chosen_params_``; pass it back as
        ``fit_model(..., params=...)`` to fit more models with the same choice.
    """
    y_arr = _labels_array(y)
    model = build_model(template)
    if template not in _C_GRID:
        return _fixed_params(template, model)
    Z = model[:-1].fit_transform(X, y_arr)
    return select_c(Z, y_arr, _C_GRID[template], DEFAULT_C[template], seed=seed)


def fit_model(
    template: str,
    X: Any,
    y: Sequence[str],
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Pipeline:
    """Fit a fresh pipeline of the given template.

    For ``text-logreg`` C is chosen by cross-validation on ``X, y`` (see :func:`select_c`)
    unless ``params`` gives it; the feature steps are fitted once and shared by the search and
    the final fit. ``tabular-logreg`` uses C=1 unless ``params`` gives it.

    Args:
        template: A key of :data:`TEMPLATES`.
        X: Model input as returned by :func:`to_matrix`.
        y: Label string per row.
        params: Hyper-parameters chosen before (a ``chosen_params_`` dict, or just
            ``{"C": ...}``) for a logistic-regression template; skips the search. Other keys,
            and ``params`` for ``tabular-hgb``, are ignored.
        seed: Seeds the cross-validation.

    Returns:
        The fitted pipeline. Its ``chosen_params_`` attribute (a JSON-serialisable dict) says
        what was used: ``C`` and ``selected_by`` (``"cv"``, ``"default"`` when some label had
        fewer than :data:`CV_FOLDS` rows, ``"given"``, ``"fixed"`` for tabular-logreg's C=1),
        plus the search's ``cv_*`` figures; ``selected_by: "fixed"`` and the booster's
        settings for ``tabular-hgb``.
    """
    y_arr = _labels_array(y)
    model = build_model(template)
    given = params is not None and params.get("C") is not None
    if template not in DEFAULT_C or (template not in _C_GRID and not given):
        model.fit(X, y_arr)
        model.chosen_params_ = _fixed_params(template, model)
        return model
    Z = model[:-1].fit_transform(X, y_arr)
    if given:
        chosen = {"C": float(params["C"]), "selected_by": "given"}
    else:
        chosen = select_c(Z, y_arr, _C_GRID[template], DEFAULT_C[template], seed=seed)
    model.named_steps["clf"].set_params(C=chosen["C"]).fit(Z, y_arr)
    model.chosen_params_ = chosen
    return model


def predict_proba_for(model: Any, X: Any, labels: Sequence[str]) -> np.ndarray:
    """Predict probabilities with columns in the project's label order.

    Args:
        model: Fitted classifier exposing ``classes_`` and ``predict_proba``.
        X: Model input as returned by :func:`to_matrix`.
        labels: The project's labels, in display order.

    Returns:
        Float array of shape (n_rows, len(labels)); labels the model never saw get 0.
        Classes the model knows but ``labels`` no longer lists are dropped, so such rows
        may sum to less than 1.
    """
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    labels = [str(label) for label in labels]
    position: dict[str, int] = {}
    for i, label in enumerate(labels):
        position.setdefault(label, i)
    src, dst = [], []
    for j, cls in enumerate(model.classes_):
        i = position.get(str(cls))
        if i is not None:
            src.append(j)
            dst.append(i)
    out = np.zeros((proba.shape[0], len(labels)), dtype=np.float64)
    # One column copy for the whole batch: the loop above is over classes, never rows.
    out[:, dst] = proba[:, src]
    return out


def cross_val_predictions(
    template: str, X: Any, y: Sequence[str], labels: Sequence[str], folds: int = 5, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """Out-of-fold predictions over a labeled set: every row predicted by a model that did not
    train on it (stratified folds, as many as the rarest label allows, at least 2).

    Args:
        template: A key of :data:`TEMPLATES`.
        X: Model input as returned by :func:`to_matrix`.
        y: Label string per row; at least two labels with two rows each.
        labels: The project's labels, in display order (the probability columns).
        folds: The most folds to use.
        seed: Seed of the fold assignment.

    Returns:
        (predicted label per row, probabilities of shape (rows, len(labels))).
    """
    from sklearn.model_selection import StratifiedKFold

    y_arr = np.asarray([str(label) for label in y], dtype=object)
    _, counts = np.unique(y_arr, return_counts=True)
    k = int(min(folds, counts.min()))
    if len(counts) < 2 or k < 2:
        raise ValueError("cross-validation needs two labels with at least two rows each")
    labels = [str(label) for label in labels]
    proba = np.zeros((len(y_arr), len(labels)), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(y_arr)), y_arr):
        pick = (
            (lambda rows: [X[i] for i in rows]) if isinstance(X, list) else (lambda rows: X[rows])
        )
        if len(np.unique(y_arr[train])) < 2:
            continue  # cannot happen with stratified folds of two labels; kept for safety
        model = fit_model(template, pick(train), list(y_arr[train]))
        proba[test] = predict_proba_for(model, pick(test), labels)
    predicted = [labels[i] for i in proba.argmax(axis=1)]
    return predicted, proba
