"""Every status-like column holds one of its enum's values, enforced by the database (a CHECK
added by migration 0002), and that migration keeps every row a database already holds."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from sqlalchemy.exc import IntegrityError

from tests.factories import make_experiment_row, make_items, make_key, make_project, make_user
from webapp import enums
from webapp.extensions import db
from webapp.models import (
    Alert,
    Annotation,
    ApiKey,
    Experiment,
    Item,
    ModelVersion,
    Project,
    RetrainRun,
    Skip,
    Task,
    User,
    Webhook,
    WebhookDelivery,
    utcnow,
)

# (model, column, its enum, whether NULL is allowed)
COLUMNS = [
    (User, "role", enums.Role, False),
    (Project, "kind", enums.Kind, False),
    (Item, "source", enums.ItemSource, False),
    (Item, "lease_reason", enums.QueueReason, True),
    (Item, "review_reason", enums.ReviewReason, True),
    (Annotation, "reason", enums.QueueReason, True),
    (ModelVersion, "status", enums.ModelStatus, False),
    (RetrainRun, "status", enums.RunStatus, False),
    (RetrainRun, "decision", enums.Decision, True),
    (RetrainRun, "trigger", enums.Trigger, False),
    (Task, "status", enums.TaskStatus, False),
    (Alert, "state", enums.AlertState, False),
    (WebhookDelivery, "status", enums.DeliveryStatus, False),
    (Experiment, "status", enums.ExperimentStatus, False),
    (Experiment, "mode", enums.ExperimentMode, False),
    (Experiment, "decision", enums.ExperimentDecision, True),
]


def _experiment(project_id: int):
    return make_experiment_row(None, project_id=project_id)


@pytest.fixture
def rows(app):
    """One row of each constrained table, all valid: {model: row id}."""
    project = make_project()
    item_id = make_items(project, 1)[0]
    user = make_user()
    annotation = Annotation(project_id=project.id, item_id=item_id, annotator="u", label="sport")
    version = ModelVersion(
        project_id=project.id,
        version=1,
        template="text-logreg",
        labels=project.labels,
        artifact=b"",
        snapshot_digest="d",
        train_size=1,
    )
    run = RetrainRun(project_id=project.id)
    task = Task(project_id=project.id, name="rescore")
    alert = Alert(project_id=project.id, metric="volume", message="m")
    hook = Webhook(project_id=project.id, url="http://127.0.0.1:9/x", secret="s" * 16)
    db.session.add_all([annotation, version, run, task, alert, hook])
    db.session.flush()
    delivery = WebhookDelivery(webhook_id=hook.id, event="run.finished", payload={})
    experiment = _experiment(project.id)
    db.session.add_all([delivery, experiment])
    make_key(project)
    db.session.commit()
    return {
        Alert: alert.id,
        WebhookDelivery: delivery.id,
        Experiment: experiment.id,
        Webhook: hook.id,
        User: user.id,
        Project: project.id,
        Item: item_id,
        Annotation: annotation.id,
        ModelVersion: version.id,
        RetrainRun: run.id,
        Task: task.id,
        ApiKey: db.session.scalar(sa.select(ApiKey.id)),
    }


def _set(model, row_id: int, **values) -> None:
    """Write column values straight to the database (no ORM checks on the way) and commit."""
    db.session.execute(sa.update(model).where(model.id == row_id).values(**values))
    db.session.commit()


@pytest.mark.parametrize("model,column,enum,nullable", COLUMNS)
def test_an_unknown_value_is_refused_by_the_database(rows, model, column, enum, nullable):
    for bad in ["bogus", enum.__members__[next(iter(enum.__members__))].name, ""]:
        # The member's *name* (e.g. QUEUED) is not its value either.
        with pytest.raises(IntegrityError):
            _set(model, rows[model], **{column: bad})
        db.session.rollback()
    if not nullable:
        with pytest.raises(IntegrityError):
            _set(model, rows[model], **{column: None})
        db.session.rollback()


def _new_row(model, rows: dict, n: int):
    """A new, valid row of `model` (unique columns varied by n), not yet added."""
    project_id, item_id = rows[Project], rows[Item]
    return {
        User: lambda: User(email=f"u{n}@x.org", password_hash="h"),
        Project: lambda: Project(
            slug=f"p{n}", name="P", kind="text", labels=["a", "b"], template="text-logreg"
        ),
        Item: lambda: Item(project_id=project_id, data={"text": "t"}),
        Annotation: lambda: Annotation(
            project_id=project_id, item_id=item_id, annotator="u", label="a"
        ),
        ModelVersion: lambda: ModelVersion(
            project_id=project_id,
            version=100 + n,
            template="text-logreg",
            labels=["a", "b"],
            artifact=b"",
            snapshot_digest="d",
            train_size=1,
        ),
        RetrainRun: lambda: RetrainRun(project_id=project_id, status="failed"),
        Task: lambda: Task(project_id=project_id, name="rescore", status="failed"),
        Alert: lambda: Alert(project_id=project_id, metric="volume", message="m"),
        WebhookDelivery: lambda: WebhookDelivery(
            webhook_id=rows[Webhook], event="run.finished", payload={}
        ),
        Experiment: lambda: _experiment(project_id),
    }[model]()


@pytest.mark.parametrize("model,column,enum,nullable", COLUMNS)
def test_inserting_a_row_with_an_unknown_value_fails(rows, model, column, enum, nullable):
    row = _new_row(model, rows, 1)
    setattr(row, column, "bogus")
    db.session.add(row)
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    # The same row with a legal value goes in: the CHECK, not something else, refused it.
    row = _new_row(model, rows, 2)
    setattr(row, column, list(enum)[-1])
    db.session.add(row)
    db.session.commit()


@pytest.mark.parametrize("model,column,enum,nullable", COLUMNS)
def test_every_legal_value_is_accepted(rows, model, column, enum, nullable):
    for value in [*enum, *([None] if nullable else [])]:
        _set(model, rows[model], **{column: value})
        stored = db.session.scalar(sa.select(getattr(model, column)).where(model.id == rows[model]))
        assert stored == value


@pytest.mark.parametrize(
    "scopes",
    [["root"], ["admin", "root"], [["admin"]], [1], "admin", {"admin": True}, ["admin "]],
)
def test_api_key_scopes_outside_the_enum_are_refused(rows, scopes):
    with pytest.raises(IntegrityError):
        _set(ApiKey, rows[ApiKey], scopes=scopes)


def test_api_key_scopes_from_the_enum_are_accepted(rows):
    for scopes in [[], ["admin"], list(enums.Scope), ["label", "predict"]]:
        _set(ApiKey, rows[ApiKey], scopes=scopes)
        assert db.session.get(ApiKey, rows[ApiKey], populate_existing=True).scopes == scopes


def test_an_exclusion_needs_who_when_and_why(rows):
    with pytest.raises(IntegrityError):
        _set(Item, rows[Item], excluded_at=utcnow())
    db.session.rollback()
    with pytest.raises(IntegrityError):
        _set(Item, rows[Item], excluded_at=utcnow(), excluded_by="user:1")
    db.session.rollback()
    _set(Item, rows[Item], excluded_at=utcnow(), excluded_by="user:1", excluded_reason="bad row")


# ---------------------------------------------------------------------------------------------
# The migration on a database that already holds rows


def _legal_rows(now) -> dict[str, list[dict]]:
    """Rows of the 0001 schema using every legal value of every constrained column."""
    q = list(enums.QueueReason)
    rows: dict[str, list[dict]] = {
        "project": [
            {
                "id": i + 1,
                "slug": f"p{i}",
                "name": f"P{i}",
                "kind": kind,
                "labels": ["a", "b"],
                "features": [],
                "template": "text-logreg",
                "settings": {},
                "labeled_count": 0,
                "label_events": 0,
                "label_events_at_trigger": 0,
                "created_at": now,
            }
            for i, kind in enumerate(enums.Kind)
        ],
        "user": [
            {"email": f"{role}@x.org", "password_hash": "h", "role": role, "created_at": now}
            for role in enums.Role
        ],
        "api_key": [
            {
                "project_id": 1,
                "name": "",
                "prefix": f"k{i}",
                "key_hash": "h",
                "scopes": scopes,
                "created_at": now,
            }
            for i, scopes in enumerate([[s] for s in enums.Scope] + [list(enums.Scope), []])
        ],
        "item": [
            {
                "id": i + 1,
                "project_id": 1,
                "data": {"text": f"t{i}"},
                "source": list(enums.ItemSource)[i % 2],
                "created_at": now,
                "rand": 0.5,
                "lease_reason": reason,
                "label": "a" if i % 2 else None,
            }
            for i, reason in enumerate([*q, None])
        ],
        "annotation": [
            {
                "project_id": 1,
                "item_id": 2,
                "annotator": "u",
                "label": "a",
                "reason": r,
                "created_at": now,
            }
            for r in [*q, None]
        ],
        "skip": [{"annotator": "u", "item_id": 1, "created_at": now}],
        "model_version": [
            {
                "id": i + 1,
                "project_id": 1,
                "version": i + 1,
                "status": status,
                "template": "text-logreg",
                "labels": ["a", "b"],
                "artifact": b"",
                "snapshot_digest": "d",
                "train_size": 1,
                "metrics": {},
                "created_at": now,
            }
            # The statuses 0002 knows: `challenger` came with 0006 (tests/test_migration_0006.py).
            for i, status in enumerate(s for s in enums.ModelStatus if s != "challenger")
        ],
        "prediction": [
            {"project_id": 1, "item_id": 1, "model_version_id": 2, "label": "a", "created_at": now}
        ],
    }
    statuses = list(enums.RunStatus)
    # The decisions 0002 knows: `challenger` came with 0007 (tests/test_migration_0007.py),
    # the triggers `schedule` and `alert` with 0008.
    decisions = [*(d for d in enums.Decision if d != "challenger"), None]
    triggers = [t for t in enums.Trigger if t not in ("schedule", "alert")]
    rows["retrain_run"] = [
        {
            "project_id": 1 if i < len(statuses) else 2,
            # One queued and one running run per project (a unique index): the rest are done.
            "status": statuses[i] if i < len(statuses) else enums.RunStatus.SUCCEEDED,
            "trigger": trigger,
            "decision": decisions[i % len(decisions)],
            "reasons": [],
            "metrics": {},
            "created_at": now,
        }
        for i, trigger in enumerate([*triggers, *triggers])
    ]
    rows["task"] = [
        {
            "project_id": 1,
            "name": "rescore",
            "args": {},
            "status": status,
            "progress": 0,
            "created_at": now,
        }
        for status in enums.TaskStatus
    ]
    return rows


def _foreign_keys_on(dbapi_connection, _record) -> None:
    """What `PRAGMA foreign_keys=ON` on every connection does: the cascades of the models."""
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _snapshot(conn, tables: list[str]) -> dict[str, list]:
    """Every row of these tables (the columns 0001 made), in a comparable form."""
    meta = sa.MetaData()
    meta.reflect(bind=conn, only=tables)
    out = {}
    for name in tables:
        table = meta.tables[name]
        columns = [c for c in table.columns if not c.name.startswith("excluded_")]
        result = conn.execute(sa.select(*columns).order_by(*table.primary_key.columns))
        out[name] = [json.dumps(list(row), default=str, sort_keys=True) for row in result]
    return out


def test_the_migration_keeps_rows_of_every_legal_value(app):
    sqlite = db.engine.dialect.name == "sqlite"
    db.session.remove()
    if sqlite:
        # As the app runs SQLite (declared cascades on): rebuilding `project` or `item` must
        # not cascade into the rows that refer to them.
        sa.event.listen(db.engine, "connect", _foreign_keys_on)
        db.engine.dispose()
    try:
        downgrade(revision="0001")
        rows = _legal_rows(utcnow())
        with db.engine.begin() as conn:
            meta = sa.MetaData()
            meta.reflect(bind=conn)
            for name, table_rows in rows.items():
                conn.execute(meta.tables[name].insert(), table_rows)
            before = _snapshot(conn, list(rows))
            if sqlite:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # Only this revision: later ones add columns of their own to the rows compared here.
        upgrade(revision="0002")
        with db.engine.connect() as conn:
            after = _snapshot(conn, list(rows))
        for name in rows:
            assert len(after[name]) == len(rows[name]), name
            assert after[name] == before[name], name
        # And the constraints now hold.
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE retrain_run SET status = 'paused'"))
    finally:
        if sqlite:
            sa.event.remove(db.engine, "connect", _foreign_keys_on)
            db.engine.dispose()
        upgrade()


def _checks(conn) -> dict[tuple[str, str], str]:
    """{(table, constraint name): its SQL} of every CHECK constraint in a database."""
    inspector = sa.inspect(conn)
    return {
        (table, check["name"]): " ".join(check["sqltext"].split())
        for table in inspector.get_table_names()
        for check in inspector.get_check_constraints(table)
    }


def test_the_migrations_make_exactly_the_models_checks(app):
    # Alembic's autogenerate does not compare CHECK constraints: this test does.
    with db.engine.connect() as conn:
        migrated = _checks(conn)
    if db.engine.dialect.name == "sqlite":
        scratch = sa.create_engine("sqlite://")
        db.metadata.create_all(scratch)
        with scratch.connect() as conn:
            assert migrated == _checks(conn)
        scratch.dispose()
    else:
        # PostgreSQL rewrites each expression its own way; the names and values must match.
        declared = {
            (table.name, c.name)
            for table in db.metadata.tables.values()
            for c in table.constraints
            if isinstance(c, sa.CheckConstraint)
        }
        assert set(migrated) == declared
        for (table, name), sql in migrated.items():
            column = name.removeprefix(f"ck_{table}_")
            for model, col, enum, _nullable in COLUMNS:
                if model.__tablename__ == table and col == column:
                    assert sorted(re.findall(r"'([^']+)'", sql)) == sorted(enum), sql
    assert len(migrated) == 22


def test_a_skips_lane_is_one_of_the_queue_reasons(rows):
    """`skip` has no id column, so its reason is checked here rather than in COLUMNS."""
    item_id = rows[Item]
    for reason in [*enums.QueueReason, None]:
        db.session.add(Skip(annotator=f"u-{reason}", item_id=item_id, reason=reason))
        db.session.commit()
    for bad in ["bogus", "AUDIT", ""]:
        db.session.add(Skip(annotator=f"x-{bad}", item_id=item_id, reason=bad))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
