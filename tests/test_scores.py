"""Scores and rescoring: provenance (model + strategy), one queued rescore, bulk writes."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError

from labeling import sampling
from tests.api.helpers import ALL_SCOPES, Api
from tests.factories import make_champion, make_items, make_key, make_project, text_for
from webapp import pool, serving, settings, training
from webapp.extensions import db
from webapp.models import Item, Prediction, Task, utcnow


def _tasks(project, status=None) -> list[Task]:
    query = select(Task).where(Task.project_id == project.id, Task.name == "rescore")
    if status:
        query = query.where(Task.status == status)
    return list(db.session.scalars(query.order_by(Task.id)))


def _unscored(project) -> int:
    """Unlabeled items without a score under the project's current key."""
    current = training.current_scores(project)
    scored = db.session.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project.id, Item.label.is_(None), *current
        )
    )
    total = db.session.scalar(
        select(func.count(Item.id)).where(Item.project_id == project.id, Item.label.is_(None))
    )
    return total - scored


class Statements:
    """Count the SQL statements the engine runs (each executemany counts once)."""

    def __init__(self):
        self.count = 0

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        self.count += 1

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self)


# ---------------------------------------------------------------------------------------------
# Bulk writes


def test_logging_100_predictions_runs_as_few_statements_as_logging_one(client, app):
    project = make_project(slug="news", settings={"retrain_every": 0})
    api = Api(client, make_key(project, ALL_SCOPES))
    make_items(project, 5)  # ext-0 … ext-4 exist: some rows map to known items

    def log(n: int, prefix: str) -> int:
        rows = [
            {
                "data": {"text": text_for("tech", i)},
                "label": "tech",
                "probabilities": {"tech": 0.9, "sport": 0.1},
                "external_id": f"ext-{i}" if 0 < i < 3 else f"{prefix}-{i}",
                "model": "app-v1",
            }
            for i in range(n)
        ]
        with Statements() as statements:
            resp = api.post("/projects/news/predictions", {"predictions": rows})
        assert resp.status_code == 201, resp.get_json()
        assert len(resp.get_json()["ids"]) == n
        return statements.count

    log(1, "w")  # queues the rescore (the cold start's, no model yet) that later calls find
    one, hundred = log(1, "a"), log(100, "b")
    # Before: 304 statements for 100 rows (3 a row). Now the same handful whatever the size.
    assert hundred == one
    assert hundred <= 12
    assert db.session.scalar(select(func.count(Prediction.id))) == 102
    existing = db.session.scalar(select(Item.id).where(Item.external_id == "ext-1"))
    reused = db.session.scalars(
        select(Prediction.item_id).join(Item).where(Item.external_id == "ext-1")
    ).all()
    assert reused == [existing]  # a known external id maps to its item
    assert db.session.scalar(select(func.count(Item.id))) == 5 + 1 + 1 + 98


def test_a_batch_that_repeats_an_external_id_creates_one_item(app):
    project = make_project()
    rows = [{"external_id": "same", "data": {"text": "chip"}}] * 3 + [{"data": {"text": "x"}}]
    (ids,) = list(pool.import_items(project, rows))
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert db.session.scalar(select(func.count(Item.id))) == 2


# ---------------------------------------------------------------------------------------------
# One queued rescore


def test_the_database_allows_one_queued_rescore_per_project(app):
    project = make_project()
    db.session.add(Task(project_id=project.id, name="rescore", status="queued"))
    db.session.commit()
    db.session.add(Task(project_id=project.id, name="rescore", status="queued"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    db.session.add(Task(project_id=project.id, name="rescore", status="running"))
    db.session.commit()


def test_a_request_that_loses_the_race_for_the_queued_slot_uses_the_winner(app, monkeypatch):
    project = make_project(settings={"retrain_every": 0})
    make_champion(project, n_labeled=150, n_pool=0)
    for task in _tasks(project, "queued"):
        task.status = "succeeded"  # the promotion's rescore, done
    db.session.commit()
    original = training._queued_task
    winner = []

    def racing(project_id, name):
        """Our look finds nothing; a competitor then queues and commits its own rescore."""
        found = original(project_id, name)
        if not winner:
            with db.engine.begin() as conn:
                winner.append(
                    conn.execute(
                        insert(Task)
                        .values(
                            project_id=project_id,
                            name="rescore",
                            status="queued",
                            args={},
                            progress=0,
                            created_at=utcnow(),
                        )
                        .returning(Task.id)
                    ).scalar()
                )
        return found

    monkeypatch.setattr(training, "_queued_task", racing)
    task = training.request_rescore(project)
    # No IntegrityError, and the caller's transaction is still usable (on PostgreSQL a failed
    # INSERT would have aborted it): it goes on and commits its own work.
    project.name = "Renamed in the same unit of work"
    db.session.commit()
    assert task.id == winner[0]
    assert [t.id for t in _tasks(project, "queued")] == winner
    db.session.expire_all()
    assert project.name == "Renamed in the same unit of work"


def test_api_imports_queue_one_rescore_that_scores_every_item(client, app, run_jobs):
    project = make_project(slug="news", settings={"retrain_every": 0})
    make_champion(project, n_labeled=150, n_pool=0)
    run_jobs()
    api = Api(client, make_key(project, ALL_SCOPES))
    for r in range(4):
        rows = [
            {"external_id": f"r{r}-{i}", "data": {"text": text_for("tech", i)}} for i in range(50)
        ]
        assert api.post("/projects/news/items", {"items": rows}).status_code == 201
    # One rescore queued for the four requests, and it scores the items of all four when it
    # runs, including those imported after it was queued.
    assert len(_tasks(project, "queued")) == 1
    assert _unscored(project) == 200
    run_jobs()
    assert _unscored(project) == 0
    assert [t.status for t in _tasks(project)][-1] == "succeeded"
    assert _tasks(project, "queued") == []


def test_a_running_rescore_absorbs_the_requests_made_while_it_runs(client, app):
    project = make_project(slug="news", settings={"retrain_every": 0})
    make_champion(project, n_labeled=150, n_pool=60)
    api = Api(client, make_key(project, ALL_SCOPES))
    (task,) = _tasks(project, "queued")  # the promotion's
    imported = []

    def import_more(done, total):
        """While the rescore runs, an app keeps importing (each request asks for a rescore)."""
        if len(imported) < 3:
            rows = [
                {"external_id": f"late-{len(imported)}-{i}", "data": {"text": text_for("sport", i)}}
                for i in range(25)
            ]
            assert api.post("/projects/news/items", {"items": rows}).status_code == 201
            imported.append(len(rows))

    training.run_rescore(task.id, chunk=20, progress=import_more)
    db.session.expire_all()
    assert sum(imported) == 75
    assert _unscored(project) == 0  # the running pass scored the late items too
    # The requests made while it ran queued one rescore between them, which the pass closed:
    # its items were committed before it, so the pass had seen them.
    statuses = [t.status for t in _tasks(project)]
    assert statuses == ["succeeded", "succeeded"], statuses
    assert db.session.get(Task, task.id).progress == 60 + 75


def test_the_cli_import_requests_one_rescore_at_the_end(runner, app, tmp_path, run_jobs):
    project = make_project(slug="news", settings={"retrain_every": 0})
    make_champion(project, n_labeled=150, n_pool=0)
    run_jobs()
    before = len(_tasks(project))
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(f'{{"external_id": "m-{i}", "text": "match goal {i}"}}\n' for i in range(2500))
    )
    result = runner.invoke(args=["import", "news", str(path)])
    assert result.exit_code == 0, result.output
    assert len(_tasks(project)) == before + 1  # 3 batches of 1,000, one rescore
    run_jobs()
    assert _unscored(project) == 0


# ---------------------------------------------------------------------------------------------
# The strategy bug


def _entropy_head(project) -> int:
    """The unlabeled item the champion is least sure of, by entropy (computed here, directly)."""
    items = db.session.scalars(
        select(Item).where(Item.project_id == project.id, Item.label.is_(None)).order_by(Item.id)
    ).all()
    proba = np.array(
        [list(serving.suggest(project, item.data)[1].values()) for item in items], dtype=float
    )
    return items[int(np.argmax(sampling.informativeness_from_proba(proba, "entropy")))].id


def test_after_a_strategy_change_the_lane_heads_the_least_certain_item(app, run_jobs):
    """Reproduces the bug: margin scores in [-1, 0] stayed, a new prediction was scored by
    entropy in [0, log k], and an item the model was ~96% sure of jumped the lane."""
    # Plain scores (no diverse batch on top): the lane's head is the least certain item.
    project = make_project(
        settings={"audit_share": 0.0, "retrain_every": 0, "batch_diversity": False}
    )
    make_champion(project, n_labeled=150, n_pool=0)
    # Unlabeled items the model is unsure of: texts that mix two classes' words.
    mixed = [
        {"external_id": f"mix-{i}", "data": {"text": f"{text_for('tech', i)} {text_for(b, i)}"}}
        for i, b in enumerate(["sport", "politics"] * 10)
    ]
    list(pool.import_items(project, mixed))
    training.request_rescore(project)
    db.session.commit()
    run_jobs()  # scored by margin

    settings.apply(project, {"query_strategy": "entropy"})
    db.session.commit()
    run_jobs()  # the rescore the change queued

    sure = {"text": text_for("sport", 7)}
    result = serving.predict(project, sure, external_id="sure")
    db.session.commit()  # as the predict view does
    assert max(result["probabilities"].values()) >= 0.9  # the model is sure of it

    item, reason = pool.next_item(project, "user:expert")
    assert reason == "uncertain"
    assert item.external_id != "sure"
    assert item.id == _entropy_head(project)
    keys = db.session.execute(
        select(Item.scored_by, Item.score_strategy)
        .where(Item.project_id == project.id, Item.label.is_(None))
        .distinct()
    ).all()
    assert keys == [(training.champion_version(project.id).id, "entropy")]


def test_a_strategy_change_queues_a_rescore_and_the_same_strategy_does_not(app):
    project = make_project(settings={"retrain_every": 0})
    make_champion(project, n_labeled=150, n_pool=10)
    for task in _tasks(project, "queued"):
        task.status = "succeeded"
    db.session.commit()
    settings.apply(project, {"query_strategy": "margin"})
    db.session.commit()
    assert _tasks(project, "queued") == []
    settings.apply(project, {"query_strategy": "uncertainty"})
    db.session.rollback()
    assert _tasks(project, "queued") == []  # a rolled-back change queues nothing
    settings.apply(project, {"query_strategy": "uncertainty"})
    db.session.commit()
    assert len(_tasks(project, "queued")) == 1


def test_scores_of_an_older_champion_do_not_rank_in_the_lane(app):
    project = make_project(settings={"audit_share": 0.0, "retrain_every": 0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    old, current = make_items(project, 2, start=900)
    db.session.get(Item, old).score, db.session.get(Item, old).scored_by = 0.0, champion.id + 99
    db.session.get(Item, old).score_strategy = "margin"
    row = db.session.get(Item, current)
    row.score, row.scored_by, row.score_strategy = -0.9, champion.id, "margin"
    db.session.commit()
    item, reason = pool.next_item(project, "user:1")
    assert (item.id, reason) == (current, "uncertain")


def test_a_second_rescore_waits_for_the_running_one_which_closes_it(app):
    project = make_project(settings={"retrain_every": 0})
    make_champion(project, n_labeled=150, n_pool=20)
    (first,) = _tasks(project, "queued")  # the promotion's
    first.status = "running"  # a worker is on it
    db.session.commit()
    make_items(project, 30, start=700)
    second = training.request_rescore(project)
    db.session.commit()
    assert second.id != first.id

    training.run_rescore(second.id)  # a second worker picks it up: it must not run a pass
    db.session.expire_all()
    assert db.session.get(Task, second.id).status == "queued"
    assert _unscored(project) == 50

    training.run_rescore(first.id)  # the running one goes on, and closes the queued one
    db.session.expire_all()
    assert [t.status for t in _tasks(project)] == ["succeeded", "succeeded"]
    assert _unscored(project) == 0
