"""The labeling queue: lane order, reasons, leases, skips, and one indexed query per lane."""

import random
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, select, update

from tests.factories import label_all, make_champion, make_items, make_project
from webapp import pool, scoring
from webapp.extensions import db
from webapp.models import (
    Annotation,
    Item,
    ModelVersion,
    Project,
    Skip,
    SkipCursor,
    Task,
    utcnow,
)
from webapp.pool import cursor as skip_cursor


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
    db.session.commit()
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


def test_audits_are_thirty_percent_while_the_heldout_set_is_small_then_ten(app):
    # The audit share alone: no second opinions (they are served as audits too).
    project = make_project(settings={"audit_early_until": 40, "second_opinion": 1})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    make_items(project, 700, start=1000)
    db.session.execute(
        update(Item)
        .where(Item.label.is_(None))
        .values(score=0.5, scored_by=champion.id, score_strategy="margin")
    )
    db.session.commit()
    rng = random.Random(7)
    reasons = [pool.next_item(project, f"user:{i}", rng=rng)[1] for i in range(300)]
    audits = reasons.count("audit")
    assert 65 <= audits <= 115, audits  # 30% of 300 while fewer than 40 audits are labeled
    assert reasons.count("uncertain") == 300 - audits
    db.session.execute(update(Item).values(lease_owner=None, lease_until=None, lease_reason=None))
    db.session.commit()
    label_all(project, _unlabeled(project)[:40], lane="audit")
    reasons = [pool.next_item(project, f"user:b{i}", rng=rng)[1] for i in range(300)]
    audits = reasons.count("audit")
    assert 15 <= audits <= 50, audits  # the default 10% once the held-out set has 40


def test_counting_audits_reads_only_audit_rows(app):
    # The audit share depends on how many audits exist; the count must not walk every
    # annotation of a project with a million labels and few audits.
    project = make_project(settings={"audit_early_until": 500})
    sent = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if " annotation" in statement and "count" in statement.lower():
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        assert pool.queue.audit_share_now(project) == 0.3
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)
    assert len(sent) == 1
    conn = db.session.connection()
    sqlite = db.engine.dialect.name == "sqlite"
    if not sqlite:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + sent[0][0], sent[0][1]).all()
    plan = " | ".join(str(row[-1]) for row in rows)
    db.session.rollback()
    assert "ix_annotation_audit" in plan, plan


def test_queue_is_empty_when_everything_is_labeled(app):
    project = make_project()
    make_items(project, 2)
    for _ in range(2):
        item, _ = pool.next_item(project, "user:1")
        pool.annotate(project, item, "user:1", "sport")
    assert pool.next_item(project, "user:1") is None


def _plans(run) -> list[tuple[str, str]]:
    """Run `run()`; return (statement, plan) for each statement it sent that reads `item`.

    The statements are captured as the queue sent them (SQL and bound parameters) and explained
    afterwards: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN with sequential scans
    disabled (the test tables are tiny and never analyzed: which index serves each statement
    when the planner cannot just read the whole table).
    """
    sent = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if not executemany and " item" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)
    conn = db.session.connection()
    sqlite = db.engine.dialect.name == "sqlite"
    if not sqlite:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        # The tables hold a few dozen rows and autovacuum may analyze them mid-run; at that
        # size a sort of the few rows is cheapest. The question is which index serves each
        # statement in order, so sorting is off too (the 1M-row plans are in bench/).
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
    out = []
    for statement, parameters in sent:
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
        out.append((" ".join(statement.split()), " | ".join(str(row[-1]) for row in rows)))
    db.session.rollback()
    return out


LANE_INDEX = {
    "ORDER BY item.disputed_at": "ix_item_disputed",
    "ORDER BY item.score DESC": "ix_item_pool_score",
    "ORDER BY item.rand": "ix_item_pool_rand",
    "ORDER BY item.pending_since": "ix_item_pending",
}


def _assert_served_by_index(statement: str, plan: str, index: str) -> None:
    assert index in plan, (statement, plan)
    if db.engine.dialect.name == "sqlite":
        # `SCAN item` would be a walk of the whole table; `SCAN item USING INDEX` is the lane.
        assert "TEMP B-TREE" not in plan and "SCAN item |" not in plan + " |", (statement, plan)
        if "skip" in statement:
            assert "sqlite_autoindex_skip_1 (annotator=? AND item_id=?)" in plan, plan
        if "annotation.annotator = ?" in statement:
            # "Not answered by this expert": one probe of the item's answers per candidate.
            assert "SEARCH annotation USING INDEX ix_annotation_item_id (item_id=?)" in plan, plan
    else:
        # ix_item_disputed holds disputed items only: with statistics saying they are few,
        # PostgreSQL may sort those few; a pool lane must never sort.
        if index != "ix_item_disputed":
            assert "Sort" not in plan, (statement, plan)
        assert "BitmapOr" not in plan, (statement, plan)
        assert "Seq Scan" not in plan, (statement, plan)
        if "skip" in statement:
            # One probe per candidate, never a join that rescans every skip.
            # Which of skip's two indexes (and index-only or not) depends on the statistics
            # another test's ANALYZE left; either is one indexed probe.
            assert re.search(r"Scan using (pk_skip|ix_skip_item_id) on skip", plan), plan
            assert "Join" not in plan and "Bitmap Heap Scan on skip" not in plan, plan
        if "annotation.annotator = " in statement:
            assert "Seq Scan on annotation" not in plan, plan


@pytest.mark.parametrize(
    "setup, reasons",
    [
        ("cold", ["cold-start"]),
        ("cold picks", ["cold-start"]),
        ("uncertain", ["uncertain"]),
        ("audit", ["audit"]),
        ("disputed", ["disputed"]),
        ("skipped head", ["uncertain"]),
        ("second opinion", ["audit"]),
    ],
)
def test_every_statement_the_queue_sends_is_served_by_its_index(app, setup, reasons):
    project = make_project(settings={"audit_share": 1.0 if setup == "audit" else 0.0})
    ids = make_items(project, 60)
    if setup == "cold picks":
        # The cold start's diverse picks, under their own key (no model made them).
        db.session.execute(
            update(Item)
            .where(Item.id.in_(ids[10:20]))
            .values(
                score=Item.rand, scored_by=scoring.COLD_START_BY, score_strategy=scoring.COLD_START
            )
        )
    elif setup != "cold":
        db.session.execute(update(Item).values(score=Item.rand, **_champion(project)))
    if setup == "disputed":
        db.session.execute(update(Item).where(Item.id == ids[7]).values(disputed_at=utcnow()))
    if setup == "second opinion":
        # Another expert's audit answer waits for a second opinion.
        db.session.execute(
            update(Item)
            .where(Item.id == ids[9])
            .values(label="sport", labeled_at=utcnow(), pending_since=utcnow())
        )
        db.session.add(
            Annotation(
                project_id=project.id,
                item_id=ids[9],
                annotator="user:9",
                label="sport",
                reason="audit",
            )
        )
    db.session.add(Skip(annotator="user:1", item_id=ids[3]))
    if setup == "skipped head":
        # The expert skipped the ten best items, and someone else holds the best but one.
        best = db.session.scalars(select(Item.id).order_by(Item.score.desc()).limit(12)).all()
        db.session.add_all(Skip(annotator="user:1", item_id=i) for i in best[:10] if i != ids[3])
        db.session.execute(
            update(Item)
            .where(Item.id == best[1])
            .values(lease_owner="user:2", lease_until=utcnow() + timedelta(minutes=5))
        )
        db.session.commit()
        db.session.execute(delete(Skip).where(Skip.item_id == best[1]))
    db.session.commit()
    served = []
    plans = _plans(lambda: served.append(pool.next_item(project, "user:1")))
    assert [reason for _, reason in served] == reasons
    if setup == "cold picks":
        assert served[0][0].score_strategy == scoring.COLD_START, "a pick, not a random item"
    claims = [(s, p) for s, p in plans if s.startswith("UPDATE item")]
    assert claims, plans
    for statement, plan in claims:
        if "ORDER BY" not in statement:
            # One of the skip cursor's passed items, claimed by primary key.
            assert "pk_item" in plan or "INTEGER PRIMARY KEY" in plan, plan
            assert "ix_item_pool" not in plan, plan
            continue
        lane = [ix for order, ix in LANE_INDEX.items() if order in statement]
        assert len(lane) == 1, statement
        _assert_served_by_index(statement, plan, lane[0])
    if setup == "skipped head":
        assert any("item.score <=" in s for s, _ in claims), "the lane starts at the cursor"
    held = [(s, p) for s, p in plans if s.startswith("SELECT") and "lease_owner =" in s]
    assert len(held) == 1, plans
    _assert_served_by_index(*held[0], "ix_item_lease_held")

    # A reload: the held-lease check finds the item through the partial index, nothing else.
    again = []
    plans = _plans(lambda: again.append(pool.next_item(project, "user:1")))
    assert again[0][0].id == served[0][0].id
    assert not [s for s, _ in plans if s.startswith("UPDATE item") and "ORDER BY" in s]
    held = [(s, p) for s, p in plans if s.startswith("SELECT") and "lease_owner =" in s]
    _assert_served_by_index(*held[0], "ix_item_lease_held")


def _champion(project) -> dict:
    """Put a champion in place; return the score key its scores carry (see current_scores)."""
    champion = ModelVersion(
        project_id=project.id,
        version=1,
        status="champion",
        template=project.template,
        labels=project.labels,
        artifact=b"",
        snapshot_digest="0" * 64,
        train_size=0,
    )
    db.session.add(champion)
    db.session.commit()
    return {"scored_by": champion.id, "score_strategy": "margin"}


def test_an_expert_who_skips_the_head_still_gets_the_lane_in_score_order(app):
    project = make_project(settings={"audit_share": 0.0})
    key = _champion(project)
    ids = make_items(project, 40)
    for rank, item_id in enumerate(ids):
        db.session.execute(update(Item).where(Item.id == item_id).values(score=-rank / 100, **key))
    # Another expert is on the best item.
    db.session.execute(
        update(Item)
        .where(Item.id == ids[0])
        .values(lease_owner="user:2", lease_until=utcnow() + timedelta(minutes=5))
    )
    db.session.commit()

    def next_then_skip() -> int:
        item, reason = pool.next_item(project, "user:1")
        assert reason == "uncertain"
        pool.skip(project, item, "user:1")
        db.session.commit()
        return item.id

    assert [next_then_skip() for _ in range(10)] == ids[1:11]
    cursor = db.session.get(SkipCursor, (project.id, "user:1"))
    assert (cursor.item_id, cursor.passed) == (ids[10], [ids[0]]), "the skipped head is jumped"

    # The other expert walks away: their lease runs out, and the best item comes first.
    db.session.execute(
        update(Item).where(Item.id == ids[0]).values(lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert next_then_skip() == ids[0]
    # Production traffic adds an item the model is least sure of.
    new = make_items(project, 1, start=100)[0]
    db.session.execute(update(Item).where(Item.id == new).values(score=1.0, **key))
    db.session.commit()
    assert next_then_skip() == new
    # A rescore reorders the pool.
    db.session.add(Task(project_id=project.id, name="rescore", status="succeeded"))
    db.session.execute(update(Item).where(Item.id == ids[30]).values(score=0.5))
    db.session.commit()
    assert next_then_skip() == ids[30]
    # A score written without a rescore reaches the expert once the cursor is TTL old.
    db.session.execute(update(Item).where(Item.id == ids[35]).values(score=0.9))
    db.session.execute(
        update(SkipCursor).values(checked_at=utcnow() - skip_cursor.TTL - timedelta(seconds=1))
    )
    db.session.commit()
    assert next_then_skip() == ids[35]
    # Another expert, who skipped nothing, starts at the top.
    item, _ = pool.next_item(project, "user:3")
    assert item.id == new


def _race(app, project_id: int, experts: int) -> list[tuple[int, str]]:
    """`experts` threads, each with its own session, ask for the next item at the same moment."""
    barrier = threading.Barrier(experts)
    got: list = [None] * experts
    errors: list = []

    def expert(i: int) -> None:
        with app.app_context():
            try:
                project = db.session.get(Project, project_id)
                barrier.wait(timeout=30)
                item, reason = pool.next_item(project, f"user:{i}")
                got[i] = (item.id, reason)
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
    return got


def test_racing_experts_each_get_the_next_best_item_of_the_lane(app):
    project = make_project(settings={"audit_share": 0.0})
    key = _champion(project)
    ids = make_items(project, 60)
    # Scores fall with the id: the best items are the first ones imported.
    for rank, item_id in enumerate(ids):
        db.session.execute(update(Item).where(Item.id == item_id).values(score=-rank, **key))
    db.session.commit()
    experts = 8
    for round_ in range(3):
        got = _race(app, project.id, experts)
        served = [item_id for item_id, _ in got]
        assert [reason for _, reason in got] == ["uncertain"] * experts, got
        assert len(set(served)) == experts, "no item is leased twice"
        best = ids[round_ * experts : (round_ + 1) * experts]
        assert sorted(served) == best, "each expert got the next-best item of the lane"
        for i, item_id in enumerate(served):
            pool.annotate(project, db.session.get(Item, item_id), f"user:{i}", "tech")
        db.session.expire_all()


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


def _unlabeled(project) -> list[int]:
    return db.session.scalars(
        select(Item.id).where(Item.project_id == project.id, Item.label.is_(None)).order_by(Item.id)
    ).all()
