"""What a retrain's verdict does: promote, send to the challenger alias, or reject; and a
version retrained from the same snapshot with the same seed measures the same."""

from sqlalchemy import select

from tests.factories import TEXT_LABELS, label_all, make_items, make_project, queue_retrain
from webapp import registry, serving, training
from webapp.extensions import db
from webapp.models import Item, ModelEvent, ModelVersion, RetrainRun


def _statuses(project) -> dict[int, str]:
    rows = db.session.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id))
    return {v.version: v.status for v in rows}


def _retrain(project, run_jobs) -> RetrainRun:
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    return db.session.get(RetrainRun, run.id)


def _better_candidate(project, run_jobs) -> RetrainRun:
    """v1 never saw a 'tech' label; v2 did, and is significantly better on fresh audits."""
    ids = make_items(project, 300)
    labels = {i: TEXT_LABELS[n % 3] for n, i in enumerate(ids)}
    label_all(project, [i for i in ids[:150] if labels[i] != "tech"])
    first = _retrain(project, run_jobs)
    assert first.decision == "promoted", first.reasons
    label_all(project, ids[150:240], lane="audit")
    label_all(project, [i for i in ids[:150] if labels[i] == "tech"])
    return _retrain(project, run_jobs)


def test_a_passing_candidate_waits_as_challenger_when_the_project_says_so(app, run_jobs):
    project = make_project(
        settings={"retrain_every": 0, "promote_to": "challenger", "gate": {"min_heldout": 10}}
    )
    run = _better_candidate(project, run_jobs)
    assert run.decision == "challenger", run.reasons
    assert all(r["passed"] for r in run.reasons)
    assert run.reasons[-1]["rule"] == "promote_to"
    assert _statuses(project) == {1: "champion", 2: "challenger"}
    # The champion keeps serving; the challenger is there for a person or an experiment.
    assert serving.predict(project, {"text": "a match"})["model_version"] == 1
    event = db.session.scalars(
        select(ModelEvent).where(ModelEvent.project_id == project.id).order_by(ModelEvent.id)
    ).all()[-1]
    assert (event.action, event.actor) == ("auto_challenger", "gate")
    # An engineer promotes it: it serves from the next request on.
    registry.promote(registry.challenger(project), "user:1", "proven on the live split")
    db.session.commit()
    assert serving.predict(project, {"text": "a match"})["model_version"] == 2


def test_the_default_promotes_a_passing_candidate(app, run_jobs):
    project = make_project(settings={"retrain_every": 0, "gate": {"min_heldout": 10}})
    run = _better_candidate(project, run_jobs)
    assert run.decision == "promoted", run.reasons
    assert _statuses(project) == {1: "retired", 2: "champion"}


def test_a_first_model_is_promoted_even_when_passing_candidates_go_to_challenger(app, run_jobs):
    project = make_project(settings={"retrain_every": 0, "promote_to": "challenger"})
    label_all(project, make_items(project, 60)[:40])
    run = _retrain(project, run_jobs)
    assert run.decision == "promoted", run.reasons  # nothing to challenge yet
    assert _statuses(project) == {1: "champion"}


def test_a_failing_candidate_never_becomes_the_challenger(app, run_jobs):
    project = make_project(settings={"retrain_every": 0, "promote_to": "challenger"})
    ids = make_items(project, 200)
    label_all(project, ids[:100])
    _retrain(project, run_jobs)
    label_all(project, ids[100:140], lane="audit")
    run = _retrain(project, run_jobs)  # the same training labels: a tie
    assert run.decision == "rejected"
    assert registry.challenger(project) is None


def test_the_same_snapshot_and_seed_reproduce_the_same_model_and_metrics(app, run_jobs):
    project = make_project(settings={"retrain_every": 0, "gate": {"min_heldout": 10}})
    ids = make_items(project, 200)
    label_all(project, ids[:100])
    first = _retrain(project, run_jobs)
    label_all(project, ids[100:140], lane="audit")
    second, third = _retrain(project, run_jobs), _retrain(project, run_jobs)
    v1, v2, v3 = (db.session.get(ModelVersion, r.model_version_id) for r in (first, second, third))
    # One snapshot: the audits never trained, and nothing else changed.
    assert v1.snapshot_digest == v2.snapshot_digest == v3.snapshot_digest
    assert v2.params == v3.params and v2.params.get("chosen") == v1.params.get("chosen")
    assert v2.heldout_digest == v3.heldout_digest and v2.heldout_size == 40
    # Measured on the same held-out items, the retrained model scores exactly the same …
    assert v3.metrics == v2.metrics
    assert third.metrics["candidate"] == second.metrics["candidate"]
    # … as the champion trained on that snapshot before it (so neither run promotes a tie).
    champion = {k: v for k, v in second.metrics["champion"].items()}
    assert champion == second.metrics["candidate"]
    assert (second.decision, third.decision) == ("rejected", "rejected")
    # The artifacts answer alike, probabilities included.
    texts = [f"item {i} about a match" for i in range(5)]
    p1 = training.load_model(v1).predict_proba(texts)
    p3 = training.load_model(v3).predict_proba(texts)
    assert (p1 == p3).all()


def test_a_decision_leaves_out_the_audits_the_champion_won_on(app, run_jobs):
    project = make_project(settings={"retrain_every": 0, "gate": {"min_heldout": 10}})
    run = _better_candidate(project, run_jobs)  # v2 won on the 90 audits (v1 was cross-validated)
    assert run.metrics["candidate"]["judged_by"] == "heldout_unseen"
    won_on = set(run.metrics["items"]["ids"])
    assert len(won_on) >= 90
    unlabeled = db.session.scalars(
        select(Item.id).where(Item.project_id == project.id, Item.label.is_(None)).order_by(Item.id)
    ).all()
    label_all(project, unlabeled[:20], lane="audit")
    nxt = _retrain(project, run_jobs)
    judged = set(nxt.metrics["items"]["ids"])
    assert nxt.metrics["candidate"]["judged_by"] == "heldout_unseen"
    assert judged == set(unlabeled[:20]) and not judged & won_on
