"""The labeling queue: lane order, reasons, leases, skips, and one indexed query per lane."""

import random
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from tests.factories import make_champion, make_items, make_project
from webapp import pool
from webapp.extensions import db
from webapp.models import Item, utcnow


def test_cold_start_serves_random_items_with_reason(app):
    project = make_project()
    make_items(project, 20)
    seen = set()
    for i in range(5):
        item, reason = pool.next_item(project, f"user:{i}")
        assert reason == "cold-start"
        seen.add(item.id)
    assert len(seen) == 5, "each expert gets a different item while the others are leased"


def test_disputed_items_come_first(app):
    project = make_project()
    ids = make_items(project, 30)
    db.session.execute(update(Item).where(Item.id == ids[17]).values(disputed_at=utcnow()))
    db.session.commit()
    item, reason = pool.next_item(project, "user:1")
    assert (item.id, reason) == (ids[17], "disputed")


def test_lease_keeps_item_with_its_expert_until_it_expires(app):
    project = make_project()
    make_items(project, 1)
    item, _ = pool.next_item(project, "user:1")
    again, _ = pool.next_item(project, "user:1")
    assert again.id == item.id, "a reload gives the same item back"
    assert pool.next_item(project, "user:2") is None, "a leased item is not served to another"
    db.session.execute(update(Item).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    taken, _ = pool.next_item(project, "user:2")
    assert taken.id == item.id, "an expired lease frees the item"


def test_skip_hides_item_from_that_expert_only(app):
    project = make_project()
    make_items(project, 1)
    item, _ = pool.next_item(project, "user:1")
    pool.skip(project, item, "user:1")
    assert pool.next_item(project, "user:1") is None
    other, _ = pool.next_item(project, "user:2")
    assert other.id == item.id


def test_annotated_item_leaves_the_pool_and_clears_dispute(app):
    project = make_project()
    make_items(project, 1)
    item, _ = pool.next_item(project, "user:1")
    item.disputed_at = utcnow()
    db.session.commit()
    pool.annotate(project, item, "user:1", "tech")
    db.session.refresh(item)
    assert (item.label, item.disputed_at, item.lease_owner) == ("tech", None, None)
    assert pool.next_item(project, "user:2") is None


def test_uncertain_lane_follows_scores_and_audit_share_is_random(app):
    project = make_project(settings={"audit_share": 0.0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    ids = make_items(project, 10, start=1000)
    for rank, item_id in enumerate(ids):
        db.session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(score=-rank, scored_by=champion.id, score_strategy="margin")
        )
    db.session.commit()
    item, reason = pool.next_item(project, "user:1")
    assert (item.id, reason) == (ids[0], "uncertain")
    item, reason = pool.next_item(project, "user:2")
    assert (item.id, reason) == (ids[1], "uncertain")

    project.settings = {"audit_share": 1.0}
    db.session.commit()
    _, reason = pool.next_item(project, "user:3")
    assert reason == "audit"


def test_audit_share_is_about_ten_percent_by_default(app):
    project = make_project()
    champion = make_champion(project, n_labeled=150, n_pool=0)
    make_items(project, 400, start=1000)
    db.session.execute(
        update(Item)
        .where(Item.label.is_(None))
        .values(score=0.5, scored_by=champion.id, score_strategy="margin")
    )
    db.session.commit()
    rng = random.Random(7)
    reasons = [pool.next_item(project, f"user:{i}", rng=rng)[1] for i in range(300)]
    audits = reasons.count("audit")
    assert 15 <= audits <= 50, audits
    assert reasons.count("uncertain") == 300 - audits


def test_queue_is_empty_when_everything_is_labeled(app):
    project = make_project()
    make_items(project, 2)
    for _ in range(2):
        item, _ = pool.next_item(project, "user:1")
        pool.annotate(project, item, "user:1", "sport")
    assert pool.next_item(project, "user:1") is None


@pytest.mark.parametrize(
    "lane, index",
    [
        (
            "label IS NULL AND scored_by = 1 AND score_strategy = 'margin' "
            "AND score IS NOT NULL ORDER BY score DESC",
            "ix_item_pool_score",
        ),
        ("label IS NULL AND rand >= 0.5 ORDER BY rand", "ix_item_pool_rand"),
        ("disputed_at IS NOT NULL ORDER BY disputed_at", "ix_item_disputed"),
    ],
)
def test_each_lane_is_one_index_scan_without_sorting_the_pool(app, lane, index):
    project = make_project()
    make_items(project, 50)
    sql = f"SELECT id FROM item WHERE project_id = {project.id} AND {lane} LIMIT 1"
    if db.engine.dialect.name == "sqlite":
        plan = " ".join(
            str(row[-1]) for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
        )
        assert index in plan and "TEMP B-TREE" not in plan, plan
    else:
        # A 50-row table is cheaper to scan; ask the planner what it does when it must choose.
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(row[0] for row in db.session.execute(text(f"EXPLAIN {sql}")))
        assert index in plan and "Sort" not in plan, plan
    db.session.rollback()


def test_claims_never_share_an_item(app):
    project = make_project()
    make_items(project, 3)
    got = [pool.next_item(project, f"user:{i}") for i in range(4)]
    ids = [g[0].id for g in got if g is not None]
    assert len(ids) == len(set(ids)) == 3
    assert got[3] is None
    owners = db.session.scalars(select(Item.lease_owner)).all()
    assert sorted(owners) == ["user:0", "user:1", "user:2"]


def test_a_lease_is_committed_when_the_item_is_served(app):
    project = make_project()
    make_items(project, 2)
    item, _ = pool.next_item(project, "user:1")
    db.session.rollback()  # whatever the caller does next cannot undo the lease
    assert db.session.get(Item, item.id).lease_owner == "user:1"
