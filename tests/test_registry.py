"""The model registry's service: promotion, rejection, rollback, the challenger alias, events."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tests.factories import make_champion, make_items, make_project, make_version
from webapp import registry, serving
from webapp.errors import Conflict, ValidationError
from webapp.extensions import db
from webapp.models import Item, ModelEvent, ModelVersion, Task


def statuses(project) -> dict[int, str]:
    """Version number -> status, read afresh."""
    db.session.expire_all()
    rows = db.session.execute(
        select(ModelVersion.version, ModelVersion.status).where(
            ModelVersion.project_id == project.id
        )
    )
    return dict(rows.all())


@pytest.fixture
def project(app):
    return make_project(slug="news")


def test_promote_retires_the_champion_and_records_who_when_why(project):
    v1 = make_version(project, 1, "champion")
    v2 = make_version(project, 2)
    event = registry.promote(v2, "user:3", "  better on the new sport items  ")
    db.session.commit()
    assert statuses(project) == {1: "retired", 2: "champion"}
    assert v2.promoted_at is not None and v2.promoted_at >= v1.promoted_at
    assert (event.action, event.actor, event.reason) == (
        "promote",
        "user:3",
        "better on the new sport items",
    )
    assert (event.model_version_id, event.from_version_id) == (v2.id, v1.id)
    assert event.created_at is not None
    # The queue's scores are the learner's (the newest version): a promotion rescores nothing.
    assert db.session.scalar(select(Task.status).where(Task.name == "rescore")) is None


def test_promoting_the_challenger_clears_the_alias(project):
    make_version(project, 1, "champion")
    v2 = make_version(project, 2, "challenger")
    registry.promote(v2, "key:5", "it won the comparison")
    db.session.commit()
    assert statuses(project) == {1: "retired", 2: "champion"}
    assert registry.challenger(project) is None


def test_promoting_the_champion_is_a_conflict(project):
    v1 = make_version(project, 1, "champion")
    with pytest.raises(Conflict, match="already the champion"):
        registry.promote(v1, "cli", "again")


def test_reject_takes_candidates_and_the_challenger_but_never_the_champion(project):
    v1 = make_version(project, 1, "champion")
    v2 = make_version(project, 2)
    v3 = make_version(project, 3, "challenger")
    registry.reject(v2, "cli", "overfits")
    registry.reject(v3, "cli", "worse on tech")
    db.session.commit()
    assert statuses(project) == {1: "champion", 2: "rejected", 3: "rejected"}
    with pytest.raises(Conflict, match="champion and cannot be rejected"):
        registry.reject(v1, "cli", "no")
    with pytest.raises(Conflict, match="only a candidate or the challenger"):
        registry.reject(v2, "cli", "twice")
    assert statuses(project)[1] == "champion"


def test_a_reason_is_required_and_bounded(project):
    v2 = make_version(project, 2)
    for reason in ["", "   ", None, "x" * (registry.MAX_REASON + 1)]:
        with pytest.raises(ValidationError) as caught:
            registry.reject(v2, "cli", reason)
        assert "reason" in caught.value.errors
    assert statuses(project) == {2: "candidate"}


def test_at_most_one_challenger_and_a_new_one_replaces_the_old(project):
    v1 = make_version(project, 1, "champion")
    v2 = make_version(project, 2)
    v3 = make_version(project, 3)
    registry.set_challenger(v2, "user:1", "try it")
    db.session.commit()
    event = registry.set_challenger(v3, "user:1", "try this one instead")
    db.session.commit()
    assert statuses(project) == {1: "champion", 2: "candidate", 3: "challenger"}
    assert event.from_version_id == v2.id
    with pytest.raises(Conflict, match="already the challenger"):
        registry.set_challenger(v3, "user:1", "again")
    with pytest.raises(Conflict, match="champion: only a candidate"):
        registry.set_challenger(v1, "user:1", "no")
    # The database itself refuses a second challenger.
    db.session.get(ModelVersion, v2.id).status = "challenger"
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_rollback_restores_the_previous_champion_on_predictions(app):
    project = make_project(slug="news", settings={"retrain_every": 0, "gate": {"min_heldout": 5}})
    v1 = make_champion(project, n_labeled=60, n_pool=5)
    artifact = db.session.scalar(select(ModelVersion.artifact).where(ModelVersion.id == v1.id))
    v2 = make_version(project, 2, artifact=artifact)

    def served() -> int:
        out = serving.predict(project, {"text": "election vote in parliament"})
        db.session.commit()
        return out["model_version"]

    assert served() == 1
    registry.promote(v2, "user:7", "trying v2")
    db.session.commit()
    assert served() == 2
    event = registry.rollback(project, "user:7", "v2 misroutes politics")
    db.session.commit()
    assert served() == 1
    assert statuses(project) == {1: "champion", 2: "retired"}
    assert (event.action, event.model_version_id, event.from_version_id) == (
        "rollback",
        v1.id,
        v2.id,
    )
    # Rolling back again undoes the rollback: v2 is now the champion retired last.
    registry.rollback(project, "user:7", "undo")
    db.session.commit()
    assert served() == 2


def test_rollback_to_a_named_retired_version(project):
    make_version(project, 1, "retired")
    v2 = make_version(project, 2, "retired")
    make_version(project, 3, "champion")
    v4 = make_version(project, 4)
    registry.rollback(project, "cli", "v1 was the last good one", to_version=v2)
    db.session.commit()
    assert statuses(project) == {1: "retired", 2: "champion", 3: "retired", 4: "candidate"}
    with pytest.raises(Conflict, match="candidate: a rollback goes back to a retired"):
        registry.rollback(project, "cli", "no", to_version=v4)


def test_rollback_with_nothing_to_go_back_to_is_a_conflict(project):
    with pytest.raises(Conflict, match="no champion to roll back from"):
        registry.rollback(project, "cli", "why not")
    make_version(project, 1, "champion")
    make_version(project, 2, "rejected")
    with pytest.raises(Conflict, match="Nothing to roll back to"):
        registry.rollback(project, "cli", "why not")
    assert statuses(project) == {1: "champion", 2: "rejected"}


def test_a_concurrent_promotion_is_a_conflict_and_keeps_the_callers_other_work(
    project, monkeypatch
):
    make_version(project, 1, "champion")
    v2 = make_version(project, 2)
    make_items(project, 1)
    item = db.session.scalar(select(Item))
    item.external_id = "kept"
    # A promotion that read no champion, as one racing the retrain job's would.
    monkeypatch.setattr(registry, "champion", lambda project: None)
    with pytest.raises(Conflict, match="at the same time"):
        registry.promote(v2, "cli", "racing")
    db.session.commit()
    assert statuses(project) == {1: "champion", 2: "candidate"}
    assert db.session.scalar(select(Item.external_id)) == "kept"
    assert db.session.scalar(select(func.count(ModelEvent.id))) == 0


def test_history_lists_every_event_newest_first(project):
    v1 = make_version(project, 1, "champion")
    v2 = make_version(project, 2)
    v3 = make_version(project, 3)
    registry.set_challenger(v2, "key:5", "compare")
    registry.promote(v2, "user:3", "won")
    registry.reject(v3, "cli", "worse")
    registry.rollback(project, "user:3", "regression in prod")
    db.session.commit()
    actions = [(e.action, e.actor) for e in registry.history(project)]
    assert actions == [
        ("rollback", "user:3"),
        ("reject", "cli"),
        ("promote", "user:3"),
        ("challenger", "key:5"),
    ]
    # A version's own history includes the events that displaced it.
    assert [e.action for e in registry.history(project, v1)] == ["rollback", "promote"]


def test_record_auto_promotes_or_aliases_as_the_gate(project):
    make_version(project, 1, "champion")
    v2 = ModelVersion(
        project_id=project.id,
        version=2,
        status="candidate",
        template=project.template,
        labels=list(project.labels),
        artifact=b"",
        snapshot_digest="0" * 64,
        train_size=1,
        metrics={},
        run_id=None,
    )
    db.session.add(v2)
    event = registry.record_auto(v2, "auto_promote")
    db.session.commit()
    assert statuses(project) == {1: "retired", 2: "champion"}
    assert (event.action, event.actor) == ("auto_promote", "gate")
    v3 = make_version(project, 3)
    event = registry.record_auto(v3, "auto_challenger")
    db.session.commit()
    assert statuses(project)[3] == "challenger"
    assert (event.action, event.actor) == ("auto_challenger", "gate")
    with pytest.raises(ValueError):
        registry.record_auto(v3, "promote")


def test_lineage_records_params_libraries_and_the_heldout_set():
    from labeling import training

    model = training.build_model("text-logreg")
    out = registry.lineage(model, [3, 1, 2], ["a", "b", "a"], 1.23456)
    assert out["params"]["clf__C"] == 10.0 and out["params"]["hash__n_features"] == 2**18
    assert out["params"]["hash__ngram_range"] == [1, 2]
    assert "scikit-learn" in out["library_versions"] and "python" in out["library_versions"]
    assert out["heldout_size"] == 3 and len(out["heldout_digest"]) == 64
    assert (
        out["heldout_digest"]
        == registry.lineage(model, [1, 2, 3], ["b", "a", "a"], 0)["heldout_digest"]
    )
    assert out["training_seconds"] == 1.235


def test_a_version_records_the_hyper_parameters_its_fit_chose(app):
    project = make_project()
    champion = make_champion(project)
    chosen = champion.params["chosen"]
    assert chosen["selected_by"] in ("cv", "default") and chosen["C"] > 0
    assert champion.params["clf__C"] == chosen["C"]
