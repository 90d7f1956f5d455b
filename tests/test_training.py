"""Retraining: coalesced triggers, one running run per project, the gate's record, promotion,
rescoring, failures, and intents kept while Redis is unreachable."""

import json
import zlib

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
from webapp import jobs, pool, serving, training
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
    for n in range(4):
        item, _ = pool.next_item(project, "user:1")
        pool.annotate(project, item, "user:1", ("sport", "tech")[n % 2])
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


def test_the_first_retrain_comes_ten_labels_in_once_two_labels_exist(app):
    project = make_project()  # retrain_every 25, first_retrain_at 10
    make_items(project, 40)

    def label(n: int, label: str) -> None:
        for _ in range(n):
            item, reason = pool.next_item(project, "user:1")
            assert reason == "cold-start"
            pool.annotate(project, item, "user:1", label)

    label(12, "sport")
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 0, "one label: nothing to learn"
    label(1, "tech")
    run = db.session.scalar(select(RetrainRun))
    assert (run.status, run.trigger) == ("queued", "auto")


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


def test_the_first_model_is_judged_by_cross_validation_while_no_heldout_set_exists(app, run_jobs):
    project = make_project()
    champion = make_champion(project)
    run = db.session.get(RetrainRun, champion.run_id)
    assert run.decision == "promoted"
    rules = [r["rule"] for r in run.reasons]
    assert rules[0] == "judged_by_cross_validation" and "beats_baseline" in rules
    assert all(r["passed"] and r["detail"] for r in run.reasons)
    # Labels the queue chose (cold start, uncertain, disputed) always train: no held-out yet.
    assert (run.train_size, run.heldout_size) == (150, 0)
    assert champion.metrics["judged_by"] == "cross_validation"
    assert champion.metrics["judged_n"] == 150
    assert champion.snapshot_digest == run.snapshot_digest


def test_audits_are_the_heldout_set_and_never_train(app, run_jobs):
    project = make_project(settings={"retrain_every": 0})
    ids = make_items(project, 200)
    make_champion_from = ids[:100]
    label_all(project, make_champion_from)
    queue_retrain(project)
    run_jobs()
    audits = ids[100:140]
    label_all(project, audits, lane="audit")
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert (run.train_size, run.heldout_size) == (100, 40)
    trained = {i for i, _ in json.loads(zlib.decompress(run.snapshot))}
    assert trained == set(make_champion_from) and not trained & set(audits)
    export = {r["item_id"]: r["split"] for r in _export_rows(project)}
    assert {i for i, s in export.items() if s == "heldout"} == set(audits)


def _export_rows(project):
    from webapp.api.labels import _label_rows

    return [row for chunk in _label_rows(project) for row in chunk]


def test_a_better_candidate_on_fresh_audits_is_promoted_and_the_learner_rescores(app, run_jobs):
    # The first champion never saw a 'tech' label; once tech items are labeled, the next model
    # is significantly better on the same held-out audits, so it is promoted.
    project = make_project(settings={"retrain_every": 0, "gate": {"min_heldout": 10}})
    ids = make_items(project, 300)
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
    label_all(project, ids[150:240], lane="audit")  # 90 held-out items, 30 of them tech
    label_all(project, [i for i in ids[:150] if labels[i] == "tech"])
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert run.decision == "promoted", run.reasons
    assert run.metrics["candidate"]["judged_by"] == "heldout_unseen"
    versions = {
        v.version: v.status
        for v in db.session.scalars(
            select(ModelVersion).where(ModelVersion.project_id == project.id)
        )
    }
    assert versions == {1: "retired", 2: "champion"}
    scored = db.session.scalars(select(Item.scored_by).where(Item.label.is_(None))).all()
    assert set(scored) == {training.champion_version(project.id).id}
    rescore = db.session.scalars(select(Task).where(Task.name == "rescore")).all()
    assert [t.status for t in rescore] == ["succeeded", "succeeded"]
    assert rescore[-1].progress == 60


def test_a_rejected_candidate_still_steers_the_queue_and_a_tie_never_promotes(app, run_jobs):
    project = make_project(settings={"retrain_every": 0})
    champion = make_champion(project, n_labeled=120, n_pool=120)
    label_all(project, _unlabeled(project)[:40], lane="audit")
    run = queue_retrain(project)  # the same training labels: a tie at best
    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert (run.status, run.decision) == ("succeeded", "rejected")
    failed = [r["rule"] for r in run.reasons if not r["passed"]]
    assert "observed_gain" in failed, run.reasons
    assert db.session.get(ModelVersion, champion.id).status == "champion"
    assert db.session.get(ModelVersion, run.model_version_id).status == "rejected"
    # The rejected candidate is the learner: it scored the pool, the champion still serves.
    scored = db.session.scalars(select(Item.scored_by).where(Item.label.is_(None))).all()
    assert scored and set(scored) == {run.model_version_id}
    assert serving.predict(project, {"text": "a match"})["model_version"] == champion.version
    db.session.commit()  # as the predict view does
    # (Past the second opinions the audits above wait for: the uncertain lane, or an audit.)
    item, reason = pool.next_item(project, "user:after", lane="uncertain")
    assert reason in ("uncertain", "audit") and item.scored_by == run.model_version_id


def _unlabeled(project) -> list[int]:
    return db.session.scalars(
        select(Item.id).where(Item.project_id == project.id, Item.label.is_(None)).order_by(Item.id)
    ).all()


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
