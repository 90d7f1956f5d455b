"""Migration 0007 (a run may decide `challenger`) upgrades and downgrades with data in place."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.factories import make_project
from webapp.extensions import db
from webapp.models import RetrainRun, utcnow


def _run(project_id: int, status: str, decision: str | None) -> RetrainRun:
    return RetrainRun(
        project_id=project_id,
        status=status,
        trigger="manual",
        decision=decision,
        created_at=utcnow(),
    )


def test_0007_downgrades_a_challenger_decision_and_upgrades_again(app):
    project = make_project()
    project_id = project.id
    db.session.add_all(
        [
            _run(project_id, "succeeded", "challenger"),
            _run(project_id, "succeeded", "promoted"),
            _run(project_id, "queued", None),
        ]
    )
    db.session.commit()
    db.session.remove()

    downgrade(revision="0006")
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT status, decision FROM retrain_run ORDER BY id")).all()
    assert rows == [("succeeded", "rejected"), ("succeeded", "promoted"), ("queued", None)]
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("UPDATE retrain_run SET decision = 'challenger' WHERE status = 'queued'"))
    # The rebuild kept the partial unique index: still one queued run per project.
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO retrain_run (project_id, status, "trigger", reasons, metrics, '
                "created_at) VALUES (:p, 'queued', 'manual', '[]', '{}', CURRENT_TIMESTAMP)"
            ),
            {"p": project_id},
        )

    upgrade()
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE retrain_run SET decision = 'challenger' WHERE decision = 'rejected'")
        )
        assert (
            conn.execute(
                text("SELECT count(*) FROM retrain_run WHERE decision = 'challenger'")
            ).scalar()
            == 1
        )
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("UPDATE retrain_run SET decision = 'maybe'"))
