"""A/B experiments: the experiment (its design, status and decision; at most one running per
project, by a partial unique index), its looks (one analysis each, for the curves over time),
the challenger's shadow predictions, and each prediction's exposure (`experiment_id`, `arm`).

The exposure columns are added in place (no table rebuild on SQLite, where `prediction` is the
largest table) and carry no foreign key for that reason; a partial index keeps them off the
index for predictions served outside any experiment.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "experiment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("champion_version_id", sa.Integer(), nullable=True),
        sa.Column("challenger_version_id", sa.Integer(), nullable=True),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("primary_metric", sa.String(length=32), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("mde", sa.Float(), nullable=False),
        sa.Column("min_units", sa.Integer(), nullable=False),
        sa.Column("max_seconds", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("phase_started_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("analysis", sa.JSON(), nullable=True),
        sa.Column("analyzed_at", sa.DateTime(), nullable=True),
        sa.Column("srm_alert_id", sa.Integer(), nullable=True),
        sa.Column("shadow_high_water", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "\"decision\" IN ('promote', 'keep', 'rollback', 'superseded')",
            name=op.f("ck_experiment_decision"),
        ),
        sa.CheckConstraint("\"mode\" IN ('ab', 'shadow')", name=op.f("ck_experiment_mode")),
        sa.CheckConstraint(
            "\"status\" IN ('running', 'stopped')", name=op.f("ck_experiment_status")
        ),
        sa.CheckConstraint("share > 0 AND share < 1", name=op.f("ck_experiment_share")),
        sa.ForeignKeyConstraint(
            ["challenger_version_id"],
            ["model_version.id"],
            name=op.f("fk_experiment_challenger_version_id_model_version"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["champion_version_id"],
            ["model_version.id"],
            name=op.f("fk_experiment_champion_version_id_model_version"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_experiment_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["srm_alert_id"],
            ["alert.id"],
            name=op.f("fk_experiment_srm_alert_id_alert"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment")),
    )
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.create_index("ix_experiment_project", ["project_id", "id"], unique=False)
        batch_op.create_index(
            "uq_experiment_running",
            ["project_id"],
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )

    op.create_table(
        "experiment_look",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_experiment_look_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_look")),
    )
    with op.batch_alter_table("experiment_look", schema=None) as batch_op:
        batch_op.create_index(
            "ix_experiment_look_experiment", ["experiment_id", "id"], unique=False
        )

    op.create_table(
        "shadow_prediction",
        sa.Column(
            "prediction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_shadow_prediction_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["prediction.id"],
            name=op.f("fk_shadow_prediction_prediction_id_prediction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_shadow_prediction")),
    )
    with op.batch_alter_table("shadow_prediction", schema=None) as batch_op:
        batch_op.create_index("ix_shadow_prediction_experiment", ["experiment_id"], unique=False)

    op.add_column("prediction", sa.Column("experiment_id", sa.Integer(), nullable=True))
    op.add_column("prediction", sa.Column("arm", sa.String(length=16), nullable=True))
    op.create_index(
        "ix_prediction_experiment",
        "prediction",
        ["experiment_id", "arm"],
        unique=False,
        sqlite_where=sa.text("experiment_id IS NOT NULL"),
        postgresql_where=sa.text("experiment_id IS NOT NULL"),
    )


def downgrade():
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_prediction_experiment",
            sqlite_where=sa.text("experiment_id IS NOT NULL"),
            postgresql_where=sa.text("experiment_id IS NOT NULL"),
        )
        batch_op.drop_column("arm")
        batch_op.drop_column("experiment_id")

    with op.batch_alter_table("shadow_prediction", schema=None) as batch_op:
        batch_op.drop_index("ix_shadow_prediction_experiment")

    op.drop_table("shadow_prediction")
    with op.batch_alter_table("experiment_look", schema=None) as batch_op:
        batch_op.drop_index("ix_experiment_look_experiment")

    op.drop_table("experiment_look")
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_experiment_running",
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.drop_index("ix_experiment_project")

    op.drop_table("experiment")
