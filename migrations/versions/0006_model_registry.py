"""The model registry: a `challenger` status (one per project), registry events, lineage.

- model_version.status may be 'challenger' (the CHECK is replaced); uq_model_version_challenger
  allows one per project, as uq_model_version_champion does for champions.
- model_version gets its lineage: params and library_versions (JSON, '{}' for the versions
  trained before), heldout_size, heldout_digest and training_seconds (null for those).
- model_event: who promoted, rejected, rolled back or aliased which version, when and why.

On SQLite model_version is rebuilt (batch mode; env.py turns foreign keys off meanwhile); its
partial unique indexes are dropped first and made again after, so the rebuild cannot lose
their WHERE clause. Downgrading turns challengers back into candidates.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The enums as they were when this revision was written (webapp/enums.py).
OLD_STATUSES = ("candidate", "champion", "retired", "rejected")
STATUSES = ("candidate", "champion", "challenger", "retired", "rejected")
ACTIONS = ("promote", "reject", "rollback", "challenger", "auto_promote", "auto_challenger")
CHAMPION = sa.text("status = 'champion'")
CHALLENGER = sa.text("status = 'challenger'")


def _in(column: str, allowed: tuple[str, ...]) -> str:
    """`"column" IN ('a', 'b')`, as webapp.models.one_of writes it."""
    return f'"{column}" IN ({", ".join(repr(v) for v in allowed)})'


def _unique_where(name: str, where) -> None:
    op.create_index(
        name,
        "model_version",
        ["project_id"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade():
    op.drop_index("uq_model_version_champion", table_name="model_version")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("library_versions", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("heldout_size", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("heldout_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("training_seconds", sa.Float(), nullable=True))
    op.execute("UPDATE model_version SET params = '{}', library_versions = '{}'")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.alter_column("params", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("library_versions", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_constraint(op.f("ck_model_version_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_model_version_status"), _in("status", STATUSES))
    _unique_where("uq_model_version_champion", CHAMPION)
    _unique_where("uq_model_version_challenger", CHALLENGER)

    op.create_table(
        "model_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("from_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(_in("action", ACTIONS), name=op.f("ck_model_event_action")),
        sa.ForeignKeyConstraint(
            ["from_version_id"],
            ["model_version.id"],
            name=op.f("fk_model_event_from_version_id_model_version"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_model_event_model_version_id_model_version"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_model_event_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_event")),
    )
    with op.batch_alter_table("model_event", schema=None) as batch_op:
        batch_op.create_index("ix_model_event_project", ["project_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_model_event_model_version_id"), ["model_version_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("model_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_event_model_version_id"))
        batch_op.drop_index("ix_model_event_project")
    op.drop_table("model_event")

    op.drop_index("uq_model_version_challenger", table_name="model_version")
    op.drop_index("uq_model_version_champion", table_name="model_version")
    # The old CHECK knows no challenger: the alias goes, the version stays a candidate.
    op.execute("UPDATE model_version SET status = 'candidate' WHERE status = 'challenger'")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_model_version_status"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_model_version_status"), _in("status", OLD_STATUSES)
        )
        batch_op.drop_column("training_seconds")
        batch_op.drop_column("heldout_digest")
        batch_op.drop_column("heldout_size")
        batch_op.drop_column("library_versions")
        batch_op.drop_column("params")
    _unique_where("uq_model_version_champion", CHAMPION)
