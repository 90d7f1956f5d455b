"""Monitoring: stored windows, alert rules and alerts, webhooks and their deliveries, the
clock's schedule state; each model version's monitoring reference and CBPE calibrator; an
alert's temporary raise of a project's audit share; and retrains triggered by a schedule or an
alert (retrain_run.alert_id, and `schedule` and `alert` in its trigger CHECK).

On SQLite retrain_run is rebuilt (batch mode) to add the foreign key and replace the CHECK;
its partial unique indexes are dropped first and made again after, as in 0007. Downgrading
turns `schedule` and `alert` runs into `auto` runs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The enum as it was when this revision was written (webapp/enums.py Trigger).
OLD_TRIGGERS = ("manual", "auto", "ui", "cli", "demo")
TRIGGERS = (*OLD_TRIGGERS, "schedule", "alert")
RUN_INDEXES = {"uq_retrain_run_queued": "queued", "uq_retrain_run_running": "running"}


def _in(column: str, allowed: tuple[str, ...]) -> str:
    """`"column" IN ('a', 'b')`, as webapp.models.one_of writes it (NULL passes)."""
    return f'"{column}" IN ({", ".join(repr(v) for v in allowed)})'


def _rebuild_runs(change) -> None:
    """Apply `change(batch_op)` to retrain_run, keeping its partial unique indexes whole."""
    for name in RUN_INDEXES:
        op.drop_index(name, table_name="retrain_run")
    with op.batch_alter_table("retrain_run", schema=None) as batch_op:
        change(batch_op)
    for name, status in RUN_INDEXES.items():
        where = sa.text(f"status = '{status}'")
        op.create_index(
            name,
            "retrain_run",
            ["project_id"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )


def upgrade():
    op.create_table(
        "alert_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("comparison", sa.String(length=2), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("persistence", sa.Integer(), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("hysteresis", sa.Float(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "comparison IN ('<', '<=', '>', '>=', '==')", name=op.f("ck_alert_rule_comparison")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_alert_rule_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rule")),
    )
    with op.batch_alter_table("alert_rule", schema=None) as batch_op:
        batch_op.create_index("ix_alert_rule_project", ["project_id"], unique=False)

    op.create_table(
        "monitor_state",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.BigInteger(), nullable=False),
        sa.Column("annotation_id", sa.BigInteger(), nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_monitor_state_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_monitor_state")),
    )
    op.create_table(
        "schedule_state",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("expression", sa.String(length=100), nullable=False),
        sa.Column("last_due", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_schedule_state_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "name", name=op.f("pk_schedule_state")),
    )
    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_webhook_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook")),
    )
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_project", ["project_id"], unique=False)

    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("window_end", sa.DateTime(), nullable=True),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "\"state\" IN ('firing', 'acknowledged', 'resolved')", name=op.f("ck_alert_state")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_alert_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rule.id"],
            name=op.f("fk_alert_rule_id_alert_rule"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index("ix_alert_project", ["project_id", "id"], unique=False)

    op.create_table(
        "monitor_window",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("model_key", sa.String(length=120), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("drift", sa.JSON(), nullable=True),
        sa.Column("estimate", sa.JSON(), nullable=True),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_monitor_window_model_version_id_model_version"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_monitor_window_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_window")),
        sa.UniqueConstraint("project_id", "model_key", "start", name="uq_monitor_window"),
    )
    with op.batch_alter_table("monitor_window", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_window_project_start", ["project_id", "start"], unique=False
        )

    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "\"status\" IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_delivery_status"),
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhook.id"],
            name=op.f("fk_webhook_delivery_webhook_id_webhook"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_delivery_due",
            ["next_attempt_at"],
            unique=False,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index("ix_webhook_delivery_webhook", ["webhook_id", "id"], unique=False)

    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("calibrator", sa.JSON(), nullable=True))

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_boost_share", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("audit_boost_until", sa.DateTime(), nullable=True))

    def add_alert(batch_op):
        batch_op.add_column(sa.Column("alert_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_retrain_run_alert_id_alert"),
            "alert",
            ["alert_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.drop_constraint(op.f("ck_retrain_run_trigger"), type_="check")
        batch_op.create_check_constraint(op.f("ck_retrain_run_trigger"), _in("trigger", TRIGGERS))

    _rebuild_runs(add_alert)


def downgrade():
    op.execute(
        "UPDATE retrain_run SET \"trigger\" = 'auto' WHERE \"trigger\" IN ('schedule', 'alert')"
    )

    def drop_alert(batch_op):
        batch_op.drop_constraint(batch_op.f("fk_retrain_run_alert_id_alert"), type_="foreignkey")
        batch_op.drop_column("alert_id")
        batch_op.drop_constraint(op.f("ck_retrain_run_trigger"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_retrain_run_trigger"), _in("trigger", OLD_TRIGGERS)
        )

    _rebuild_runs(drop_alert)

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("audit_boost_until")
        batch_op.drop_column("audit_boost_share")

    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_column("calibrator")
        batch_op.drop_column("reference")

    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_delivery_webhook")
        batch_op.drop_index(
            "ix_webhook_delivery_due",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )

    op.drop_table("webhook_delivery")
    with op.batch_alter_table("monitor_window", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_window_project_start")

    op.drop_table("monitor_window")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_project")

    op.drop_table("alert")
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_project")

    op.drop_table("webhook")
    op.drop_table("schedule_state")
    op.drop_table("monitor_state")
    with op.batch_alter_table("alert_rule", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_rule_project")

    op.drop_table("alert_rule")
