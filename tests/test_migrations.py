"""The schema comes from migrations, and the migrations match the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from webapp.extensions import db


def _diff():
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_models_have_no_changes_missing_from_migrations(app):
    diff = _diff()
    assert diff == [], f"run `corrigo db migrate`: the models changed without a migration: {diff}"


def test_migrations_downgrade_and_upgrade_cleanly(app):
    db.session.remove()
    downgrade(revision="base")
    with db.engine.connect() as conn:
        tables = db.inspect(conn).get_table_names()
    assert set(tables) <= {"alembic_version"}
    upgrade()
    assert _diff() == []
