"""In Chromium: an expert labels ten items with the keyboard only, undoes one, brings a skip
back, changes one answer from the side list, and every answer is stored exactly once.

`CORRIGO_SCREENSHOT=docs/labeling.png` saves the labeling page, after the ten answers, there.
"""

import os
import time

from sqlalchemy import select

from tests.factories import make_champion, make_items, make_project, make_user
from tests.web.test_browser import ITEM, log_in, open_annotate, shown_item, wait_for_next
from webapp import pool
from webapp.extensions import db
from webapp.models import Annotation, Item, Project


def answers_by(annotator: str) -> dict[int, list[str]]:
    """item id -> the labels this expert has stored on it."""
    db.session.expire_all()
    stored: dict[int, list[str]] = {}
    for a in db.session.scalars(
        select(Annotation).where(Annotation.annotator == annotator).order_by(Annotation.id)
    ):
        stored.setdefault(a.item_id, []).append(a.label)
    return stored


def side_list_items(page) -> list[int]:
    """The item ids of the side list's answers, newest first."""
    return [
        int(i)
        for i in page.eval_on_selector_all(
            "#history li.answer", "els => els.map(e => e.dataset.itemId)"
        )
    ]


def test_an_expert_labels_undoes_and_edits_with_the_keyboard(app, page):
    project = make_project()
    make_champion(project, n_labeled=60, n_pool=30)
    user = make_user(role="annotator")
    log_in(page, user)
    current = open_annotate(page)
    # Every label's probability is on screen, the suggestion's first.
    bars = page.locator(f"{ITEM} .probabilities li")
    assert bars.count() == len(project.labels)

    expected: dict[int, str] = {}
    for i in range(10):
        if i % 3 == 0:
            key = "Enter"  # accept the model's suggestion
            label = page.get_attribute(f"{ITEM} .label-button.suggested", "value")
        else:
            key = str(1 + i % 3)
            label = project.labels[int(key) - 1]
        expected[int(current)] = label
        page.keyboard.press(key)
        wait_for_next(page, current)
        current = shown_item(page)
    page.wait_for_function("() => document.querySelectorAll('#history li.answer').length === 10")
    assert side_list_items(page)[0] == list(expected)[-1]
    assert "10 answered today" in page.locator("#history .progress-line").inner_text()
    shot = os.environ.get("CORRIGO_SCREENSHOT")
    if shot:  # the README's picture of the labeling page
        page.screenshot(path=shot, full_page=True)

    # u takes the last answer back: that item is on screen again, and its answer is gone.
    last = list(expected)[-1]
    page.keyboard.press("u")
    wait_for_next(page, current)
    assert shown_item(page) == str(last)
    assert "Undid your answer" in page.locator(f"{ITEM} .notice").inner_text()
    assert last not in answers_by(user.annotator)
    # Answered again with another key: stored once, with the new label.
    expected[last] = project.labels[0]
    page.keyboard.press("1")
    wait_for_next(page, str(last))
    current = shown_item(page)

    # s skips, Backspace undoes the skip: the same item comes back.
    page.keyboard.press("s")
    wait_for_next(page, current)
    skipped_to = shown_item(page)
    page.keyboard.press("Backspace")
    wait_for_next(page, skipped_to)
    assert shown_item(page) == current
    assert "Undid your skip" in page.locator(f"{ITEM} .notice").inner_text()

    # Change the third answer from the side list: in place, no second row.
    target = list(expected)[2]
    new_label = next(label for label in project.labels if label != expected[target])
    page.select_option(f'#history li.answer[data-item-id="{target}"] select', new_label)
    page.wait_for_function(
        "text => document.querySelector('#history .notice')?.textContent.includes(text)",
        arg=f"#{target} is now {new_label}.",
    )
    expected[target] = new_label

    # ? lists the shortcuts, Escape closes the list.
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#shortcuts").is_visible()

    stored = answers_by(user.annotator)
    assert stored == {item: [label] for item, label in expected.items()}
    for item_id, label in expected.items():
        assert db.session.get(Item, item_id).label == label


def test_a_cut_network_loses_no_answer_and_stores_none_twice(app, page):
    project = make_project()
    make_items(project, 3)
    user = make_user(role="annotator")
    log_in(page, user)
    first = open_annotate(page)

    page.context.set_offline(True)
    page.keyboard.press("2")
    page.wait_for_selector("#notices .flash-error")
    assert "Could not reach the server; nothing was saved" in page.inner_text("#notices")
    assert shown_item(page) == first  # the item stays on screen to answer again
    assert answers_by(user.annotator) == {}

    page.context.set_offline(False)
    page.wait_for_selector("body[data-keys=ready]")
    page.keyboard.press("2")
    wait_for_next(page, first)
    assert answers_by(user.annotator) == {int(first): [project.labels[1]]}


def test_an_expired_lease_taken_by_another_expert_stores_nothing_and_says_so(app, page):
    project = make_project()
    make_items(project, 1)
    user = make_user(role="annotator")
    app.config["LEASE_SECONDS"] = 1
    log_in(page, user)
    only = open_annotate(page)
    time.sleep(1.5)  # the lease runs out for real
    # Another expert asks for work and gets the one item, now free.
    taken = pool.next_item(db.session.get(Project, project.id), "other@example.org")
    assert taken is not None and str(taken[0].id) == only

    page.keyboard.press("1")
    wait_for_next(page, only)  # the empty queue: nothing else to label
    notice = page.inner_text(f"{ITEM} .notice")
    assert "was passed to someone else after your lease ran out" in notice
    assert "not saved" in notice
    assert answers_by(user.annotator) == {}


def test_an_answer_given_after_someone_else_answered_is_kept_and_says_so(app, page):
    project = make_project()
    make_items(project, 2)
    user = make_user(role="annotator")
    app.config["LEASE_SECONDS"] = 1
    log_in(page, user)
    shown = open_annotate(page)
    time.sleep(1.5)
    # The lease ran out and another expert answered the item meanwhile.
    item = db.session.get(Item, int(shown))
    pool.annotate(db.session.get(Project, project.id), item, "other@example.org", "tech")

    page.keyboard.press("1")
    wait_for_next(page, shown)
    notice = page.inner_text(f"{ITEM} .notice")
    assert "other@example.org had answered it (tech)" in notice
    assert "both answers are kept" in notice
    assert answers_by(user.annotator) == {int(shown): [project.labels[0]]}
    assert answers_by("other@example.org") == {int(shown): ["tech"]}
