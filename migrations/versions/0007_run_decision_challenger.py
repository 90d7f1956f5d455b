"""A retrain run may decide `challenger`: the gate passed the candidate and the project sends
such candidates to the `challenger` alias (to be proven live) instead of promoting them. And
ix_annotation_audit: a partial index of audit annotations, which the queue counts.

retrain_run's decision CHECK is replaced. On SQLite the table is rebuilt (batch mode; env.py
turns foreign keys off meanwhile); its partial unique indexes (one queued and one running run
per project) are dropped first and made again after, so the rebuild cannot lose their WHERE
clause. Downgrading turns `challenger` decisions into `rejected` (the champion stayed).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The enum as it was when this revision was written (webapp/enums.py Decision).
OLD_DECISIONS = ("promoted", "rejected")
DECISIONS = ("promoted", "rejected", "challenger")
RUN_INDEXES = {"uq_retrain_run_queued": "queued", "uq_retrain_run_running": "running"}


def _in(column: str, allowed: tuple[str, ...]) -> str:
    """`"column" IN ('a', 'b')`, as webapp.models.one_of writes it (NULL passes)."""
    return f'"{column}" IN ({", ".join(repr(v) for v in allowed)})'


def _replace_check(allowed: tuple[str, ...]) -> None:
    for name in RUN_INDEXES:
        op.drop_index(name, table_name="retrain_run")
    with op.batch_alter_table("retrain_run", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_retrain_run_decision"), type_="check")
        batch_op.create_check_constraint(op.f("ck_retrain_run_decision"), _in("decision", allowed))
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
    _replace_check(DECISIONS)
    where = sa.text("reason = 'audit'")
    op.create_index(
        "ix_annotation_audit",
        "annotation",
        ["project_id"],
        unique=False,
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade():
    op.drop_index("ix_annotation_audit", table_name="annotation")
    op.execute("UPDATE retrain_run SET decision = 'rejected' WHERE decision = 'challenger'")
    _replace_check(OLD_DECISIONS)
