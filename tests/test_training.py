"""Retraining: coalesced triggers, one running run per project, the gate's record, promotion,
rescoring, failures, and intents kept while Redis is unreachable."""

import redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from tests.factories import (
    TEXT_LABELS,
    label_all,
    make_champion,
    make_items,
    make_project,
    queue_retrain,
)
from webapp import jobs, pool, training
from webapp.extensions import db
from webapp.models import Item, ModelVersion, RetrainRun, Task


def _queued_jobs(app) -> list:
    return Queue(
        app.config["RQ_QUEUE"], connection=jobs.get_redis(), serializer=JSONSerializer
    ).jobs


def test_triggers_coalesce_into_one_queued_run(app):
    project = make_project()
    first = queue_retrain(project, trigger="manual")
    second = queue_retrain(project, trigger="auto")
    assert first.id == second.id
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1
    assert [j.func_name for j in _queued_jobs(app)] == ["worker.jobs.retrain"]
    assert _queued_jobs(app)[0].args == [first.id]


def test_auto_trigger_every_n_label_changes(app):
    project = make_project(settings={"retrain_every": 5})
    make_items(project, 12)
    for _ in range(4):
        item, _ = pool.next_item(project, "user:1")
        pool.annotate(project, item, "user:1", "sport")
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 0
    item, _ = pool.next_item(project, "user:1")
    pool.annotate(project, item, "user:1", "sport")
    run = db.session.scalar(select(RetrainRun))
    assert (run.status, run.trigger) == ("queued", "auto")
    # A correction of an already-labeled item counts as a label change too.
    for _ in range(4):
        item, _ = pool.next_item(project, "user:1")
        pool.annotate(project, item, "user:1", "tech")
    pool.annotate(project, item, "user:1", "politics")
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1, "still coalesced"


def test_only_one_run_per_project_runs_at_a_time(app, run_jobs):
    project = make_project()
    ids = make_items(project, 200)
    label_all(project, ids[:150])
    first = queue_retrain(project)
    first.status = "running"  # as if a worker were busy with it
    db.session.commit()
    second = queue_retrain(project)
    assert second.id != first.id
    assert training.run_retrain(second.id) == "queued", "waits for the running one"
    first.status = "failed"
    db.session.commit()
    training._start_next_queued(project.id)
    run_jobs()
    db.session.expire_all()
    assert db.session.get(RetrainRun, second.id).status == "succeeded"


def test_first_retrain_promotes_and_records_every_gate_rule(app, run_jobs):
    project = make_project()
    champion = make_champion(project)
    run = db.session.get(RetrainRun, champion.run_id)
    assert run.decision == "promoted"
    assert [r["rule"] for r in run.reasons] == [
        "heldout_size",
        "beats_baseline",
        "no_class_regression",
    ]
    assert all(r["passed"] and r["detail"] for r in run.reasons)
    assert run.train_size + run.heldout_size == 150
    assert 0.1 < run.heldout_size / 150 < 0.3
    assert champion.snapshot_digest == run.snapshot_digest
    assert run.metrics["candidate"]["macro_f1"] > run.metrics["baseline"]["macro_f1"]
    # Held-out items are never trained on: the snapshot holds train items only.
    import json
    import zlib

    from labeling.split import heldout_mask

    trained = [i for i, _ in json.loads(zlib.decompress(run.snapshot))]
    assert not heldout_mask(trained, 0.2).any()


def test_promotion_retires_the_old_champion_and_rescores_the_pool(app, run_jobs):
    # The first champion never saw a 'tech' label; once tech items are labeled, the next model
    # is strictly better on the same held-out items, so it is promoted.
    project = make_project(settings={"retrain_every": 0, "gate": {"min_heldout": 10}})
    ids = make_items(project, 210)
    labels = {i: TEXT_LABELS[n % 3] for n, i in enumerate(ids)}
    label_all(project, [i for i in ids[:150] if labels[i] != "tech"])
    first_run = queue_retrain(project)
    run_jobs()
    first = training.champion_version(project.id)
    assert first is not None, db.session.get(RetrainRun, first_run.id).reasons
    scored = db.session.execute(
        select(Item.scored_by, Item.score_strategy).where(Item.label.is_(None))
    ).all()
    assert scored and set(scored) == {(first.id, "margin")}
    label_all(project, [i for i in ids[:150] if labels[i] == "tech"])
    queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    versions = {
        v.version: v.status
        for v in db.session.scalars(
            select(ModelVersion).where(ModelVersion.project_id == project.id)
        )
    }
    assert versions == {1: "retired", 2: "champion"}
    assert db.session.get(ModelVersion, first.id).status == "retired"
    scored = db.session.scalars(select(Item.scored_by).where(Item.label.is_(None))).all()
    assert set(scored) == {training.champion_version(project.id).id}
    rescore = db.session.scalars(select(Task).where(Task.name == "rescore")).all()
    assert [t.status for t in rescore] == ["succeeded", "succeeded"]
    assert rescore[-1].progress == 60


def test_a_candidate_that_loses_is_rejected_and_champion_stays(app, run_jobs):
    project = make_project(settings={"gate": {"min_delta": 0.5}})
    champion = make_champion(project)
    queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    run = db.session.scalars(select(RetrainRun).order_by(RetrainRun.id.desc())).first()
    assert (run.status, run.decision) == ("succeeded", "rejected")
    failed = [r for r in run.reasons if not r["passed"]]
    assert [r["rule"] for r in failed] == ["beats_champion"]
    assert db.session.get(ModelVersion, champion.id).status == "champion"
    assert db.session.get(ModelVersion, run.model_version_id).status == "rejected"


def test_a_run_that_cannot_train_fails_with_a_readable_error(app, run_jobs):
    project = make_project()
    label_all(project, make_items(project, 30), label="sport")  # one class only
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert run.status == "failed"
    assert "two labels" in run.error
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0


def test_intent_survives_redis_outage_and_is_enqueued_later(app, run_jobs):
    project = make_project()
    good = app.extensions["redis"] or jobs.get_redis()
    app.extensions["redis"] = redis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2
    )
    run = queue_retrain(project)
    lost_job = run.job_id
    assert run.status == "queued", "the intent is recorded although Redis is unreachable"
    app.extensions["redis"] = good
    assert jobs.fetch_job(lost_job) is None, "nothing reached Redis"
    assert training.requeue_pending() == 1
    db.session.refresh(run)
    assert run.job_id not in (None, lost_job)
    assert [j.args for j in _queued_jobs(app)] == [[run.id]]


def test_a_run_whose_worker_died_is_failed_and_the_next_one_proceeds(app, run_jobs):
    project = make_project()
    ids = make_items(project, 200)
    label_all(project, ids[:150])
    lost = queue_retrain(project)
    lost.status, lost.job_id = "running", "job-of-a-dead-worker"
    db.session.commit()
    waiting = queue_retrain(project)
    run_jobs()  # the worker starts: recovers the lost run, then runs the waiting one
    db.session.expire_all()
    lost = db.session.get(RetrainRun, lost.id)
    assert lost.status == "failed" and "stopped" in lost.error
    assert db.session.get(RetrainRun, waiting.id).status == "succeeded"


def test_serving_cache_never_mixes_up_databases(app, database_url):
    """Two databases can both have "project 1, version 1": each must serve its own model."""
    from webapp import serving

    project = make_project()
    make_champion(project)
    text = "the team won the cup match with a late goal"
    assert serving.predict(project, {"text": text})["label"] == "sport"
    # The same ids in a rebuilt database with a model that learned the opposite.
    db.session.execute(ModelVersion.__table__.delete())
    db.session.execute(RetrainRun.__table__.delete())
    db.session.commit()
    for item in db.session.scalars(select(Item).where(Item.label == "sport")):
        item.label = "tech"
    db.session.commit()
    training.run_retrain(queue_retrain(project).id)
    assert serving.predict(project, {"text": text})["label"] == "tech"


def test_a_queued_run_whose_job_redis_lost_is_enqueued_again(app, run_jobs):
    project = make_project()
    ids = make_items(project, 200)
    label_all(project, ids[:150])
    run = queue_retrain(project)
    jobs.get_redis().flushdb()  # Redis restarted without its data
    run_jobs()
    db.session.expire_all()
    assert db.session.get(RetrainRun, run.id).status == "succeeded"


def test_bulk_labels_keep_experts_words_and_queue_one_retrain(app):
    project = make_project(settings={"retrain_every": 5})
    ids = make_items(project, 40)
    expert_item = db.session.get(Item, ids[0])
    expert_item.disputed_at = None
    pool.annotate(project, expert_item, "user:1", "politics")
    labeled = pool.label_unlabeled(
        project, [(i, "sport") for i in ids[:30]], "import:file.csv", batch_size=7
    )
    assert labeled == 29
    db.session.expire_all()
    assert db.session.get(Item, ids[0]).label == "politics", "an expert's label wins"
    assert {db.session.get(Item, i).label for i in ids[1:30]} == {"sport"}
    assert db.session.get(Item, ids[30]).label is None
    assert db.session.get(type(project), project.id).labeled_count == 30
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1
    assert db.session.scalar(select(RetrainRun.trigger)) == "auto"
