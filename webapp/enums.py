"""Every status-like value in one place: the API schemas, the OpenAPI `enum`s and the database's
CHECK constraints all come from these classes.

Each is a `StrEnum`, so a member compares equal to its stored string (`RunStatus.QUEUED ==
"queued"`) and rows written before the enums existed read back unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a retrain run is."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Decision(StrEnum):
    """What the gate decided for a finished run."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    CHALLENGER = "challenger"  # passed, and the project sends passing candidates to challenger


class JudgedBy(StrEnum):
    """Which items a retrain's gate decision was made on (`judged_by` in its metrics)."""

    CROSS_VALIDATION = "cross_validation"  # a first model, before any held-out audit
    HELDOUT = "heldout"  # every held-out audit
    HELDOUT_UNSEEN = "heldout_unseen"  # the audits the champion was not judged on
    HELDOUT_SINCE_PROMOTION = "heldout_since_promotion"  # older runs: labeled since promotion


class PromoteTo(StrEnum):
    """Where a candidate that passes the gate goes (the `promote_to` setting)."""

    CHAMPION = "champion"  # it is promoted and serves `predict` at once
    CHALLENGER = "challenger"  # it becomes the challenger, to be proven live first


class Trigger(StrEnum):
    """What asked for a retrain."""

    MANUAL = "manual"  # the API's POST …/retrain
    AUTO = "auto"  # every N label changes
    UI = "ui"  # the runs page's Retrain button
    CLI = "cli"  # `corrigo retrain`
    DEMO = "demo"  # `corrigo demo`'s first retrain
    SCHEDULE = "schedule"  # the project's `retrain_schedule` (the clock process)
    ALERT = "alert"  # an alert rule whose action is to retrain (the run names the alert)


class QueueReason(StrEnum):
    """Why the queue served an item."""

    DISPUTED = "disputed"
    UNCERTAIN = "uncertain"
    AUDIT = "audit"
    COLD_START = "cold-start"


class ReviewReason(StrEnum):
    """Why an item waits for a reviewer."""

    REVIEW = "review"  # the experts disagree in a way the project's rule does not settle
    SUSPECT = "suspect"  # confident learning flagged its label as likely wrong


class Resolver(StrEnum):
    """How an item's label was resolved (the resolution's `rule`)."""

    LATEST = "latest"
    MAJORITY = "majority"
    REVIEW = "review"
    DAWID_SKENE = "dawid_skene"
    REVIEWER = "reviewer"


class ItemSource(StrEnum):
    """How an item entered the pool."""

    IMPORT = "import"  # the API's or the CLI's import
    PRODUCTION = "production"  # a prediction (served or logged)


class Role(StrEnum):
    """What a web user may do."""

    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ENGINEER = "engineer"
    ADMIN = "admin"


class Scope(StrEnum):
    """What an API key may do."""

    PREDICT = "predict"
    FEEDBACK = "feedback"
    LABEL = "label"
    ADMIN = "admin"


class ModelStatus(StrEnum):
    """A model version's place in the registry."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"
    # The alias of the one version (at most) waiting to be compared with the champion.
    CHALLENGER = "challenger"
    RETIRED = "retired"
    REJECTED = "rejected"


class ModelAction(StrEnum):
    """What a registry event did to a model version (see `webapp.registry`)."""

    PROMOTE = "promote"  # a person made it the champion
    REJECT = "reject"  # a person rejected it
    ROLLBACK = "rollback"  # a person brought an earlier champion back
    CHALLENGER = "challenger"  # a person made it the challenger
    AUTO_PROMOTE = "auto_promote"  # the gate promoted it after a retrain
    AUTO_CHALLENGER = "auto_challenger"  # the gate made it the challenger after a retrain


class TaskStatus(StrEnum):
    """Where a background task (rescore, …) is."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Kind(StrEnum):
    """What a project's items carry."""

    TEXT = "text"
    TABULAR = "tabular"


class Strategy(StrEnum):
    """The active-learning query strategy that scores the pool."""

    MARGIN = "margin"
    UNCERTAINTY = "uncertainty"
    ENTROPY = "entropy"
    # Query by committee: how much a bootstrap committee of the learner's template disagrees
    # (modAL's vote_entropy and KL_max_disagreement). Short names: item.score_strategy holds 16
    # characters.
    QBC_VOTE_ENTROPY = "qbc_vote_entropy"
    QBC_KL = "qbc_kl"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The stored strings of an enum, in declaration order."""
    return tuple(member.value for member in enum)


class AlertState(StrEnum):
    """Where an alert is in its life."""

    FIRING = "firing"  # its rule's condition holds
    ACKNOWLEDGED = "acknowledged"  # still firing, and a person said they are on it
    RESOLVED = "resolved"  # the condition cleared (past the rule's hysteresis)


class DeliveryStatus(StrEnum):
    """Where a webhook delivery is."""

    PENDING = "pending"  # not delivered yet; tried again at `next_attempt_at`
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed


class WebhookEvent(StrEnum):
    """The events a webhook can subscribe to."""

    ALERT_FIRING = "alert.firing"
    ALERT_RESOLVED = "alert.resolved"
    RUN_FINISHED = "run.finished"
    MODEL_PROMOTED = "model.promoted"
    EXPERIMENT_STARTED = "experiment.started"
    EXPERIMENT_DECIDED = "experiment.decided"


class ExperimentStatus(StrEnum):
    """Where an A/B experiment is."""

    RUNNING = "running"  # serving its split (at most one per project)
    STOPPED = "stopped"  # decided, by its own rule or by an engineer


class ExperimentMode(StrEnum):
    """How the challenger meets traffic."""

    AB = "ab"  # it serves its share of units
    SHADOW = "shadow"  # it scores every request in the background and serves none


class ExperimentDecision(StrEnum):
    """How an experiment ended."""

    PROMOTE = "promote"  # the challenger won: promoted through the registry
    KEEP = "keep"  # the champion stays (futility, maximum duration, or a person's call)
    ROLLBACK = "rollback"  # a guardrail broke: the challenger is rejected at once
    SUPERSEDED = "superseded"  # the champion changed outside the experiment


class Arm(StrEnum):
    """An experiment's two arms."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
