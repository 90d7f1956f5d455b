"""SQL models: projects, items, predictions, feedback, annotations, models and runs."""

from __future__ import annotations

import hashlib
import random
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    ScalarSelect,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, column_property, deferred, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from labeling.evaluation import GateConfig

from .enums import (
    AlertState,
    Decision,
    DeliveryStatus,
    ExperimentDecision,
    ExperimentMode,
    ExperimentStatus,
    ItemSource,
    Kind,
    ModelAction,
    ModelStatus,
    PromoteTo,
    QueueReason,
    ReviewReason,
    Role,
    RunStatus,
    Scope,
    Strategy,
    TaskStatus,
    Trigger,
    values,
)
from .extensions import db

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT for 1M+ rows.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Return the current time as a naive UTC datetime (how every column stores time)."""
    return datetime.now(UTC).replace(tzinfo=None)


ROLES = values(Role)
SCOPES = values(Scope)
KINDS = values(Kind)
STRATEGIES = values(Strategy)
# The longest reason an engineer may give for excluding an item.
MAX_EXCLUSION_REASON = 500


def one_of(column: str, enum: type[StrEnum]) -> CheckConstraint:
    """A CHECK that `column` holds one of the enum's values (NULL passes, as SQL's IN lets it).

    Named `ck_<table>_<column>` by the naming convention. Adding a member to an enum needs a
    migration that replaces the constraint.
    """
    allowed = ", ".join(f"'{value}'" for value in values(enum))
    return CheckConstraint(f'"{column}" IN ({allowed})', name=column)


def _scopes_sql(dialect: str) -> str:
    """SQL checking that `scopes` is a JSON array of known scopes, for one backend.

    PostgreSQL removes the known scopes from the array (`jsonb - text[]`) and expects nothing
    left. SQLite allows no subquery (so no json_each) in a CHECK: it removes each quoted known
    scope, the commas and the spaces from the stored text and expects `[]` to be left.
    """
    if dialect == "postgresql":
        known = ", ".join(f"'{scope}'" for scope in SCOPES)
        return (
            "jsonb_typeof(scopes::jsonb) = 'array' AND "
            f"(scopes::jsonb - ARRAY[{known}]) = '[]'::jsonb"
        )
    rest = "scopes"
    for scope in SCOPES:
        rest = f"replace({rest}, '\"{scope}\"', '')"
    return f"json_valid(scopes) AND replace(replace({rest}, ',', ''), ' ', '') = '[]'"


def scopes_check(dialect: str) -> CheckConstraint:
    """The `scopes` CHECK, emitted only on its own backend."""
    return CheckConstraint(_scopes_sql(dialect), name="scopes").ddl_if(dialect=dialect)


DEFAULT_SETTINGS: dict[str, Any] = {
    "query_strategy": Strategy.MARGIN,
    # After each rescore, the head of the uncertain lane is a batch of about one retrain
    # interval chosen for informativeness and diversity together, not a run of near-copies.
    "batch_diversity": True,
    "heldout_share": 0.2,
    "audit_share": 0.1,
    "retrain_every": 25,
    # The first retrain comes this many labels in (of two labels at least), not `retrain_every`:
    # the queue turns from random to uncertainty sampling as soon as a model exists.
    "first_retrain_at": 10,
    # Audits are the held-out set: while it is small, a larger share of the queue is audits.
    "audit_share_early": 0.3,
    "audit_early_until": 200,
    # A candidate that passes the gate is promoted, or (`challenger`) waits as the challenger
    # until a person promotes it or a live experiment proves it; a first model is promoted.
    "promote_to": PromoteTo.CHAMPION,
    # A cron expression (5 fields, UTC) for scheduled retrains, or "" for none.
    "retrain_schedule": "",
    # Monitoring windows: their length in seconds (a day; down to a minute for busy projects),
    # and the quantile bins of the drift reference. How many windows in a row drift must show
    # before it alerts is the `drift` alert rule's persistence (2 by default).
    "monitor_window": 86400,
    "drift_bins": 10,
    # Several experts (webapp/pool/rounds.py): distinct experts' answers an item needs, and
    # for disputed and audit items (the ones that settle disputes and evaluate models) a
    # second opinion; how a round's answers resolve (labeling.agreement.RULES). Until a round
    # has its answers the first one stands, so a project with one expert never waits.
    "annotations_per_item": 1,
    "second_opinion": 2,
    "resolution": "latest",
    "gate": {
        "min_heldout": GateConfig.min_heldout,
        "min_delta": GateConfig.min_delta,
        "max_class_drop": GateConfig.max_class_drop,
        "min_class_support": GateConfig.min_class_support,
        "metric": GateConfig.metric,
        "mode": GateConfig.mode,
        "alpha": GateConfig.alpha,
        "margin": GateConfig.margin,
    },
}


def new_session_token() -> str:
    """A fresh random session token (rotating it ends every session of the user)."""
    return secrets.token_hex(16)


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=Role.ANNOTATOR)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Part of the login cookie's user id: a new token (logout, password change, disabling)
    # makes every session cookie and remember-me cookie issued before it worthless.
    session_token: Mapped[str] = mapped_column(String(32), default=new_session_token)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime)

    def get_id(self) -> str:
        """The id Flask-Login keeps in the session and remember cookies: id and session token."""
        return f"{self.id}:{self.session_token}"

    @property
    def is_active(self) -> bool:
        """Disabled users cannot log in, and their sessions end."""
        return self.disabled_at is None

    def end_sessions(self) -> None:
        """Rotate the session token, so every cookie issued so far stops working."""
        self.session_token = new_session_token()

    def can_see(self, project: Project) -> bool:
        """Admins see every project; everyone else only the projects they are members of."""
        if self.role == "admin":
            return True
        return (
            db.session.get(Membership, {"user_id": self.id, "project_id": project.id}) is not None
        )

    __table_args__ = (one_of("role", Role),)

    def set_password(self, password: str) -> None:
        """Store a salted hash of the password; sessions made with the old one end."""
        self.password_hash = generate_password_hash(password)
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        """Return whether the password matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    @property
    def annotator(self) -> str:
        """The identity that leases, skips and annotations are recorded under."""
        return f"user:{self.id}"


class Project(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list] = mapped_column(JSON)
    features: Mapped[list] = mapped_column(JSON, default=list)
    template: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    # The label-change count (see ProjectCounter) when the last retrain was triggered: touched
    # once per retrain, never per label.
    label_events_at_trigger: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Raised by an alert's action: the queue serves at least this share of audits until then,
    # so fresh unbiased labels arrive where the model is failing.
    audit_boost_share: Mapped[float | None] = mapped_column(Float)
    audit_boost_until: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (one_of("kind", Kind),)

    def setting(self, key: str) -> Any:
        """Return a project setting, falling back to the default."""
        return (self.settings or {}).get(key, DEFAULT_SETTINGS[key])

    @property
    def gate_config(self) -> GateConfig:
        """The promotion gate thresholds for this project."""
        merged = dict(DEFAULT_SETTINGS["gate"], **(self.settings or {}).get("gate", {}))
        return GateConfig.from_settings(merged)


class Membership(db.Model):
    """A user who may see and label a project (admins need none: they see every project)."""

    user_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditLog(db.Model):
    """One change to users, memberships or API keys: who did what to whom, and when."""

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # "user:3 admin@example.com" for a web admin, "cli:alice" for the command line.
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class ApiKey(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100), default="")
    # The key is shown once; we keep its public prefix for lookup and a hash of the whole.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    project: Mapped[Project] = relationship()

    __table_args__ = (scopes_check("postgresql"), scopes_check("sqlite"))

    @staticmethod
    def generate(project: Project, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
        """Create a key row and return it with the plaintext key, which is not stored."""
        prefix = secrets.token_hex(6)
        plaintext = f"cg_{prefix}_{secrets.token_urlsafe(24)}"
        row = ApiKey(
            project=project,
            name=name,
            prefix=prefix,
            key_hash=hashlib.sha256(plaintext.encode()).hexdigest(),
            scopes=list(scopes),
        )
        return row, plaintext

    @property
    def annotator(self) -> str:
        """The identity a key with the `label` scope labels as."""
        return f"key:{self.id}"


class Item(db.Model):
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16), default=ItemSource.IMPORT)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Uniform random key drawn at insert: random audits and cold start walk an index on it.
    rand: Mapped[float] = mapped_column(Float, default=random.random)
    # Active-learning score (higher = more worth labeling) and its provenance: the model
    # version (id) and the query strategy that computed it. Scores of different strategies
    # live on different scales (margin in [-1, 0], entropy in [0, log k]), so only scores
    # under the current (champion, strategy) key are ranked against each other.
    score: Mapped[float | None] = mapped_column(Float)
    scored_by: Mapped[int | None] = mapped_column(Integer)
    score_strategy: Mapped[str | None] = mapped_column(String(16))
    # Resolved label, kept in step with the annotations (the latest one, for now).
    label: Mapped[str | None] = mapped_column(String(100))
    labeled_at: Mapped[datetime | None] = mapped_column(DateTime)
    disputed_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    lease_reason: Mapped[str | None] = mapped_column(String(16))
    # Set by an engineer: the item leaves the queue, training and held-out evaluation until
    # restored (a bad row must not stop a project from learning). The label is kept.
    excluded_at: Mapped[datetime | None] = mapped_column(DateTime)
    excluded_by: Mapped[str | None] = mapped_column(String(64))
    excluded_reason: Mapped[str | None] = mapped_column(String(MAX_EXCLUSION_REASON))
    # Several experts (webapp/pool/rounds.py): the item's labeling round (a dispute opens a new
    # one), since when the round waits for more experts' answers, and since when (and why:
    # `review` or `suspect`) it waits for a reviewer.
    round: Mapped[int] = mapped_column(Integer, server_default="0")
    pending_since: Mapped[datetime | None] = mapped_column(DateTime)
    review_since: Mapped[datetime | None] = mapped_column(DateTime)
    review_reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_item_project_external"),
        one_of("review_reason", ReviewReason),
        one_of("source", ItemSource),
        one_of("lease_reason", QueueReason),
        # Who, when and why come together, or not at all.
        CheckConstraint(
            "(excluded_at IS NULL AND excluded_by IS NULL AND excluded_reason IS NULL) OR "
            "(excluded_at IS NOT NULL AND excluded_by IS NOT NULL AND excluded_reason IS NOT NULL)",
            name="exclusion",
        ),
        # The queue lanes, each one index range scan (the score lane's index is below).
        # Excluded items are out of the index, so the queue's `excluded_at IS NULL` is implied by
        # it: without statistics PostgreSQL guessed that clause rare and sorted every disputed
        # item instead (27 ms for 10k disputed; 0.05 ms with this index).
        Index(
            "ix_item_disputed",
            "project_id",
            "disputed_at",
            sqlite_where=text("disputed_at IS NOT NULL AND excluded_at IS NULL"),
            postgresql_where=text("disputed_at IS NOT NULL AND excluded_at IS NULL"),
        ),
        Index(
            "ix_item_pool_rand",
            "project_id",
            "rand",
            sqlite_where=text("label IS NULL"),
            postgresql_where=text("label IS NULL"),
        ),
        # The rescore's walk over unlabeled items in id order (a plan that does not depend on
        # statistics: without it PostgreSQL scanned the whole project in the score index).
        Index(
            "ix_item_pool_id",
            "project_id",
            "id",
            sqlite_where=text("label IS NULL"),
            postgresql_where=text("label IS NULL"),
        ),
        Index(
            "ix_item_labeled",
            "project_id",
            "id",
            sqlite_where=text("label IS NOT NULL"),
            postgresql_where=text("label IS NOT NULL"),
        ),
        # Items waiting for another expert's answer, and for a reviewer, oldest first.
        Index(
            "ix_item_pending",
            "project_id",
            "pending_since",
            sqlite_where=text("pending_since IS NOT NULL"),
            postgresql_where=text("pending_since IS NOT NULL"),
        ),
        Index(
            "ix_item_review",
            "project_id",
            "review_since",
            sqlite_where=text("review_since IS NOT NULL"),
            postgresql_where=text("review_since IS NOT NULL"),
        ),
        # The held-lease check: only leased rows, so its plan is obvious whatever the statistics.
        Index(
            "ix_item_lease_held",
            "project_id",
            "lease_owner",
            sqlite_where=text("lease_owner IS NOT NULL"),
            postgresql_where=text("lease_owner IS NOT NULL"),
        ),
    )


# The uncertainty lane of the queue: ORDER BY score DESC over a project's unlabeled items
# scored under the current key; the key leads so the lane is one range scan of current scores.
Index(
    "ix_item_pool_score",
    Item.project_id,
    Item.scored_by,
    Item.score_strategy,
    Item.score.desc(),
    # Ties (tree models give few distinct scores) are broken by id inside the index, so
    # PostgreSQL never sorts a group of equal scores.
    Item.id,
    sqlite_where=text("label IS NULL"),
    postgresql_where=text("label IS NULL"),
)


class ProjectCounter(db.Model):
    """A project's item and label counts, kept in a few shard rows that are summed on read.

    Database triggers on `item` (migration 0003) keep them: every insert, label change and
    dispute adds its delta to the shard of the writing connection (PostgreSQL: backend pid mod
    16; SQLite, which serializes writers anyway: shard 0). So no page counts a project's items,
    and concurrent experts do not queue behind one hot row.
    """

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    items: Mapped[int] = mapped_column(BigInteger, default=0)
    # Items with a resolved label, items disputed now, and label changes (new or corrected).
    labeled: Mapped[int] = mapped_column(BigInteger, default=0)
    disputed: Mapped[int] = mapped_column(BigInteger, default=0)
    label_events: Mapped[int] = mapped_column(BigInteger, default=0)


def _counter_sum(column) -> ScalarSelect:
    """The sum of a counter over the project's shards, correlated to `project`."""
    return (
        select(func.coalesce(func.sum(column), 0))
        .where(ProjectCounter.project_id == Project.id)
        .correlate_except(ProjectCounter)
        .scalar_subquery()
    )


# Read-only sums, loaded on first access; usable in SQL too (the retrain trigger's reset).
Project.labeled_count = column_property(_counter_sum(ProjectCounter.labeled), deferred=True)
Project.label_events = column_property(_counter_sum(ProjectCounter.label_events), deferred=True)


class ModelVersion(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.CANDIDATE)
    template: Mapped[str] = mapped_column(String(32))
    labels: Mapped[list] = mapped_column(JSON)
    artifact: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    snapshot_digest: Mapped[str] = mapped_column(String(64))
    train_size: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("retrain_run.id", use_alter=True, ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # When it last became the champion; the retired version promoted last is the champion
    # before the current one (champions follow each other), which is what a rollback restores.
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Lineage (null for versions trained before migration 0006): the template's
    # hyper-parameters, the libraries that fitted it, the held-out set it was measured on
    # (its size and the digest of its (item id, label) pairs) and the seconds fitting took.
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    library_versions: Mapped[dict] = mapped_column(JSON, default=dict)
    heldout_size: Mapped[int | None] = mapped_column(Integer)
    heldout_digest: Mapped[str | None] = mapped_column(String(64))
    training_seconds: Mapped[float | None] = mapped_column(Float)
    # Monitoring's reference, summarised once when the version is trained (never the raw rows):
    # the drift profile of its training data and predictions (labeling.drift), and the CBPE
    # calibrator fitted on its held-out predictions (labeling.monitoring).
    reference: Mapped[dict | None] = deferred(mapped_column(JSON))
    calibrator: Mapped[dict | None] = deferred(mapped_column(JSON))

    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_model_version_project_version"),
        one_of("status", ModelStatus),
        # At most one champion and one challenger per project, enforced by the database.
        Index(
            "uq_model_version_champion",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'champion'"),
            postgresql_where=text("status = 'champion'"),
        ),
        Index(
            "uq_model_version_challenger",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'challenger'"),
            postgresql_where=text("status = 'challenger'"),
        ),
    )


class ModelEvent(db.Model):
    """One change in the registry: who moved which version where, when and why."""

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    # The version the action was about (the one promoted, rejected, rolled back to, aliased).
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    # "user:3", "key:5", "cli" or "gate".
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    # The version it displaced, if any: the old champion of a promotion or rollback, the old
    # challenger of a new one.
    from_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_model_event_project", "project_id", "id"),
        one_of("action", ModelAction),
    )


class Prediction(db.Model):
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL")
    )
    # For predictions logged by the app's own model: whatever name it reported.
    model_name: Mapped[str | None] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100))
    probabilities: Mapped[dict | None] = mapped_column(JSON)
    # The end user or session the prediction served (sticky A/B splits key on it).
    unit: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The exposure: the experiment running when it was served, and the unit's arm in it (no
    # foreign key: adding one would rebuild this, the largest table, on SQLite; experiments are
    # never deleted but with their project, which takes its predictions along).
    experiment_id: Mapped[int | None] = mapped_column(Integer)
    arm: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_prediction_project_created", "project_id", "created_at"),
        # An experiment's analysis reads its exposures alone.
        Index(
            "ix_prediction_experiment",
            "experiment_id",
            "arm",
            sqlite_where=text("experiment_id IS NOT NULL"),
            postgresql_where=text("experiment_id IS NOT NULL"),
        ),
    )


class Feedback(db.Model):
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(
        ForeignKey("prediction.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    correct: Mapped[bool | None] = mapped_column(Boolean)
    label: Mapped[str | None] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "idempotency_key", name="uq_feedback_idempotency"),
    )


class Annotation(db.Model):
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(100))
    # Why the queue served the item (disputed / uncertain / audit / cold-start), for audits.
    reason: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Set when the expert changed this answer from their history (one row per answer).
    edited_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The item's round this answer belongs to (Item.round when it was given).
    round: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        # An expert's answers newest first (the side list) and today's count: one index range.
        Index("ix_annotation_annotator", "project_id", "annotator", "created_at"),
        # The project's latest answers given from the queue, with who gave them: whether several
        # experts label it (pool/rounds.py) reads 500 entries of this, nothing else.
        Index(
            "ix_annotation_queue",
            "project_id",
            "id",
            "annotator",
            sqlite_where=text("reason IS NOT NULL"),
            postgresql_where=text("reason IS NOT NULL"),
        ),
        # The queue counts a project's audits (the held-out set) to set the audit share: only
        # audit rows are indexed, so the count reads them alone whatever else was labeled.
        Index(
            "ix_annotation_audit",
            "project_id",
            sqlite_where=text("reason = 'audit'"),
            postgresql_where=text("reason = 'audit'"),
        ),
        one_of("reason", QueueReason),
    )


class Resolution(db.Model):
    """Who or what gave an item its label: the project's rule over a round's answers, a
    reviewer, or Dawid-Skene over the project; with the answers it read and why."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    # The answer that completed the round (undoing it undoes the resolution); None for others.
    annotation_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotation.id", ondelete="CASCADE")
    )
    round: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(100))
    previous: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    answers: Mapped[dict] = mapped_column(JSON, default=dict)
    # Why a reviewer saw it (`review` or `suspect`), for a reviewer's resolution.
    flagged: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_resolution_item", "item_id", "id"),
        Index("ix_resolution_project", "project_id", "id"),
        Index("ix_resolution_annotation", "annotation_id"),
    )


class Skip(db.Model):
    # Annotator first: the queue asks "has this annotator skipped this item?" per candidate.
    annotator: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Indexed on its own too, so the cascade from a deleted item finds its skips.
    item_id: Mapped[int] = mapped_column(
        ForeignKey("item.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The lane the item was served through, so an item brought back is answered as that lane.
    reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_skip_recent", "annotator", "created_at"),
        one_of("reason", QueueReason),
    )


class SkipCursor(db.Model):
    """Where an expert's skipped prefix of the uncertain lane ends (see webapp/pool/cursor.py).

    Every unlabeled scored item ahead of (score, item_id) was skipped by the annotator, or was
    leased to someone else and is listed in `passed`, as of `checked_at` and the pool's score
    `epoch`; items with ids above `max_item_id` came later and are checked on their own.
    """

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    annotator: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    item_id: Mapped[int] = mapped_column(BigInteger)
    passed: Mapped[list] = mapped_column(JSON, default=list)
    max_item_id: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[str] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RetrainRun(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED)
    trigger: Mapped[str] = mapped_column(String(16), default=Trigger.MANUAL)
    job_id: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    train_size: Mapped[int | None] = mapped_column(Integer)
    heldout_size: Mapped[int | None] = mapped_column(Integer)
    snapshot_digest: Mapped[str | None] = mapped_column(String(64))
    # The exact (item id, label) pairs trained on, zlib-compressed JSON, for lineage.
    snapshot: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL")
    )
    error: Mapped[str | None] = mapped_column(Text)
    # The alert whose rule asked for this run (trigger `alert`).
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_retrain_run_project", "project_id", "id"),
        one_of("status", RunStatus),
        one_of("decision", Decision),
        one_of("trigger", Trigger),
        # Coalescing, enforced by the database: one queued and one running run per project.
        Index(
            "uq_retrain_run_queued",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        Index(
            "uq_retrain_run_running",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )


class Task(db.Model):
    """A background job other than a retrain (rescoring, …), with its RQ job id and progress."""

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_task_project", "project_id", "id"),
        # One queued task of a kind per project, enforced by the database (like retrains):
        # a queued rescore absorbs every later request until it starts.
        Index(
            "uq_task_queued",
            "project_id",
            "name",
            unique=True,
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # And one running: a second worker leaves a queued rescore for the running one to close.
        Index(
            "uq_task_running",
            "project_id",
            "name",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        one_of("status", TaskStatus),
    )


class MonitorWindow(db.Model):
    """One monitoring window of one model: its figures, stored so reading them scans nothing.

    `model_key` names the model the predictions came from: `v<version>` for a Corrigo version,
    `app:<name>` for an app's own model (`app` when it gave no name). `stats` holds the
    window's sufficient statistics and figures (labeling.monitoring), `drift` the comparison
    with the model's reference (labeling.drift), `estimate` the CBPE estimate. A window is
    recomputed while it is open and whenever labels or feedback reach its predictions.
    """

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    model_key: Mapped[str] = mapped_column(String(120))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL")
    )
    start: Mapped[datetime] = mapped_column(DateTime)
    end: Mapped[datetime] = mapped_column(DateTime)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    drift: Mapped[dict | None] = mapped_column(JSON)
    estimate: Mapped[dict | None] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "model_key", "start", name="uq_monitor_window"),
        Index("ix_monitor_window_project_start", "project_id", "start"),
    )


class MonitorState(db.Model):
    """Per project: how far the monitoring job has read, so each tick reads only what is new."""

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    # The newest prediction, annotation and feedback ids already folded into windows (ids,
    # not times: a logged prediction may be backfilled into an old window).
    prediction_id: Mapped[int] = mapped_column(BigInteger, default=0)
    annotation_id: Mapped[int] = mapped_column(BigInteger, default=0)
    feedback_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # Drift references of the app's own models (no Corrigo version to hold one), by model key:
    # the first logged predictions (labeling.drift.reference_from_predictions).
    references: Mapped[dict] = mapped_column(JSON, default=dict)
    computed_at: Mapped[datetime | None] = mapped_column(DateTime)


class AlertRule(db.Model):
    """A condition on a monitored metric, with what to do when it holds.

    `metric` is a name labeling.alerting knows (`accuracy`, `recall`, `cbpe_accuracy`,
    `drift`, `correction_rate`, `volume`, …), `params` its arguments (a class for `recall`),
    `state` the evaluator's memory (consecutive breaches, last firing) between windows.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    comparison: Mapped[str] = mapped_column(String(2))
    # Null: the champion's held-out value minus `tolerance` (in params), as of each window.
    threshold: Mapped[float | None] = mapped_column(Float)
    window: Mapped[int] = mapped_column(Integer, default=1)
    persistence: Mapped[int] = mapped_column(Integer, default=1)
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    hysteresis: Mapped[float] = mapped_column(Float, default=0.0)
    # {"retrain": bool, "audit_share": float | None, "audit_hours": float}
    actions: Mapped[dict] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_alert_rule_project", "project_id"),
        CheckConstraint("comparison IN ('<', '<=', '>', '>=', '==')", name="comparison"),
    )


class Alert(db.Model):
    """One firing of a rule, from `firing` (maybe `acknowledged`) to `resolved`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("alert_rule.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=AlertState.FIRING)
    metric: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    window_start: Mapped[datetime | None] = mapped_column(DateTime)
    window_end: Mapped[datetime | None] = mapped_column(DateTime)
    fired_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_alert_project", "project_id", "id"),
        one_of("state", AlertState),
    )


class Webhook(db.Model):
    """An outbound webhook: events are POSTed to `url`, signed with HMAC-SHA256 under `secret`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_webhook_project", "project_id"),)


class WebhookDelivery(db.Model):
    """One event for one webhook, and every attempt to deliver it."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_webhook_delivery_webhook", "webhook_id", "id"),
        # The clock's sweep: pending deliveries that are due.
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        one_of("status", DeliveryStatus),
    )


class ScheduleState(db.Model):
    """The last time a project's schedule fired, so the clock fires each due time once.

    The fire and the retrain it queues are one transaction: a run row is the durable intent,
    and one whose job could not reach Redis is enqueued by the workers' sweep later.
    """

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    expression: Mapped[str] = mapped_column(String(100))
    last_due: Mapped[datetime] = mapped_column(DateTime)


class Experiment(db.Model):
    """A live test of the champion against one challenger on a sticky split of units.

    The design (share, mode, primary and guardrail metrics, alpha, the effect it is powered
    for, the minimum units and the maximum duration) is fixed when it starts. `analysis` is
    the latest look (webapp.experiments); `decision`, `decided_by` and `reasons` say how it
    ended. At most one runs per project, enforced by a partial unique index.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=ExperimentStatus.RUNNING)
    mode: Mapped[str] = mapped_column(String(16), default=ExperimentMode.AB)
    champion_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL")
    )
    challenger_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL")
    )
    share: Mapped[float] = mapped_column(Float)
    # Hashed with each unit to pick its arm: a new experiment reshuffles units.
    salt: Mapped[str] = mapped_column(String(32))
    primary_metric: Mapped[str] = mapped_column(String(32))
    guardrails: Mapped[list] = mapped_column(JSON, default=list)
    alpha: Mapped[float] = mapped_column(Float)
    mde: Mapped[float] = mapped_column(Float)
    min_units: Mapped[int] = mapped_column(Integer)
    max_seconds: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Raising the share starts a new phase: the analysis reads the exposures since it began
    # (units that moved to the challenger would otherwise count in both arms).
    phase: Mapped[int] = mapped_column(Integer, default=1)
    phase_started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)
    decision: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    analysis: Mapped[dict | None] = mapped_column(JSON)
    analyzed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The sample-ratio-mismatch alert, once raised (it is raised once per experiment).
    srm_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id", ondelete="SET NULL"))
    # Shadow mode: the newest prediction the challenger has scored.
    shadow_high_water: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        Index("ix_experiment_project", "project_id", "id"),
        Index(
            "uq_experiment_running",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        one_of("status", ExperimentStatus),
        one_of("mode", ExperimentMode),
        one_of("decision", ExperimentDecision),
        CheckConstraint("share > 0 AND share < 1", name="share"),
    )


class ExperimentLook(db.Model):
    """One analysis of a running experiment: its figures then (the page's curves over time)."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    figures: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_experiment_look_experiment", "experiment_id", "id"),)


class ShadowPrediction(db.Model):
    """What a shadow experiment's challenger predicted for a request the champion served."""

    prediction_id: Mapped[int] = mapped_column(
        ForeignKey("prediction.id", ondelete="CASCADE"), primary_key=True
    )
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(100))
    probabilities: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_shadow_prediction_experiment", "experiment_id"),)
