"""Migration 0006 (the model registry) upgrades and downgrades with data in place."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.factories import make_project, make_version
from webapp import registry
from webapp.extensions import db


def _insert_version(conn, project_id: int, version: int, status: str, lineage: bool = True) -> None:
    """Insert a version row in SQL (the schema of the revision in place, not the models')."""
    columns, values = "", ""
    if lineage:
        columns, values = ", params, library_versions", ", '{}', '{}'"
    conn.execute(
        text(
            "INSERT INTO model_version (project_id, version, status, template, labels, artifact, "
            f"snapshot_digest, train_size, metrics, created_at{columns}) VALUES (:p, :v, :s, "
            f"'text-logreg', '[]', :a, :d, 1, '{{}}', CURRENT_TIMESTAMP{values})"
        ),
        {"p": project_id, "v": version, "s": status, "a": b"", "d": "0" * 64},
    )


def test_0006_downgrades_with_a_challenger_and_upgrades_again(app):
    project = make_project()
    project_id = project.id  # not 1 on PostgreSQL, whose sequences outlive each test
    make_version(project, 1, "champion")
    v2 = make_version(project, 2)
    registry.set_challenger(v2, "cli", "compare")
    db.session.commit()
    db.session.remove()

    downgrade(revision="0005")
    with db.engine.connect() as conn:
        tables = set(db.inspect(conn).get_table_names())
        assert "model_event" not in tables
        rows = conn.execute(text("SELECT version, status FROM model_version ORDER BY version"))
        assert rows.all() == [(1, "champion"), (2, "candidate")]
        columns = {c["name"] for c in db.inspect(conn).get_columns("model_version")}
        assert "params" not in columns and "heldout_digest" not in columns
    # The old CHECK is back: no challenger; the champion index survived the rebuild.
    for status in ("challenger", "champion"):
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            _insert_version(conn, project_id, 3, status, lineage=False)
    with db.engine.begin() as conn:
        _insert_version(conn, project_id, 3, "retired", lineage=False)

    upgrade()
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT version, params, library_versions FROM model_version"))
        assert {(v, str(p), str(lv)) for v, p, lv in rows} == {
            (1, "{}", "{}"),
            (2, "{}", "{}"),
            (3, "{}", "{}"),
        }
    with db.engine.begin() as conn:
        _insert_version(conn, project_id, 5, "challenger")
    # At most one challenger and one champion per project, as before the downgrade.
    for status in ("challenger", "champion"):
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            _insert_version(conn, project_id, 4, status)
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        _insert_version(conn, project_id, 4, "promoted")
