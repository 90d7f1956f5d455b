"""Project counts in trigger-kept shard rows; a partial index for held leases; skips by item.

`project_counter` replaces `project.labeled_count` and `project.label_events` (summed on read
from a few rows per project, so no label locks one hot row) and also holds item and dispute
counts, so no page counts a project's items. Triggers on `item` keep it, whoever writes.
`ix_item_lease_held` (only leased rows) replaces the one-column `ix_item_lease_owner`, and
`ix_skip_item_id` lets the cascade from a deleted item find its skips. `skip_cursor` keeps where
an expert's skipped prefix of the uncertain lane ends, so the queue need not step over it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Shards per project on PostgreSQL: the writing backend's pid picks one, so concurrent
# transactions rarely share a row, and one transaction never locks two (no deadlock).
SHARDS = 16

_UPSERT = """
    ON CONFLICT (project_id, shard) DO UPDATE SET
        items = {t}.items + excluded.items,
        labeled = {t}.labeled + excluded.labeled,
        disputed = {t}.disputed + excluded.disputed,
        label_events = {t}.label_events + excluded.label_events
"""

SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER item_count_insert AFTER INSERT ON item
    BEGIN
        INSERT INTO project_counter (project_id, shard, items, labeled, disputed, label_events)
        VALUES (NEW.project_id, 0, 1, NEW.label IS NOT NULL, NEW.disputed_at IS NOT NULL,
                NEW.label IS NOT NULL)
        {_UPSERT.format(t="project_counter")};
    END
    """,
    f"""
    CREATE TRIGGER item_count_update AFTER UPDATE OF label, disputed_at ON item
    WHEN OLD.label IS NOT NEW.label OR (OLD.disputed_at IS NULL) <> (NEW.disputed_at IS NULL)
    BEGIN
        INSERT INTO project_counter (project_id, shard, items, labeled, disputed, label_events)
        VALUES (NEW.project_id, 0, 0,
                (NEW.label IS NOT NULL) - (OLD.label IS NOT NULL),
                (NEW.disputed_at IS NOT NULL) - (OLD.disputed_at IS NOT NULL),
                NEW.label IS NOT NULL AND OLD.label IS NOT NEW.label)
        {_UPSERT.format(t="project_counter")};
    END
    """,
]

POSTGRESQL_TRIGGERS = [
    # One statement-level trigger per INSERT: a 1,000-row import adds one delta, not 1,000.
    f"""
    CREATE FUNCTION item_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO project_counter AS c
            (project_id, shard, items, labeled, disputed, label_events)
        SELECT project_id, pg_backend_pid() % {SHARDS}, count(*), count(label),
               count(disputed_at), count(label)
        FROM new_rows GROUP BY project_id
        {_UPSERT.format(t="c")};
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER item_count_insert AFTER INSERT ON item
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION item_count_insert()
    """,
    # Row-level with a WHEN, and only for writes that name label or disputed_at: a rescore
    # (score only) never fires it.
    f"""
    CREATE FUNCTION item_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO project_counter AS c
            (project_id, shard, items, labeled, disputed, label_events)
        VALUES (NEW.project_id, pg_backend_pid() % {SHARDS}, 0,
                (NEW.label IS NOT NULL)::int - (OLD.label IS NOT NULL)::int,
                (NEW.disputed_at IS NOT NULL)::int - (OLD.disputed_at IS NOT NULL)::int,
                (NEW.label IS NOT NULL AND NEW.label IS DISTINCT FROM OLD.label)::int)
        {_UPSERT.format(t="c")};
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER item_count_update AFTER UPDATE OF label, disputed_at ON item
    FOR EACH ROW
    WHEN (OLD.label IS DISTINCT FROM NEW.label
          OR (OLD.disputed_at IS NULL) <> (NEW.disputed_at IS NULL))
    EXECUTE FUNCTION item_count_update()
    """,
]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade():
    op.create_table(
        "project_counter",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.Column("labeled", sa.BigInteger(), nullable=False),
        sa.Column("disputed", sa.BigInteger(), nullable=False),
        sa.Column("label_events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_project_counter_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "shard", name=op.f("pk_project_counter")),
    )
    # Counted once here, from then on kept by the triggers.
    op.execute(
        """
        INSERT INTO project_counter (project_id, shard, items, labeled, disputed, label_events)
        SELECT p.id, 0, count(i.id), count(i.label), count(i.disputed_at), p.label_events
        FROM project p LEFT JOIN item i ON i.project_id = p.id
        GROUP BY p.id, p.label_events
        """
    )
    for ddl in SQLITE_TRIGGERS if _sqlite() else POSTGRESQL_TRIGGERS:
        op.execute(ddl)
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("label_events")
        batch_op.drop_column("labeled_count")

    op.drop_index("ix_item_lease_owner", table_name="item")
    op.create_index(
        "ix_item_lease_held",
        "item",
        ["project_id", "lease_owner"],
        unique=False,
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    )
    op.create_index(op.f("ix_skip_item_id"), "skip", ["item_id"], unique=False)
    op.create_table(
        "skip_cursor",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.JSON(), nullable=False),
        sa.Column("max_item_id", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.String(length=64), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_skip_cursor_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "annotator", name=op.f("pk_skip_cursor")),
    )


def downgrade():
    op.drop_table("skip_cursor")
    op.drop_index(op.f("ix_skip_item_id"), table_name="skip")
    op.drop_index(
        "ix_item_lease_held",
        table_name="item",
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    )
    op.create_index("ix_item_lease_owner", "item", ["lease_owner"], unique=False)

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("labeled_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("label_events", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        """
        UPDATE project SET
            labeled_count = (SELECT coalesce(sum(labeled), 0) FROM project_counter c
                             WHERE c.project_id = project.id),
            label_events = (SELECT coalesce(sum(label_events), 0) FROM project_counter c
                            WHERE c.project_id = project.id)
        """
    )
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.alter_column("labeled_count", server_default=None)
        batch_op.alter_column("label_events", server_default=None)
    for name in ("item_count_insert", "item_count_update"):
        if _sqlite():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON item")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("project_counter")
