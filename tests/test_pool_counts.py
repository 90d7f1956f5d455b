"""Project counts kept by the database, the retrain claim on top of them, and deleting a project."""

import threading

import pytest
from sqlalchemy import delete, event, func, select, text, update

from tests.conftest import PG_URL
from tests.factories import make_items, make_project
from webapp import pool
from webapp.demo import delete_project
from webapp.extensions import db
from webapp.models import (
    Annotation,
    ApiKey,
    Feedback,
    Item,
    ModelVersion,
    Prediction,
    Project,
    ProjectCounter,
    RetrainRun,
    Skip,
    SkipCursor,
    Task,
    utcnow,
)


def _sent(run) -> list[str]:
    """The SQL statements `run()` sends."""
    sent: list[str] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        sent.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)
    return sent


def _events(project) -> int:
    db.session.expire_all()
    return db.session.get(Project, project.id).label_events


def test_counts_follow_every_kind_of_write_and_never_scan_items(app):
    project = make_project(settings={"retrain_every": 0})
    other = make_project(slug="other")
    ids = make_items(project, 30)
    make_items(other, 4)
    assert pool.counts(project) == {"items": 30, "labeled": 0, "disputed": 0}

    # Production traffic adds an item; feedback disputes two.
    pool.find_or_create_item(project, {"text": "a new one"}, "prod-1", source="production")
    db.session.execute(
        update(Item).where(Item.id.in_([ids[0], ids[1]])).values(disputed_at=utcnow())
    )
    db.session.commit()
    assert pool.counts(project) == {"items": 31, "labeled": 0, "disputed": 2}

    # An expert settles a dispute, labels another item, corrects a label, repeats a label.
    pool.annotate(project, db.session.get(Item, ids[0]), "user:1", "tech")
    pool.annotate(project, db.session.get(Item, ids[2]), "user:1", "sport")
    pool.annotate(project, db.session.get(Item, ids[2]), "user:2", "politics")
    pool.annotate(project, db.session.get(Item, ids[2]), "user:3", "politics")
    assert pool.counts(project) == {"items": 31, "labeled": 2, "disputed": 1}
    assert _events(project) == 3, "new, new, corrected; the repeat changes nothing"

    # Bulk labels from an import (which settle the other dispute), rows written by plain SQL.
    pool.label_unlabeled(project, [(i, "sport") for i in ids[:10]], "import:x.csv")
    db.session.execute(
        text(
            "INSERT INTO item (project_id, data, source, created_at, rand, label) "
            "VALUES (:p, '{}', 'import', :now, 0.5, 'tech')"
        ),
        {"p": project.id, "now": utcnow()},
    )
    db.session.commit()
    expected = pool.recount(project)
    assert expected == {"items": 32, "labeled": 11, "disputed": 0}
    assert pool.counts(project) == expected
    assert _events(project) == 3 + 8 + 1
    assert db.session.get(Project, project.id).labeled_count == 11
    assert pool.counts(other) == {"items": 4, "labeled": 0, "disputed": 0}

    sent = _sent(lambda: pool.counts_by_project([project.id, other.id]))
    assert len(sent) == 1 and " item" not in sent[0].replace("project_counter", ""), sent


def test_a_label_writes_no_project_row_unless_it_claims_a_retrain(app):
    project = make_project(settings={"retrain_every": 3})
    ids = make_items(project, 5)

    def label(i):
        label = ("tech", "sport")[i % 2]  # two labels: a first model can learn from them
        return _sent(lambda: pool.annotate(project, db.session.get(Item, ids[i]), "user:1", label))

    for i in range(2):
        assert not [s for s in label(i) if s.startswith("UPDATE project")]
    claiming = [s for s in label(2) if s.startswith("UPDATE project")]
    assert claiming, "the third label claims the retrain"
    run = db.session.scalar(select(RetrainRun))
    assert (run.trigger, run.status) == ("auto", "queued")
    assert not [s for s in label(3) if s.startswith("UPDATE project")]


def test_concurrent_experts_fire_the_automatic_retrain_once_and_never_miss_it(app):
    experts = 6
    project = make_project(settings={"retrain_every": experts})
    ids = make_items(project, experts * 2)
    # Read once here: the threads must not refresh the main thread's (expired) instance.
    project_id = project.id
    barrier = threading.Barrier(experts)
    errors: list = []

    def expert(i: int) -> None:
        with app.app_context():
            try:
                mine = db.session.get(Project, project_id)
                item = db.session.get(Item, ids[i])
                barrier.wait(timeout=30)
                pool.annotate(mine, item, f"user:{i}", ("tech", "sport")[i % 2])
            except Exception as exc:  # handed to the main thread, which fails the test
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=expert, args=(i,)) for i in range(experts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    db.session.expire_all()
    fresh = db.session.get(Project, project.id)
    assert (fresh.label_events, fresh.label_events_at_trigger) == (experts, experts)
    runs = db.session.scalars(select(RetrainRun)).all()
    assert [(r.trigger, r.status) for r in runs] == [("auto", "queued")]


@pytest.mark.skipif(
    not PG_URL, reason="SQLite serializes every writer by design: there is no concurrent label"
)
def test_an_expert_does_not_wait_for_another_experts_unfinished_label(app):
    project = make_project(settings={"retrain_every": 0})
    ids = make_items(project, 2)
    flushed, finish = threading.Event(), threading.Event()
    first: dict = {}

    def slow_expert() -> None:
        """Labels item 0 and holds its transaction open, locks and all, until told to finish."""
        with app.app_context():
            session = db.session()

            def hold(sess):
                sess.flush()
                first["shard"] = sess.execute(text("SELECT pg_backend_pid() % 16")).scalar()
                flushed.set()
                finish.wait(timeout=30)

            event.listen(session, "before_commit", hold)
            try:
                mine = db.session.get(Project, project.id)
                pool.annotate(mine, db.session.get(Item, ids[0]), "user:slow", "tech")
            except Exception as exc:  # handed to the main thread, which fails the test
                first["error"] = exc
            finally:
                event.remove(session, "before_commit", hold)
                db.session.remove()

    thread = threading.Thread(target=slow_expert)
    thread.start()
    contexts = []
    try:
        assert flushed.wait(timeout=30), first
        # Another expert, on a connection whose counter shard the first one does not hold.
        while True:
            ctx = app.app_context()
            ctx.push()
            contexts.append(ctx)
            if db.session.execute(text("SELECT pg_backend_pid() % 16")).scalar() != first["shard"]:
                break
        db.session.execute(text("SET LOCAL lock_timeout = '3s'"))
        mine = db.session.get(Project, project.id)
        pool.annotate(mine, db.session.get(Item, ids[1]), "user:quick", "sport")
        assert pool.counts(mine)["labeled"] == 1, "the quick label is in, the slow one not yet"
    finally:
        finish.set()
        thread.join(timeout=30)
        for ctx in reversed(contexts):
            db.session.remove()
            ctx.pop()
    assert "error" not in first, first
    assert pool.counts(project)["labeled"] == 2


def _fill(project) -> None:
    """One row of every kind that belongs to a project."""
    ids = make_items(project, 3)
    pool.annotate(project, db.session.get(Item, ids[0]), "user:1", "tech")
    db.session.add(Skip(annotator="user:1", item_id=ids[1]))
    run = RetrainRun(project_id=project.id, status="succeeded", trigger="manual")
    db.session.add(run)
    db.session.flush()
    version = ModelVersion(
        project_id=project.id,
        version=1,
        status="champion",
        template=project.template,
        labels=project.labels,
        artifact=b"model",
        snapshot_digest="0" * 64,
        train_size=1,
        run_id=run.id,
    )
    db.session.add(version)
    db.session.flush()
    run.model_version_id = version.id
    prediction = Prediction(
        project_id=project.id, item_id=ids[2], model_version_id=version.id, label="tech"
    )
    db.session.add(prediction)
    db.session.flush()
    db.session.add(Feedback(prediction_id=prediction.id, project_id=project.id, correct=False))
    db.session.add(Task(project_id=project.id, name="rescore", status="succeeded"))
    key, _plaintext = ApiKey.generate(project, ["label"])
    db.session.add(key)
    db.session.add(
        SkipCursor(
            project_id=project.id,
            annotator="user:1",
            score=0.5,
            item_id=ids[1],
            passed=[],
            max_item_id=ids[2],
            epoch="1:0:margin",
            checked_at=utcnow(),
        )
    )
    db.session.commit()


OWNED = (
    Item,
    Prediction,
    Feedback,
    Annotation,
    Skip,
    SkipCursor,
    RetrainRun,
    ModelVersion,
    Task,
    ApiKey,
)


def _rows() -> dict[str, int]:
    count = func.count()
    counts = {m.__tablename__: db.session.scalar(select(count).select_from(m)) for m in OWNED}
    counts["project_counter"] = db.session.scalar(select(func.count()).select_from(ProjectCounter))
    return counts


def test_deleting_a_project_is_one_delete_that_takes_every_row_with_it(app):
    doomed, kept = make_project(slug="doomed"), make_project(slug="kept")
    _fill(kept)
    only_kept = _rows()
    _fill(doomed)
    assert all(_rows()[name] > n for name, n in only_kept.items() if name != "project_counter")

    doomed_id = doomed.id
    sent = _sent(lambda: db.session.execute(delete(Project).where(Project.id == doomed_id)))
    db.session.commit()
    assert len(sent) == 1
    assert _rows() == only_kept, "every row of the deleted project is gone, the other's stay"
    assert pool.counts(kept)["items"] == 3


def test_the_demo_reset_deletes_a_project_in_one_statement(app):
    doomed, kept = make_project(slug="doomed"), make_project(slug="kept")
    _fill(kept)
    only_kept = _rows()
    _fill(doomed)
    assert doomed.id  # loaded before counting statements
    sent = _sent(lambda: delete_project(doomed))
    assert [s.split()[0] for s in sent] == ["DELETE"]
    assert _rows() == only_kept


def test_upgrading_an_existing_database_counts_its_items_once(app):
    from flask_migrate import downgrade, upgrade

    db.session.remove()
    downgrade(revision="0001")
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO project (id, slug, name, kind, labels, features, template, settings,"
                " labeled_count, label_events, label_events_at_trigger, created_at) VALUES"
                " (7, 'old', 'Old', 'text', '[\"a\", \"b\"]', '[]', 'text-logreg', '{}',"
                " 2, 5, 3, :now)"
            ),
            {"now": now},
        )
        for i, (label, disputed) in enumerate([("a", None), ("b", now), (None, now), (None, None)]):
            conn.execute(
                text(
                    "INSERT INTO item (project_id, data, source, created_at, rand, label,"
                    " disputed_at) VALUES (7, '{}', 'import', :now, :r, :label, :disputed)"
                ),
                {"now": now, "r": i / 10, "label": label, "disputed": disputed},
            )
    upgrade()
    project = db.session.get(Project, 7)
    assert pool.counts(project) == {"items": 4, "labeled": 2, "disputed": 2}
    assert (project.label_events, project.label_events_at_trigger) == (5, 3)
    pool.annotate(
        project, db.session.scalars(select(Item).where(Item.label.is_(None))).first(), "user:1", "a"
    )
    assert pool.counts(project)["labeled"] == 3, "the triggers count from there on"

    db.session.remove()
    downgrade(revision="0001")
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT labeled_count, label_events FROM project")).one()
    assert tuple(row) == (3, 6), "a downgrade puts the sums back in the project row"
    upgrade()
