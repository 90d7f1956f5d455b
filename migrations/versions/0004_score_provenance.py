"""Record each score's model version id and strategy; one queued task per project and name.

- item.score_strategy (new) and item.scored_by (now the model_version id, was its version
  number): the key a score was computed under. Existing scores get no strategy (it was never
  recorded, and after a strategy change it was wrong for some of them), so they count as stale:
  one rescore is queued for every project with a champion, and the worker's start enqueues it.
- ix_item_pool_score leads with the key, (project_id, scored_by, score_strategy, score DESC,
  id) WHERE label IS NULL, so the uncertain lane ranks only scores of the current key.
- ix_item_pool_id: (project_id, id) WHERE label IS NULL, the rescore's walk in id order (with
  no statistics PostgreSQL otherwise walked the project's whole score index for each chunk).
- uq_task_queued and uq_task_running: unique partial indexes on task(project_id, name) WHERE
  status is 'queued' / 'running' (duplicates queued before are closed as succeeded, since
  the first covers them; duplicates running are failed but the newest).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")
RUNNING = sa.text("status = 'running'")
UNLABELED = sa.text("label IS NULL")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def upgrade():
    op.add_column("item", sa.Column("score_strategy", sa.String(length=16), nullable=True))
    op.execute(
        "UPDATE item SET scored_by = (SELECT mv.id FROM model_version mv "
        "WHERE mv.project_id = item.project_id AND mv.version = item.scored_by) "
        "WHERE scored_by IS NOT NULL"
    )
    op.drop_index("ix_item_pool_score", table_name="item")
    op.create_index(
        "ix_item_pool_score",
        "item",
        ["project_id", "scored_by", "score_strategy", sa.text("score DESC"), "id"],
        unique=False,
        sqlite_where=UNLABELED,
        postgresql_where=UNLABELED,
    )
    op.create_index(
        "ix_item_pool_id",
        "item",
        ["project_id", "id"],
        unique=False,
        sqlite_where=UNLABELED,
        postgresql_where=UNLABELED,
    )
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE task SET status = 'succeeded', finished_at = :now WHERE status = 'queued' "
            "AND id NOT IN (SELECT min(id) FROM task WHERE status = 'queued' "
            "GROUP BY project_id, name)"
        ),
        {"now": _now()},
    )
    op.create_index(
        "uq_task_queued",
        "task",
        ["project_id", "name"],
        unique=True,
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )
    conn.execute(
        sa.text(
            "UPDATE task SET status = 'failed', finished_at = :now, "
            "error = 'Superseded: another task of its kind was running.' "
            "WHERE status = 'running' AND id NOT IN (SELECT max(id) FROM task "
            "WHERE status = 'running' GROUP BY project_id, name)"
        ),
        {"now": _now()},
    )
    op.create_index(
        "uq_task_running",
        "task",
        ["project_id", "name"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )
    # The scores already stored have no recorded strategy: rescore them under a known key.
    conn.execute(
        sa.text(
            "INSERT INTO task (project_id, name, args, status, progress, created_at) "
            "SELECT mv.project_id, 'rescore', '{}', 'queued', 0, :now FROM model_version mv "
            "WHERE mv.status = 'champion' "
            "AND EXISTS (SELECT 1 FROM item i WHERE i.project_id = mv.project_id "
            "AND i.label IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM task t WHERE t.project_id = mv.project_id "
            "AND t.name = 'rescore' AND t.status = 'queued')"
        ),
        {"now": _now()},
    )


def downgrade():
    op.drop_index(
        "uq_task_running", table_name="task", sqlite_where=RUNNING, postgresql_where=RUNNING
    )
    op.drop_index("uq_task_queued", table_name="task", sqlite_where=QUEUED, postgresql_where=QUEUED)
    op.drop_index("ix_item_pool_id", table_name="item")
    op.drop_index("ix_item_pool_score", table_name="item")
    op.create_index(
        "ix_item_pool_score",
        "item",
        ["project_id", sa.text("score DESC"), "id"],
        unique=False,
        sqlite_where=UNLABELED,
        postgresql_where=UNLABELED,
    )
    op.execute(
        "UPDATE item SET scored_by = (SELECT mv.version FROM model_version mv "
        "WHERE mv.id = item.scored_by) WHERE scored_by IS NOT NULL"
    )
    op.drop_column("item", "score_strategy")
