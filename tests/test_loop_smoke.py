"""Service-level loop: import, label through the queue, retrain in a real worker, predict."""

from sqlalchemy import select

from tests.factories import make_items, make_project, true_label
from webapp import pool, serving
from webapp.extensions import db
from webapp.models import ModelVersion, RetrainRun


def test_loop_promotes_and_serves(app, run_jobs):
    project = make_project(settings={"retrain_every": 120, "gate": {"min_heldout": 10}})
    make_items(project, 200)
    for _ in range(120):
        item, reason = pool.next_item(project, "user:1")
        assert reason == "cold-start"
        pool.annotate(project, item, "user:1", true_label(project, item))
    run = db.session.scalar(select(RetrainRun))
    assert run is not None and run.status == "queued" and run.trigger == "auto"
    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert run.status == "succeeded", run.error
    assert run.decision == "promoted", run.reasons
    champion = db.session.scalar(select(ModelVersion).where(ModelVersion.status == "champion"))
    assert champion.version == 1
    out = serving.predict(project, {"text": "the team won the cup match with a late goal"})
    db.session.commit()  # as the predict view does
    assert out["label"] == "sport"
    item, reason = pool.next_item(project, "user:2")
    assert reason in ("uncertain", "audit")
