"""Several experts per item: answer rounds, items waiting for more answers or for a reviewer,
and the history of every resolved label.

- `item.round` counts the item's labeling rounds (a dispute opens a new one) and
  `annotation.round` says which round an answer belongs to: the answers that decide an item
  are its current round's.
- `item.pending_since`: the round has fewer answers than it needs (the queue's second-opinion
  lane walks `ix_item_pending`); `item.review_since` with `review_reason` (`review`: the
  experts disagree in a way the project's rule does not settle; `suspect`: confident learning
  flagged the label): waiting for a reviewer (`ix_item_review`).
- `resolution`: who or what gave an item its label, from which answers, and why.
- `ix_annotation_queue`: a project's latest answers given from the queue, for "do several
  experts label this project?".

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs (no table rebuild on SQLite, a catalog change on PostgreSQL).
    op.add_column("item", sa.Column("round", sa.Integer(), server_default="0", nullable=False))
    op.add_column("item", sa.Column("pending_since", sa.DateTime(), nullable=True))
    op.add_column("item", sa.Column("review_since", sa.DateTime(), nullable=True))
    check = "\"review_reason\" IN ('review', 'suspect')"
    if op.get_bind().dialect.name == "sqlite":
        # A batch rebuild of `item` would drop its counter triggers (0003): SQLite adds a
        # column with its CHECK in place instead.
        op.execute(
            "ALTER TABLE item ADD COLUMN review_reason VARCHAR(16) "
            f"CONSTRAINT ck_item_review_reason CHECK ({check})"
        )
    else:
        op.add_column("item", sa.Column("review_reason", sa.String(length=16), nullable=True))
        op.create_check_constraint(op.f("ck_item_review_reason"), "item", check)
    op.add_column(
        "annotation", sa.Column("round", sa.Integer(), server_default="0", nullable=False)
    )
    pending = sa.text("pending_since IS NOT NULL")
    op.create_index(
        "ix_item_pending",
        "item",
        ["project_id", "pending_since"],
        unique=False,
        sqlite_where=pending,
        postgresql_where=pending,
    )
    queue = sa.text("reason IS NOT NULL")
    op.create_index(
        "ix_annotation_queue",
        "annotation",
        ["project_id", "id", "annotator"],
        unique=False,
        sqlite_where=queue,
        postgresql_where=queue,
    )
    review = sa.text("review_since IS NOT NULL")
    op.create_index(
        "ix_item_review",
        "item",
        ["project_id", "review_since"],
        unique=False,
        sqlite_where=review,
        postgresql_where=review,
    )
    op.create_table(
        "resolution",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "annotation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("previous", sa.String(length=100), nullable=True),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("flagged", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotation_id"],
            ["annotation.id"],
            name=op.f("fk_resolution_annotation_id_annotation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["item.id"], name=op.f("fk_resolution_item_id_item"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_resolution_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolution")),
    )
    with op.batch_alter_table("resolution", schema=None) as batch_op:
        batch_op.create_index("ix_resolution_item", ["item_id", "id"], unique=False)
        batch_op.create_index("ix_resolution_project", ["project_id", "id"], unique=False)
        batch_op.create_index("ix_resolution_annotation", ["annotation_id"], unique=False)


def downgrade():
    op.drop_table("resolution")
    op.drop_index("ix_item_review", table_name="item")
    op.drop_index("ix_item_pending", table_name="item")
    op.drop_index("ix_annotation_queue", table_name="annotation")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_item_review_reason"), "item", type_="check")
    # SQLite (3.35+) drops plain columns in place; review_reason's CHECK goes with it.
    op.drop_column("annotation", "round")
    for column in ("review_reason", "review_since", "pending_since", "round"):
        op.drop_column("item", column)
