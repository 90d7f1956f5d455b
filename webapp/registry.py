"""The model registry: promote, reject, roll back and alias model versions, each with an event.

A project has at most one champion (what `serving` predicts with) and at most one challenger
(the version waiting to be compared with it), both enforced by partial unique indexes. Every
change records a `ModelEvent` saying who (`user:3`, `key:5`, `cli`, `gate`), when and why.

Each function is one change for the caller's unit of work: it flushes and never commits
(`webapp.transaction`). A change the project's state does not allow raises `Conflict` (a 409
in the API); a missing or overlong reason raises `ValidationError` on `reason` (a 422).
Changes of one project are serialized on its row (PostgreSQL), and a concurrent change that
still breaks a unique index (the retrain job promoting meanwhile) is a `Conflict` too, never a
500: the attempt runs in a savepoint, so the caller's other work survives.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from labeling import split

from . import webhooks
from .enums import (
    ExperimentDecision,
    ExperimentStatus,
    ModelAction,
    ModelStatus,
    WebhookEvent,
)
from .errors import Conflict, NotFound, ValidationError
from .extensions import db
from .models import Experiment, ModelEvent, ModelVersion, Project, utcnow

# The longest reason a person may give for a registry change.
MAX_REASON = 2000
GATE = "gate"  # the actor of the retrain gate's own promotions and aliases
CLI = "cli"  # the actor of `corrigo model …`
# What may become the challenger: a retired version was a champion (roll back to it instead).
MAY_CHALLENGE = (ModelStatus.CANDIDATE, ModelStatus.REJECTED)
MAY_REJECT = (ModelStatus.CANDIDATE, ModelStatus.CHALLENGER)
# The libraries whose versions a model's lineage records (the artifact loads with these).
LIBRARIES = ("scikit-learn", "numpy", "scipy", "skops")


def find_version(project: Project, number: int) -> ModelVersion:
    """The project's version `number`, or NotFound naming it."""
    version = db.session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"There is no model version {number} in project {project.slug!r}.")
    return version


def champion(project: Project) -> ModelVersion | None:
    """The project's champion, or None."""
    return _with_status(project.id, ModelStatus.CHAMPION)


def challenger(project: Project) -> ModelVersion | None:
    """The project's challenger, or None."""
    return _with_status(project.id, ModelStatus.CHALLENGER)


def previous_champion(project: Project) -> ModelVersion | None:
    """The champion before the current one: the retired version promoted last.

    Champions follow each other, so the one promoted last of those retired is the one retired
    last. Versions retired before any was promoted (none in practice) come after.
    """
    return db.session.scalar(
        select(ModelVersion)
        .where(ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.RETIRED)
        .order_by(ModelVersion.promoted_at.desc().nulls_last(), ModelVersion.version.desc())
        .limit(1)
    )


def promote(version: ModelVersion, actor: str, reason: str) -> ModelEvent:
    """Make `version` the champion; the current one retires. A challenger loses its alias.

    Any version but the champion may be promoted, a rejected one included (a person overruling
    the gate, with a reason). The pool is rescored under the new champion after the commit.
    """
    reason = check_reason(reason)
    project = _lock(version)
    if version.status == ModelStatus.CHAMPION:
        raise Conflict(f"Version {version.version} is already the champion.")
    return _crown(project, version, ModelAction.PROMOTE, actor, reason)


def reject(version: ModelVersion, actor: str, reason: str) -> ModelEvent:
    """Reject a candidate or the challenger (the champion cannot be: promote another first)."""
    reason = check_reason(reason)
    project = _lock(version)
    if version.status == ModelStatus.CHAMPION:
        raise Conflict(
            f"Version {version.version} is the champion and cannot be rejected: promote another "
            "version or roll back first."
        )
    if version.status not in MAY_REJECT:
        raise Conflict(
            f"Version {version.version} is {version.status}: only a candidate or the challenger "
            "can be rejected."
        )

    def record() -> ModelEvent:
        _end_experiment(project.id, version.id, actor, f"version {version.version} was rejected")
        return _event(project, version, ModelAction.REJECT, actor, reason)

    return _guarded(lambda: _move(version, ModelStatus.REJECTED), record)


def rollback(
    project: Project, actor: str, reason: str, to_version: ModelVersion | None = None
) -> ModelEvent:
    """Bring back an earlier champion: `to_version` (a retired version), or by default the
    previous champion; the current champion retires. Conflict when there is none to go back to.
    """
    reason = check_reason(reason)
    lock_project(project.id)
    current = champion(project)
    if current is None:
        raise Conflict("There is no champion to roll back from.")
    if to_version is None:
        target = previous_champion(project)
        if target is None:
            raise Conflict(
                f"Nothing to roll back to: version {current.version} is the only champion the "
                "project has had."
            )
    else:
        db.session.refresh(to_version)
        target = to_version
        if target.project_id != project.id:
            raise NotFound(f"There is no model version {target.version} in {project.slug!r}.")
        if target.status != ModelStatus.RETIRED:
            raise Conflict(
                f"Version {target.version} is {target.status}: a rollback goes back to a "
                "retired champion (promote other versions instead)."
            )
    return _crown(project, target, ModelAction.ROLLBACK, actor, reason)


def set_challenger(version: ModelVersion, actor: str, reason: str) -> ModelEvent:
    """Make a candidate (or a rejected version) the project's challenger; the challenger it
    replaces goes back to being a candidate."""
    reason = check_reason(reason)
    project = _lock(version)
    return _alias(project, version, ModelAction.CHALLENGER, actor, reason)


def record_auto(
    version: ModelVersion,
    action: str,
    reason: str | None = None,
    from_version_id: int | None = None,
) -> ModelEvent:
    """Record the gate's decision for a freshly trained version, as actor `gate`.

    `action` is `auto_promote` (the version becomes the champion, the old one retires, the
    pool is rescored) or `auto_challenger` (the version becomes the challenger). Call it in
    the retrain's recording transaction, instead of setting the status by hand; if the status
    was already set, only the event is added (with `from_version_id`, if the caller knows it).
    """
    action = ModelAction(action)
    if action not in (ModelAction.AUTO_PROMOTE, ModelAction.AUTO_CHALLENGER):
        raise ValueError(f"record_auto records the gate's actions, not {action}")
    run = f"retrain run {version.run_id}" if version.run_id else "a retrain"
    if version.id is None:
        db.session.add(version)
        db.session.flush()
    project = _lock(version)
    if action == ModelAction.AUTO_PROMOTE:
        reason = reason or f"The gate promoted it after {run}."
        if version.status == ModelStatus.CHAMPION:
            return _event(project, version, action, GATE, reason, from_version_id)
        return _crown(project, version, action, GATE, reason)
    reason = reason or f"The gate made it the challenger after {run}."
    if version.status == ModelStatus.CHALLENGER:
        return _event(project, version, action, GATE, reason)
    return _alias(project, version, action, GATE, reason)


def history(project: Project, version: ModelVersion | None = None) -> list[ModelEvent]:
    """The project's registry events (or those about one version), newest first."""
    query = select(ModelEvent).where(ModelEvent.project_id == project.id)
    if version is not None:
        query = query.where(
            (ModelEvent.model_version_id == version.id) | (ModelEvent.from_version_id == version.id)
        )
    return db.session.scalars(query.order_by(ModelEvent.id.desc())).all()


def check_reason(reason: object) -> str:
    """The reason, stripped; ValidationError on `reason` if it is empty or too long."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationError({"reason": "Say why: a reason is required."})
    if len(text) > MAX_REASON:
        raise ValidationError({"reason": f"must be at most {MAX_REASON} characters"})
    return text


def lineage(
    model, heldout_ids: Sequence[int] | Iterable[int], heldout_labels, seconds: float | None
) -> dict:
    """ModelVersion's lineage columns for a fitted model and the held-out set it was measured on.

    Returns `params` (the pipeline's JSON-able hyper-parameters), `library_versions`,
    `heldout_size`, `heldout_digest` and `training_seconds`, ready for `ModelVersion(**…)`.
    """
    ids = [int(i) for i in heldout_ids]
    labels = [str(y) for y in heldout_labels]
    return {
        "params": model_params(model),
        "library_versions": library_versions(),
        "heldout_size": len(ids),
        "heldout_digest": split.snapshot_digest(ids, labels),
        "training_seconds": None if seconds is None else round(float(seconds), 3),
    }


def model_params(model) -> dict:
    """An estimator's hyper-parameters that JSON can hold (nested estimators are left out)."""
    try:
        params = model.get_params(deep=True)
    except AttributeError:
        return {}
    out = {}
    for name, value in sorted(params.items()):
        plain = _plain(value)
        if plain is not _SKIP:
            out[name] = plain
    # What the fit chose for itself (the text template's C by cross-validation, and how).
    chosen = getattr(model, "chosen_params_", None)
    if isinstance(chosen, dict):
        plain = {key: _plain(value) for key, value in chosen.items()}
        out["chosen"] = {key: value for key, value in plain.items() if value is not _SKIP}
    return out


_SKIP = object()


def _plain(value):
    """A JSON-able form of a hyper-parameter, or _SKIP for estimators and other objects."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, tuple | list):
        items = [_plain(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    if isinstance(value, type):
        return value.__name__  # a dtype such as numpy.float32
    if hasattr(value, "item") and not hasattr(value, "fit"):
        return _plain(value.item())  # a numpy scalar
    return _SKIP


def library_versions() -> dict:
    """The Python and library versions this process trains with."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["platform"] = sys.platform
    return found


# ---------------------------------------------------------------------------------------------


def _with_status(project_id: int, status: str) -> ModelVersion | None:
    return db.session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project_id, ModelVersion.status == status
        )
    )


def lock_project(project_id: int) -> None:
    """Serialize registry changes of one project (PostgreSQL; SQLite serializes writers).

    Whatever else a change locks (an experiment's row) it locks after this, so a person's
    promotion and an experiment's decision wait for each other instead of deadlocking.

    FOR NO KEY UPDATE: inserts that reference the project (items, predictions) do not wait.
    """
    db.session.execute(
        select(Project.id).where(Project.id == project_id).with_for_update(key_share=True)
    )


def _lock(version: ModelVersion) -> Project:
    """Lock the version's project and read the version's status as committed now."""
    lock_project(version.project_id)
    if version not in db.session.new and not db.session.is_modified(version):
        db.session.refresh(version)
    return db.session.get(Project, version.project_id)


def _move(version: ModelVersion, status: str) -> None:
    version.status = status
    db.session.flush()


def _crown(project: Project, version: ModelVersion, action: str, actor: str, reason: str):
    """Retire the champion, make `version` the champion, record the event."""
    current = champion(project)

    def change() -> None:
        if current is not None:
            _move(current, ModelStatus.RETIRED)  # flushed first: one champion at any moment
        version.status = ModelStatus.CHAMPION
        version.promoted_at = utcnow()
        db.session.flush()

    from_id = current.id if current is not None else None

    def record() -> ModelEvent:
        event = _event(project, version, action, actor, reason, from_id)
        payload = {
            "version": version.version,
            "previous_version": current.version if current is not None else None,
            "action": action,
            "actor": event.actor,
            "reason": reason,
        }
        webhooks.emit(project.id, WebhookEvent.MODEL_PROMOTED, payload)
        _end_experiment(project.id, None, actor, f"version {version.version} became the champion")
        return event

    # No rescore: the queue's scores are the learner's (the newest version, see
    # `training.learner_id`), which a promotion or a rollback does not change.
    return _guarded(change, record)


def _alias(project: Project, version: ModelVersion, action: str, actor: str, reason: str):
    """Make `version` the challenger; the previous challenger becomes a candidate again."""
    if version.status == ModelStatus.CHALLENGER:
        raise Conflict(f"Version {version.version} is already the challenger.")
    if version.status not in MAY_CHALLENGE:
        raise Conflict(
            f"Version {version.version} is {version.status}: only a candidate or a rejected "
            "version can become the challenger."
        )
    current = challenger(project)

    def change() -> None:
        if current is not None:
            _move(current, ModelStatus.CANDIDATE)
        _move(version, ModelStatus.CHALLENGER)

    from_id = current.id if current is not None else None
    return _guarded(change, lambda: _event(project, version, action, actor, reason, from_id))


def _guarded(change, record):
    """Run a status change in a savepoint; a concurrent change breaking a unique index is a
    Conflict (the caller's other work in the transaction is kept)."""
    try:
        with db.session.begin_nested():
            change()
    except IntegrityError:
        raise Conflict(
            "Another change to this project's models happened at the same time; reload and "
            "try again."
        ) from None
    return record()


def _event(
    project: Project,
    version: ModelVersion,
    action: str,
    actor: str,
    reason: str,
    from_version_id: int | None = None,
) -> ModelEvent:
    event = ModelEvent(
        project_id=project.id,
        model_version_id=version.id,
        action=action,
        actor=actor[:64],
        reason=reason,
        from_version_id=from_version_id,
        created_at=utcnow(),
    )
    db.session.add(event)
    db.session.flush()
    return event


def _end_experiment(project_id: int, version_id: int | None, actor: str, what: str) -> None:
    """End the running experiment when its champion (`version_id` None) or its challenger
    (`version_id`) changes outside it: its arms no longer compare what its design said. An
    experiment's own moves (actor `experiment:<id>`) leave it running; it records them."""
    experiment = db.session.scalar(
        select(Experiment).where(
            Experiment.project_id == project_id, Experiment.status == ExperimentStatus.RUNNING
        )
    )
    if experiment is None or actor == f"experiment:{experiment.id}":
        return
    if version_id is not None and version_id != experiment.challenger_version_id:
        return
    experiment.status, experiment.stopped_at = ExperimentStatus.STOPPED, utcnow()
    experiment.decision, experiment.decided_by = ExperimentDecision.SUPERSEDED, actor[:64]
    experiment.reasons = [
        *(experiment.reasons or []),
        f"Ended: {what} ({actor}), so the arms no longer compare what the design said.",
    ]
    db.session.flush()
    webhooks.emit(
        project_id,
        WebhookEvent.EXPERIMENT_DECIDED,
        {
            "experiment_id": experiment.id,
            "name": experiment.name,
            "decision": experiment.decision,
            "decided_by": experiment.decided_by,
            "reasons": experiment.reasons,
        },
    )
