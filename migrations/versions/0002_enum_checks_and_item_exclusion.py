"""CHECK constraints on every status-like column (the values of webapp/enums.py, frozen here),
and an item's exclusion (excluded_at, excluded_by, excluded_reason; out of ix_item_disputed).

On SQLite each table is rebuilt (batch mode: SQLite cannot add a constraint to a table); env.py
turns foreign keys off meanwhile, so dropping the old `project` or `item` cascades nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The enums as they were when this revision was written; a new member needs a new revision.
QUEUE_REASONS = ("disputed", "uncertain", "audit", "cold-start")
CHECKS = {
    "user": {"role": ("annotator", "reviewer", "engineer", "admin")},
    "project": {"kind": ("text", "tabular")},
    "item": {"source": ("import", "production"), "lease_reason": QUEUE_REASONS},
    "annotation": {"reason": QUEUE_REASONS},
    "model_version": {"status": ("candidate", "champion", "retired", "rejected")},
    "retrain_run": {
        "status": ("queued", "running", "succeeded", "failed"),
        "decision": ("promoted", "rejected"),
        "trigger": ("manual", "auto", "ui", "cli", "demo"),
    },
    "task": {"status": ("queued", "running", "succeeded", "failed")},
}
SCOPES = ("predict", "feedback", "label", "admin")
EXCLUSION = (
    "(excluded_at IS NULL AND excluded_by IS NULL AND excluded_reason IS NULL) OR "
    "(excluded_at IS NOT NULL AND excluded_by IS NOT NULL AND excluded_reason IS NOT NULL)"
)


def _in(column: str, allowed: tuple[str, ...]) -> str:
    """`"column" IN ('a', 'b')`: NULL passes, as it does for the nullable columns."""
    return f'"{column}" IN ({", ".join(repr(v) for v in allowed)})'


def _scopes_sql(dialect: str) -> str:
    """`scopes` is a JSON array of known scopes (see webapp.models._scopes_sql)."""
    if dialect == "postgresql":
        known = ", ".join(repr(s) for s in SCOPES)
        return (
            "jsonb_typeof(scopes::jsonb) = 'array' AND "
            f"(scopes::jsonb - ARRAY[{known}]) = '[]'::jsonb"
        )
    rest = "scopes"
    for scope in SCOPES:
        rest = f"replace({rest}, '\"{scope}\"', '')"
    return f"json_valid(scopes) AND replace(replace({rest}, ',', ''), ' ', '') = '[]'"


def _drop_score_index() -> None:
    """SQLite's rebuild would reflect ix_item_pool_score without its DESC: drop it first."""
    op.drop_index("ix_item_pool_score", table_name="item")


def _create_score_index() -> None:
    """The uncertainty lane's index, as 0001 made it."""
    op.create_index(
        "ix_item_pool_score",
        "item",
        ["project_id", sa.text("score DESC"), "id"],
        unique=False,
        sqlite_where=sa.text("label IS NULL"),
        postgresql_where=sa.text("label IS NULL"),
    )


def _disputed_index(where: str) -> None:
    """(Re)create the disputed lane's index with this WHERE clause."""
    op.create_index(
        "ix_item_disputed",
        "item",
        ["project_id", "disputed_at"],
        unique=False,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _drop_score_index()
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("excluded_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("excluded_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("excluded_reason", sa.String(length=500), nullable=True))
        batch_op.create_check_constraint(op.f("ck_item_exclusion"), EXCLUSION)
    for table, columns in CHECKS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, allowed in columns.items():
                batch_op.create_check_constraint(op.f(f"ck_{table}_{column}"), _in(column, allowed))
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_api_key_scopes"), _scopes_sql(dialect))
    if dialect == "sqlite":
        _create_score_index()
    # The queue's `excluded_at IS NULL` must be implied by the lane's index, or a planner without
    # statistics guesses it rare and sorts every disputed item (see webapp/models.py).
    op.drop_index("ix_item_disputed", table_name="item")
    _disputed_index("disputed_at IS NOT NULL AND excluded_at IS NULL")


def downgrade():
    dialect = op.get_bind().dialect.name
    op.drop_index("ix_item_disputed", table_name="item")
    _disputed_index("disputed_at IS NOT NULL")
    if dialect == "sqlite":
        _drop_score_index()
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_key_scopes"), type_="check")
    for table, columns in reversed(CHECKS.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_item_exclusion"), type_="check")
        batch_op.drop_column("excluded_reason")
        batch_op.drop_column("excluded_by")
        batch_op.drop_column("excluded_at")
    if dialect == "sqlite":
        _create_score_index()
