"""In Chromium, three people at once: two experts label the same project by keyboard (the
second gets the first's items as blind second opinions), a disagreement goes to review, a
reviewer resolves it on the review page, and the next retrain trains on the resolved label."""

import json
import zlib

from sqlalchemy import func, select

from tests.factories import make_items, make_project, make_user, queue_retrain
from tests.web.test_browser import ITEM, log_in, open_annotate, shown_item, wait_for_next
from webapp.extensions import db
from webapp.models import Annotation, Item, RetrainRun


def test_two_experts_a_disagreement_and_a_reviewer(app, browser, live_server, run_jobs):
    project = make_project(settings={"annotations_per_item": 2, "resolution": "majority"})
    make_items(project, 12)
    tabs = {}
    for role, email in (
        ("annotator", "ann@x.org"),
        ("annotator", "bob@x.org"),
        ("reviewer", "rev@x.org"),
    ):
        context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        tabs[email] = context.new_page()
        log_in(tabs[email], make_user(email=email, role=role))
    ann, bob, rev = tabs["ann@x.org"], tabs["bob@x.org"], tabs["rev@x.org"]

    # Ann and Bob open the page at the same time: two different items.
    first_ann, first_bob = open_annotate(ann), open_annotate(bob)
    assert first_ann != first_bob

    # Ann answers three items with "3" (tech).
    answered = []
    current = first_ann
    for _ in range(3):
        answered.append(current)
        ann.keyboard.press("3")
        wait_for_next(ann, current)
        current = shown_item(ann)
    assert first_bob not in answered

    # Bob answers his item, then gets Ann's items, oldest first, as blind second opinions.
    bob.keyboard.press("1")
    wait_for_next(bob, first_bob)
    seconds = []
    for key in ("3", "3", "1"):  # agrees twice, then disagrees
        shown = shown_item(bob)
        seconds.append(shown)
        assert "second opinion" in bob.inner_text(f"{ITEM} .reason-line")
        assert "Currently labeled" not in bob.inner_text(ITEM)
        bob.keyboard.press(key)
        wait_for_next(bob, shown)
    assert seconds == answered
    # Once answered, Ann's answers show in Bob's side list.
    bob.wait_for_function("() => document.querySelectorAll('#history .others').length === 3")

    # Each answer is stored once per expert; the disagreement waits for a reviewer.
    db.session.expire_all()
    per_expert = db.session.execute(
        select(Annotation.item_id, func.count()).group_by(Annotation.item_id, Annotation.annotator)
    ).all()
    assert all(n == 1 for _, n in per_expert)
    disputed = db.session.get(Item, int(answered[2]))
    assert disputed.review_reason == "review"

    # The reviewer sees both answers and decides.
    rev.goto("/projects/news/review")
    assert rev.get_attribute("#case", "data-item-id") == answered[2]
    assert "tech" in rev.inner_text("#answers") and "sport" in rev.inner_text("#answers")
    rev.fill("input[name=reason]", "a product launch: tech")
    rev.click('#case button[value="tech"]')
    rev.wait_for_selector("#review-empty")

    db.session.expire_all()
    assert db.session.get(Item, int(answered[2])).label == "tech"
    run = queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    snapshot = json.loads(zlib.decompress(db.session.get(RetrainRun, run.id).snapshot))
    assert [int(answered[2]), "tech"] in snapshot
    for page in tabs.values():
        page.context.close()
