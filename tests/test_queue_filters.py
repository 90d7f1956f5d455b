"""An expert narrows the queue to a lane or to a label the model suggests; audits keep their
share whatever the filter and are never picked by label."""

from collections import Counter

from sqlalchemy import update

from tests.factories import make_champion, make_items, make_project
from webapp import pool, serving
from webapp.extensions import db
from webapp.models import Item, utcnow


def predict_for(project):
    return lambda rows: serving.suggested_labels(project, rows)


def scored_pool(project, champion, n=40, start=1000):
    """n unlabeled items scored by the champion, best first in id order."""
    ids = make_items(project, n, start=start)
    for rank, item_id in enumerate(ids):
        db.session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(score=-rank, scored_by=champion.id, score_strategy="margin")
        )
    db.session.commit()
    return ids


def test_a_lane_filter_serves_that_lane_and_audits_at_their_share(app):
    project = make_project(settings={"audit_share": 0.25, "audit_early_until": 0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    ids = scored_pool(project, champion)
    disputed = ids[-8:]
    db.session.execute(update(Item).where(Item.id.in_(disputed)).values(disputed_at=utcnow()))
    db.session.commit()

    for n in range(8):
        item, reason = pool.next_item(project, f"user:{n}", lane="disputed")
        assert reason == "audit" or item.id in disputed
    # Without the filter the first call would take the disputed lane anyway; with
    # `uncertain`, the disputed items are left for others.
    for n in range(20):
        item, reason = pool.next_item(project, f"other:{n}", lane="uncertain")
        assert reason in ("uncertain", "audit") and item.id not in disputed

    # Over many calls, audits come at the share whatever the filter.
    reasons = Counter()
    for n in range(400):
        got = pool.next_item(project, f"many:{n}", lane="uncertain")
        reasons[got[1]] += 1
        pool.release(got[0], f"many:{n}")
        db.session.commit()
    assert 0.17 < reasons["audit"] / 400 < 0.33, reasons


def test_an_empty_lane_serves_nothing_rather_than_another_lane(app):
    project = make_project(settings={"audit_share": 0.0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    scored_pool(project, champion, n=5)
    assert pool.next_item(project, "user:1", lane="disputed") is None
    item, reason = pool.next_item(project, "user:1")  # no filter: the uncertain lane
    assert reason == "uncertain"


def test_the_audit_lane_alone(app):
    project = make_project(settings={"audit_share": 0.0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    scored_pool(project, champion, n=10)
    reasons = {pool.next_item(project, f"user:{n}", lane="audit")[1] for n in range(5)}
    assert reasons == {"audit"}


def test_a_suggested_label_filter_serves_items_the_champion_suggests_it_for(app):
    project = make_project(settings={"audit_share": 0.0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    ids = scored_pool(project, champion, n=30)
    for n in range(6):
        item, reason = pool.next_item(
            project, f"user:{n}", suggested="tech", predict=predict_for(project)
        )
        assert reason == "uncertain"
        assert serving.suggested_labels(project, [item.data]) == ["tech"]
        # The best-scored item the model suggests tech for, skipping the others.
        best = next(
            i
            for i in ids
            if db.session.get(Item, i).lease_owner in (None, f"user:{n}")
            and serving.suggested_labels(project, [db.session.get(Item, i).data]) == ["tech"]
        )
        assert item.id == best


def test_audits_are_not_picked_by_the_suggested_label(app):
    project = make_project(settings={"audit_share": 1.0, "audit_early_until": 0})
    champion = make_champion(project, n_labeled=150, n_pool=0)
    scored_pool(project, champion, n=60)
    guesses = Counter()
    for n in range(30):
        item, reason = pool.next_item(
            project, f"user:{n}", suggested="tech", predict=predict_for(project)
        )
        assert reason == "audit"
        guesses[serving.suggested_labels(project, [item.data])[0]] += 1
    assert len(guesses) > 1  # uniform random audits: not only items suggested as tech
