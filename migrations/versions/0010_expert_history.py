"""The expert's history: an answer edited in place keeps one row (`annotation.edited_at`), a
skip remembers the lane it was served through (`skip.reason`, so a skipped item brought back
is answered as what it was), and both are read newest first per expert through their indexes.

`ix_annotation_annotator` gains `created_at`: the side list of an expert's last answers and the
count of today's answers are one range of it. `ix_skip_recent` does the same for the list of
an expert's skips.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

REASONS = ("disputed", "uncertain", "audit", "cold-start")


def upgrade():
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(), nullable=True))
        batch_op.drop_index("ix_annotation_annotator")
        batch_op.create_index(
            "ix_annotation_annotator", ["project_id", "annotator", "created_at"], unique=False
        )
    with op.batch_alter_table("skip", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_skip_reason"),
            '"reason" IN ({})'.format(", ".join(f"'{r}'" for r in REASONS)),
        )
        batch_op.create_index("ix_skip_recent", ["annotator", "created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("skip", schema=None) as batch_op:
        batch_op.drop_index("ix_skip_recent")
        batch_op.drop_constraint(op.f("ck_skip_reason"), type_="check")
        batch_op.drop_column("reason")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_index("ix_annotation_annotator")
        batch_op.create_index("ix_annotation_annotator", ["project_id", "annotator"], unique=False)
        batch_op.drop_column("edited_at")
