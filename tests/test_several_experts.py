"""Several experts per item: distinct experts per round, second opinions on audits and
disputes, resolution rules, blind labeling, the reviewers' queue and the label-error hunt."""

import json
import zlib

import pytest
from sqlalchemy import func, select, update

from tests.factories import make_champion, make_items, make_project, queue_retrain, true_label
from webapp import pool, serving, training
from webapp.extensions import db
from webapp.models import Annotation, Item, Prediction, Project, Resolution, RetrainRun
from webapp.pool import rounds
from webapp.review import decide, suspects


def answer(project, annotator, label=None, **filters):
    """The expert takes the next item from the queue and answers it; returns (item, lane)."""
    got = pool.next_item(project, annotator, **filters)
    assert got is not None, f"nothing for {annotator}"
    item, lane = got
    pool.annotate(project, item, annotator, label or "sport")
    return item, lane


def resolutions(item_id):
    return db.session.scalars(
        select(Resolution).where(Resolution.item_id == item_id).order_by(Resolution.id)
    ).all()


def test_an_item_goes_to_distinct_experts_until_it_has_its_answers(app):
    project = make_project(settings={"annotations_per_item": 2, "resolution": "majority"})
    make_items(project, 6)
    first, _ = answer(project, "user:ann", "tech")
    db.session.refresh(first)
    # The first answer stands for now, and the item waits for a second expert.
    assert (first.label, first.pending_since is not None) == ("tech", True)
    # Ann never gets it again; Bob gets it before anything else.
    for _ in range(5):
        item, _ = answer(project, "user:ann", "sport")
        assert item.id != first.id
    item, lane = pool.next_item(project, "user:bob")
    assert item.id == first.id and lane == "cold-start"
    pool.annotate(project, item, "user:bob", "tech")
    db.session.refresh(item)
    assert (item.label, item.pending_since, item.review_since) == ("tech", None, None)
    [resolution] = resolutions(item.id)
    assert (resolution.rule, resolution.label, resolution.decided_by) == (
        "majority",
        "tech",
        "rule",
    )
    assert resolution.answers == {"user:ann": "tech", "user:bob": "tech"}
    # Two answers, one per expert: none stored twice.
    assert (
        db.session.scalar(
            select(func.count()).select_from(Annotation).where(Annotation.item_id == item.id)
        )
        == 2
    )


def test_a_tie_under_majority_goes_to_a_reviewer(app):
    project = make_project(settings={"annotations_per_item": 2, "resolution": "majority"})
    make_items(project, 2)
    item, _ = answer(project, "user:ann", "tech")
    pool.annotate(project, pool.next_item(project, "user:bob")[0], "user:bob", "sport")
    db.session.refresh(item)
    assert item.review_reason == "review" and item.review_since is not None
    assert item.pending_since is None
    case = decide.next_case(project)
    assert case.item.id == item.id
    assert [(who, label) for who, label, _ in case.answers] == [
        ("user:ann", "tech"),
        ("user:bob", "sport"),
    ]


def test_experts_labeling_at_once_never_share_an_item_without_a_second_opinion(app):
    project = make_project(settings={"annotations_per_item": 1})
    make_items(project, 40)
    seen = {"user:a": [], "user:b": []}
    for _ in range(15):
        for who in seen:
            item, _ = answer(project, who)
            seen[who].append(item.id)
    assert not set(seen["user:a"]) & set(seen["user:b"])


def test_audits_get_a_second_opinion_once_several_experts_label(app):
    project = make_project(settings={"audit_share": 1.0, "audit_early_until": 0})
    make_champion(project, n_labeled=60, n_pool=40)  # labeled by one factory expert
    assert not rounds.several_experts(project)
    # A second expert joins: from their first answer on, audits wait for a second opinion.
    audited, lane = answer(project, "user:zed", "tech")
    assert rounds.several_experts(project)
    db.session.refresh(audited)
    assert lane == "audit" and audited.pending_since is not None
    item, lane = pool.next_item(project, "user:bob")
    assert (item.id, lane) == (audited.id, "audit")  # the second opinion comes first
    pool.annotate(project, item, "user:bob", "tech")
    db.session.refresh(item)
    assert item.pending_since is None and len(resolutions(item.id)) == 1
    # The held-out split reads the round's first lane: still an audit.
    assert (
        db.session.scalar(
            select(Annotation.reason).where(Annotation.item_id == item.id).order_by(Annotation.id)
        )
        == "audit"
    )


def test_one_expert_alone_never_waits_for_a_second_opinion(app):
    project = make_project(settings={"audit_share": 1.0, "audit_early_until": 0})
    ids = make_items(project, 30)
    pool.label_unlabeled(
        project, [(i, "sport" if n % 2 else "tech") for n, i in enumerate(ids[:20])], "user:solo"
    )
    training.run_retrain(queue_retrain(project).id)
    assert not rounds.several_experts(project)
    item, lane = answer(project, "user:solo", "tech")
    db.session.refresh(item)
    assert lane == "audit" and item.pending_since is None and item.label == "tech"


def test_a_dispute_opens_a_new_round(app):
    project = make_project(settings={"audit_share": 0.0})
    make_champion(project, n_labeled=60, n_pool=10)
    item = db.session.scalar(select(Item).where(Item.label == "sport").limit(1))
    before = item.round
    [prediction_id] = serving.log_predictions(
        project, [{"data": item.data, "label": "sport", "external_id": item.external_id}]
    )
    serving.add_feedback(db.session.get(Prediction, prediction_id), False, "politics")
    db.session.commit()
    db.session.refresh(item)
    assert item.round == before + 1 and item.disputed_at is not None
    got, lane = pool.next_item(project, "user:ann")
    assert (got.id, lane) == (item.id, "disputed")
    pool.annotate(project, got, "user:ann", "politics")
    db.session.refresh(item)
    # Several experts label this project: the answered dispute waits for a second opinion.
    assert item.label == "politics" and item.disputed_at is None
    assert item.pending_since is not None


def test_undo_in_an_open_round_keeps_the_other_experts_answer(client, app):
    project = make_project(settings={"annotations_per_item": 3, "resolution": "majority"})
    make_items(project, 2)
    item, _ = answer(project, "user:ann", "tech")
    pool.annotate(project, pool.next_item(project, "user:bob")[0], "user:bob", "sport")
    db.session.commit()
    from webapp.pool import history

    with app.test_request_context():
        done = history.undo(project, "user:bob")
    db.session.commit()
    db.session.refresh(item)
    assert done.item.id == item.id and done.again
    assert item.lease_owner == "user:bob" and item.pending_since is not None
    assert [a.annotator for a in rounds.round_answers(item)] == ["user:ann"]


def test_a_reviewers_decision_reaches_the_next_retrains_snapshot(app, run_jobs):
    project = make_project(settings={"audit_share": 0.0})
    make_champion(project, n_labeled=60, n_pool=20)
    run_jobs()  # the pool's scores: the uncertain lane
    db.session.execute(
        update(Project)
        .where(Project.id == project.id)
        .values(settings={"annotations_per_item": 2, "resolution": "review", "audit_share": 0.0})
    )
    db.session.commit()
    db.session.refresh(project)
    item, lane = answer(project, "user:ann", "tech")
    assert lane == "uncertain"  # a training item, not an audit
    pool.annotate(project, pool.next_item(project, "user:bob")[0], "user:bob", "sport")
    db.session.refresh(item)
    assert item.review_reason == "review"
    with pytest.raises(Exception, match="reason"):
        decide.decide(project, item, "user:rev", "politics", "  ")
    db.session.rollback()
    resolution = decide.decide(project, item, "user:rev", "politics", "a budget story")
    db.session.commit()
    assert (resolution.rule, resolution.decided_by, resolution.previous) == (
        "reviewer",
        "user:rev",
        "tech",
    )
    with pytest.raises(decide.Gone, match="already decided by user:rev"):
        decide.decide(project, db.session.get(Item, item.id), "user:other", "tech", "late")
    db.session.rollback()
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    snapshot = json.loads(zlib.decompress(db.session.get(RetrainRun, run.id).snapshot))
    assert [item.id, "politics"] in snapshot


def test_the_label_error_hunt_flags_flipped_labels_for_review(app, run_jobs):
    project = make_project(settings={"heldout_share": 0.05})
    ids = make_items(project, 240)
    pairs = [(i, true_label(project, db.session.get(Item, i))) for i in ids]
    flipped = {ids[i] for i in (5, 50, 100, 150, 200)}
    labels = project.labels
    pool.label_unlabeled(
        project,
        [(i, labels[(labels.index(t) + 1) % 3] if i in flipped else t) for i, t in pairs],
        "import",
    )
    suspects.request(project)
    db.session.commit()
    run_jobs()
    db.session.expire_all()
    flagged = set(db.session.scalars(select(Item.id).where(Item.review_reason == "suspect")).all())
    assert flipped & flagged, (flipped, flagged)
    assert suspects.latest(project).status == "succeeded"
    # A reviewer corrects one: it counts as a flagged label changed.
    item = db.session.get(Item, next(iter(flipped & flagged)))
    decide.decide(project, item, "user:rev", true_label(project, item), "the text says so")
    db.session.commit()
    assert decide.suspect_outcomes(project) == {"decided": 1, "changed": 1}


def test_dawid_skene_re_resolves_overlapping_items_before_a_retrain(app, run_jobs):
    project = make_project(settings={"annotations_per_item": 3, "resolution": "dawid_skene"})
    ids = make_items(project, 45)
    truth = {i: true_label(project, db.session.get(Item, i)) for i in ids}
    labels = project.labels
    # ann and bob are careful; cy answers the next label round the circle on every item.
    for item_id in ids:
        item = db.session.get(Item, item_id)
        wrong = labels[(labels.index(truth[item_id]) + 1) % 3]
        for who, given in (
            ("user:cy", wrong),
            ("user:ann", truth[item_id]),
            ("user:bob", truth[item_id]),
        ):
            pool.annotate(project, item, who, given)
    db.session.commit()
    # Majority settles each round already; Dawid-Skene at the retrain agrees with it here,
    # and it learns that cy is always wrong.
    answers = db.session.execute(
        select(Annotation.item_id, Annotation.annotator, Annotation.label)
    ).all()
    from labeling.agreement import DawidSkene

    ds = DawidSkene().fit([tuple(a) for a in answers])
    assert ds.expert_accuracy_["user:cy"] < 0.2 < 0.8 < ds.expert_accuracy_["user:ann"]
    # Make the rounds disagree with the truth by hand, as a stale majority would: the retrain
    # job re-resolves them from all the answers.
    db.session.execute(update(Item).where(Item.id.in_(ids[:5])).values(label=labels[0]))
    db.session.commit()
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    assert [db.session.get(Item, i).label for i in ids[:5]] == [truth[i] for i in ids[:5]]
    changed = db.session.scalars(select(Resolution).where(Resolution.rule == "dawid_skene")).all()
    assert {r.item_id for r in changed} == {i for i in ids[:5] if truth[i] != labels[0]}
    assert db.session.get(RetrainRun, run.id).status in ("succeeded", "failed")


def test_the_several_experts_settings_are_checked(app):
    from webapp import settings
    from webapp.errors import ValidationError

    project = make_project()
    for key, bad in (
        ("annotations_per_item", "0"),
        ("second_opinion", "11"),
        ("resolution", "loudest"),
    ):
        with pytest.raises(ValidationError) as refused:
            settings.apply(project, {key: bad})
        assert key in refused.value.errors
    settings.apply(project, {"resolution": "majority", "second_opinion": "3"})
    assert (project.setting("resolution"), project.setting("second_opinion")) == ("majority", 3)
