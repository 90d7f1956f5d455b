"""Excluding an item: out of the queue, training and held-out evaluation until restored, from
the API, the CLI and the labeling page; a row that broke every retrain stops breaking it."""

from __future__ import annotations

import json
import random
import re
import zlib

import pytest
from sqlalchemy import select, update

from tests.api.helpers import ALL_SCOPES, Api, assert_problem
from tests.factories import make_items, make_key, make_project, queue_retrain, true_label
from webapp import pool, training
from webapp.extensions import db
from webapp.models import Annotation, Item, ModelVersion, RetrainRun, Skip, utcnow
from webapp.pool import exclusion
from webapp.pool.queue import lanes as queue_lanes

SETTINGS = {"gate": {"min_heldout": 5}, "retrain_every": 0}


def _served(project, annotator: str = "user:1") -> list[int]:
    """Every item the queue serves this annotator, skipping each one to get the next."""
    seen = []
    while (found := pool.next_item(project, annotator)) is not None:
        item, _reason = found
        seen.append(item.id)
        pool.skip(project, item, annotator)
        db.session.commit()
    return seen


def _trained_ids(run: RetrainRun) -> set[int]:
    """The item ids a run trained on, from its lineage snapshot."""
    return {item_id for item_id, _label in json.loads(zlib.decompress(run.snapshot))}


def _retrain(project, run_jobs) -> RetrainRun:
    """Queue a retrain, run the worker, and return the finished run."""
    run_id = queue_retrain(project).id
    run_jobs()
    db.session.expire_all()
    return db.session.get(RetrainRun, run_id)


# ---------------------------------------------------------------------------------------------
# What exclusion does


def test_an_excluded_item_leaves_the_queue_and_comes_back_when_restored(app):
    project = make_project()
    ids = make_items(project, 4)
    item = db.session.get(Item, ids[1])
    item.disputed_at = utcnow()  # disputed items come first: exclusion must beat that too
    db.session.commit()
    assert exclusion.exclude(item, "user:9", "garbled text")
    db.session.commit()
    assert sorted(_served(project)) == [ids[0], ids[2], ids[3]]
    exclusion.restore(item)
    db.session.commit()
    assert _served(project, "user:2")[0] == ids[1], "disputed and back: first again"


def test_excluding_releases_the_lease_so_its_holder_moves_on(app):
    project = make_project()
    make_items(project, 2)
    leased, _ = pool.next_item(project, "user:1")
    exclusion.exclude(leased, "user:9", "duplicate of another item")
    db.session.commit()
    assert leased.lease_owner is None
    following, _ = pool.next_item(project, "user:1")
    assert following.id != leased.id


def test_a_second_exclusion_keeps_the_first(app):
    project = make_project()
    item = db.session.get(Item, make_items(project, 1)[0])
    assert exclusion.exclude(item, "user:1", "first")
    db.session.commit()
    assert not exclusion.exclude(item, "user:2", "second")
    assert (item.excluded_by, item.excluded_reason) == ("user:1", "first")


def test_excluded_items_leave_training_and_held_out_evaluation(app, run_jobs):
    project = make_project(settings=SETTINGS)
    ids = make_items(project, 120)
    # Imported labels: split by the stable hash, so some are held out and some trained on.
    pool.label_unlabeled(
        project, [(i, true_label(project, db.session.get(Item, i))) for i in ids], "import"
    )
    out = ids[:30]  # enough that some were held out, some trained on
    for item_id in out:
        exclusion.exclude(db.session.get(Item, item_id), "user:9", "suspect source")
    db.session.commit()
    run = _retrain(project, run_jobs)
    assert run.status == "succeeded", run.error
    assert run.train_size + run.heldout_size == 90
    assert run.heldout_size >= 5 and run.metrics["candidate"]["n"] == run.heldout_size
    assert not _trained_ids(run) & set(out)
    # The labels are kept: restored, the items count again.
    for item_id in out:
        exclusion.restore(db.session.get(Item, item_id))
    db.session.commit()
    run = _retrain(project, run_jobs)
    assert run.train_size + run.heldout_size == 120


def test_excluding_the_row_that_breaks_every_retrain_lets_the_project_learn(app, run_jobs):
    project = make_project(slug="tab", kind="tabular", settings=SETTINGS)
    for i in range(80):
        features = {"x1": float(i % 2) * 4 - 2 + i / 100, "x2": 1.0}
        db.session.add(Item(project_id=project.id, data={"features": features}, label="ab"[i % 2]))
    # A row no model can read, stored before ingest checked it (or by SQL).
    bad = Item(project_id=project.id, data={"features": {"x1": "n/a", "x2": 1.0}}, label="a")
    db.session.add(bad)
    db.session.commit()
    failed = _retrain(project, run_jobs)
    assert failed.status == "failed" and "not numeric" in failed.error
    exclusion.exclude(db.session.get(Item, bad.id), "user:9", "x1 is not a number")
    db.session.commit()
    run = _retrain(project, run_jobs)
    assert run.status == "succeeded", run.error
    assert run.decision == "promoted"
    assert bad.id not in _trained_ids(run)


@pytest.mark.parametrize(
    "reason, message",
    [
        ("", "must say why"),
        ("   ", "must say why"),
        (None, "must say why"),
        ("x" * 501, "at most 500"),
        ("bad\x00row", "control characters"),
        ("bad\x1brow", "control characters"),
    ],
)
def test_a_reason_is_required_and_bounded(app, reason, message):
    project = make_project()
    item = db.session.get(Item, make_items(project, 1)[0])
    with pytest.raises(exclusion.ValidationError) as caught:
        exclusion.exclude(item, "user:1", reason)
    assert message in caught.value.errors["reason"]
    assert item.excluded_at is None


def test_each_lane_still_walks_its_index_with_the_exclusion_predicate(app):
    """The queue's own lane statements, explained: excluded rows are a filter, not a new plan."""
    project = make_project()
    ids = make_items(project, 300)
    db.session.execute(update(Item).where(Item.id.in_(ids[100:110])).values(disputed_at=utcnow()))
    for item_id in ids[::50]:
        exclusion.exclude(db.session.get(Item, item_id), "user:9", "bad")
    db.session.commit()

    def statements(champion: bool) -> dict:
        """The queue's own lane statements, by reason (no audits drawn)."""
        current = training.current_scores(project)
        return {
            reason: query
            for query, reason in queue_lanes(
                project.id,
                "user:1",
                utcnow(),
                random.Random(0),
                champion=champion,
                uncertain=champion,
                current=current,
            )
        }

    # Without a champion the lanes are disputed and cold-start; then with one.
    lanes = statements(champion=False)
    champion = ModelVersion(
        project_id=project.id,
        version=1,
        status="champion",
        template="text-logreg",
        labels=project.labels,
        artifact=b"",
        snapshot_digest="d",
        train_size=1,
    )
    db.session.add(champion)
    db.session.flush()
    db.session.execute(
        update(Item)
        .where(Item.id.in_(ids[:100]))
        .values(score=0.5, scored_by=champion.id, score_strategy="margin")
    )
    db.session.commit()
    for reason, query in statements(champion=True).items():
        lanes.setdefault(reason, query)
    expected = {
        "disputed": "ix_item_disputed",
        "uncertain": "ix_item_pool_score",
        "audit": "ix_item_pool_rand",
        "cold-start": "ix_item_pool_rand",
        "second-opinion": "ix_item_pending",
    }
    assert set(lanes) == set(expected)
    conn = db.session.connection()
    for reason, query in lanes.items():
        compiled = query.compile(dialect=conn.dialect)
        if conn.dialect.name == "sqlite":
            params = tuple(compiled.params[name] for name in compiled.positiontup)
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
            plan = " ".join(str(row[-1]) for row in rows)
            assert expected[reason] in plan and "TEMP B-TREE" not in plan, (reason, plan)
        else:
            # No ANALYZE: its table sizes outlive the rollback and would change other tests'
            # plans. The disputed lane's partial index leaves excluded items out, so it needs
            # no statistics to be walked (docs/benchmarks.md).
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            # Tiny tables that autovacuum may analyze mid-run: sorting their few rows is then
            # cheapest. The question is which index walks each lane, so sorting is off too.
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).all()
            plan = " ".join(row[0] for row in rows)
            assert expected[reason] in plan and "Sort" not in plan, (reason, plan)
    db.session.rollback()


# ---------------------------------------------------------------------------------------------
# The API


@pytest.fixture
def api_project(app):
    """The `news` text project (no automatic retrains)."""
    return make_project(settings=SETTINGS)


def _delete(client, token: str, path: str):
    """DELETE an /api/v1 path with a bearer key (the answer is checked against the document)."""
    return Api(client, token).delete(path)


def test_the_api_excludes_and_restores(client, api_project):
    token = make_key(api_project, ALL_SCOPES)
    api = Api(client, token)
    item_id = make_items(api_project, 3)[0]
    resp = api.post(f"/items/{item_id}/exclusion", {"reason": "garbled text"})
    assert resp.status_code == 201
    doc = resp.get_json()
    assert doc["item_id"] == item_id and doc["reason"] == "garbled text"
    assert re.fullmatch(r"key:\d+", doc["excluded_by"]) and doc["excluded_at"].endswith("Z")
    again = api.post(f"/items/{item_id}/exclusion", {"reason": "another reason"})
    assert again.status_code == 200 and again.get_json() == doc
    served = []
    while (nxt := api.get("/projects/news/queue/next")).status_code == 200:
        served.append(nxt.get_json()["item_id"])
        api.post(f"/items/{served[-1]}/skip")
    assert item_id not in served and len(served) == 2
    assert _delete(client, token, f"/items/{item_id}/exclusion").status_code == 204
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None
    assert _delete(client, token, f"/items/{item_id}/exclusion").status_code == 204


def test_the_api_names_a_bad_reason(client, api_project):
    api = Api(client, make_key(api_project, ALL_SCOPES))
    item_id = make_items(api_project, 1)[0]
    for payload, field in [
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": 3}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": "ok", "why": "typo"}, "why"),
    ]:
        assert_problem(api.post(f"/items/{item_id}/exclusion", payload), 422, field, case=payload)
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None


def test_the_api_needs_the_admin_scope_and_the_keys_own_item(client, api_project):
    item_id = make_items(api_project, 1)[0]
    labeler = make_key(api_project, ["label", "predict", "feedback"])
    resp = Api(client, labeler).post(f"/items/{item_id}/exclusion", {"reason": "x"})
    assert_problem(resp, 403)
    assert_problem(_delete(client, labeler, f"/items/{item_id}/exclusion"), 403)
    other = make_project(slug="other", settings=SETTINGS)
    stranger = make_key(other, ALL_SCOPES)
    assert_problem(Api(client, stranger).post(f"/items/{item_id}/exclusion", {"reason": "x"}), 404)
    assert_problem(_delete(client, stranger, f"/items/{item_id}/exclusion"), 404)
    owner = Api(client, make_key(api_project, ALL_SCOPES))
    assert_problem(owner.post(f"/items/{2**63}/exclusion", {"reason": "x"}), 404)
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None


# ---------------------------------------------------------------------------------------------
# The command line


def test_the_cli_excludes_lists_and_restores(runner, app):
    project = make_project()
    item_id = make_items(project, 2)[0]
    result = runner.invoke(args=["item", "exclude", str(item_id), "--reason", "garbled"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Excluded item {item_id} of news.\n"
    listed = runner.invoke(args=["item", "excluded", "news"])
    fields = listed.stdout.rstrip("\n").split("\t")
    assert fields[0] == str(item_id) and fields[1] == "ext-0" and fields[-1] == "garbled"
    assert fields[3].startswith("cli:")
    again = runner.invoke(args=["item", "exclude", str(item_id), "--reason", "other"])
    assert again.exit_code == 0 and "already excluded" in again.stderr and "garbled" in again.stderr
    restored = runner.invoke(args=["item", "restore", str(item_id)])
    assert restored.exit_code == 0 and restored.stdout == f"Restored item {item_id}.\n"
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None
    assert "No item of news is excluded" in runner.invoke(args=["item", "excluded", "news"]).stderr


@pytest.mark.parametrize(
    "args, hint",
    [
        (["item", "exclude", str(2**62), "--reason", "x"], f"no item {2**62}"),
        (["item", "exclude", "{id}", "--reason", " "], "must say why"),
        (["item", "exclude", "{id}", "--reason", "x" * 501], "at most 500"),
        (["item", "exclude", "{id}"], "--reason"),
        (["item", "exclude", str(2**63), "--reason", "x"], "ID"),
        (["item", "restore", "0"], "ID"),
        (["item", "excluded", "nope"], "no project 'nope'"),
    ],
)
def test_the_cli_refuses_bad_input_and_writes_nothing(runner, app, args, hint):
    project = make_project()
    item_id = make_items(project, 1)[0]
    result = runner.invoke(args=[arg.replace("{id}", str(item_id)) for arg in args])
    assert result.exit_code == 2, result.output
    assert hint in result.stderr, result.stderr
    assert db.session.scalar(select(Item.excluded_at)) is None


def test_skips_and_annotations_of_an_excluded_item_are_kept(app):
    project = make_project()
    item = db.session.get(Item, make_items(project, 1)[0])
    pool.skip(project, item, "user:1")
    db.session.commit()
    pool.annotate(project, item, "user:2", "tech")
    exclusion.exclude(item, "user:9", "bad")
    db.session.commit()
    assert (
        db.session.scalar(select(Annotation.label).where(Annotation.item_id == item.id)) == "tech"
    )
    assert db.session.get(Skip, ("user:1", item.id)) is not None
    assert item.label == "tech"
