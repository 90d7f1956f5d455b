"""A real browser labels by keyboard: htmx swaps items in place, keys act once, nothing is lost."""

from sqlalchemy import select

from tests.factories import make_items, make_project, make_user
from tests.web.conftest import PASSWORD
from webapp.extensions import db
from webapp.models import Annotation, Item, Skip

ITEM = "#item"
# Two key presses in one task: the second lands while the first request is in flight.
DOUBLE_PRESS = """key => {
  for (let i = 0; i < 2; i++) {
    document.body.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true}));
  }
}"""


def log_in(page, user) -> None:
    """Log in through the form."""
    page.goto("/login")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")


def shown_item(page) -> str | None:
    """The id of the item on screen (None in the empty-queue state)."""
    return page.get_attribute(ITEM, "data-item-id")


def wait_for_next(page, previous: str | None) -> None:
    """Wait until htmx swapped a different #item in and the keys answer again."""
    page.wait_for_function(
        """prev => document.body.dataset.keys === "ready"
          && document.querySelector("#item")?.dataset.itemId !== prev""",
        arg=previous,
    )


def open_annotate(page) -> str:
    """Open the labeling page, wait until its keys answer, and return the item shown."""
    page.goto("/projects/news/annotate")
    page.wait_for_selector("body[data-keys=ready]")
    return shown_item(page)


def test_keyboard_labeling_swaps_items_without_reloading(app, page):
    project = make_project()
    make_items(project, 3)
    user = make_user(role="annotator")

    log_in(page, user)
    first = open_annotate(page)
    url = page.url
    page.evaluate("window.__marker = 1")
    assert first is not None
    assert page.locator(f"{ITEM} .badge").inner_text() == "cold-start"

    # "2" is politics; pressed twice in a row it still labels one item once.
    page.evaluate(DOUBLE_PRESS, "2")
    wait_for_next(page, first)
    second = shown_item(page)
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    assert page.url == url
    assert f"Saved #{first} as politics." in page.locator(f"{ITEM} .notice").inner_text()
    assert "1 labeled this session" in page.locator(f"{ITEM} .session-count").inner_text()
    db.session.expire_all()
    annotations = db.session.scalars(select(Annotation)).all()
    assert [(a.item_id, a.label, a.annotator) for a in annotations] == [
        (int(first), "politics", user.annotator)
    ]

    # "s" skips.
    page.keyboard.press("s")
    wait_for_next(page, second)
    third = shown_item(page)
    assert page.evaluate("window.__marker") == 1
    db.session.expire_all()
    assert db.session.get(Skip, (user.annotator, int(second))) is not None

    page.keyboard.press("1")
    page.wait_for_selector(f"{ITEM} .done")
    assert page.locator(f"{ITEM} .done h2").inner_text() == "All caught up"
    assert page.evaluate("window.__marker") == 1
    db.session.expire_all()
    labels = {a.item_id: a.label for a in db.session.scalars(select(Annotation))}
    assert labels == {int(first): "politics", int(third): "sport"}


def test_filter_picks_among_many_labels_and_typing_never_labels(app, page):
    labels = [f"class-{i:02d}" for i in range(12)]
    project = make_project(labels=labels)
    db.session.add_all(Item(project_id=project.id, data={"text": f"item {i}"}) for i in range(2))
    db.session.commit()
    log_in(page, make_user())
    first = open_annotate(page)

    page.keyboard.press("/")
    page.keyboard.type("class-11")
    # Digits typed into the filter went to the filter, not to the number-key shortcuts.
    assert page.locator(f"{ITEM} .label-button:visible").all_inner_texts() == ["class-11"]
    page.keyboard.press("Enter")
    wait_for_next(page, first)
    db.session.expire_all()
    assert [(a.item_id, a.label) for a in db.session.scalars(select(Annotation))] == [
        (int(first), "class-11")
    ]
    # The filter keeps the focus for the next item, and the 10th label answers to "0".
    assert page.evaluate("document.activeElement.className") == "label-filter"
    page.keyboard.press("Escape")
    page.keyboard.press("0")
    page.wait_for_selector(f"{ITEM} .done")
    db.session.expire_all()
    assert sorted(a.label for a in db.session.scalars(select(Annotation))) == [
        "class-09",
        "class-11",
    ]


def test_a_refused_label_shows_its_error_in_place(app, page):
    project = make_project()
    make_items(project, 2)
    log_in(page, make_user())
    first = open_annotate(page)
    page.evaluate("window.__marker = 1")
    # The project's labels changed after the page was drawn: the server answers 422.
    page.evaluate("document.querySelector('#item button[data-key=\"1\"]').value = 'weather'")
    page.keyboard.press("1")
    page.wait_for_selector(f"{ITEM} .error")
    assert "“weather” is not a label of this project" in page.inner_text(f"{ITEM} .error")
    assert shown_item(page) == first
    assert page.evaluate("window.__marker") == 1
    db.session.expire_all()
    assert db.session.scalars(select(Annotation)).all() == []
    # The swapped-in form works: the next key labels the same item.
    page.wait_for_selector("body[data-keys=ready]")
    page.keyboard.press("3")
    wait_for_next(page, first)
    db.session.expire_all()
    assert [(a.item_id, a.label) for a in db.session.scalars(select(Annotation))] == [
        (int(first), "tech")
    ]


def test_an_engineer_excludes_the_item_on_screen_and_typing_the_reason_labels_nothing(app, page):
    project = make_project()
    make_items(project, 3)
    engineer = make_user("engineer@example.com", role="engineer")

    log_in(page, engineer)
    first = open_annotate(page)
    page.click(f"{ITEM} details.exclude summary")
    # Digits and `s` are label and skip keys: inside the reason box they must only type.
    page.fill(f"{ITEM} .exclude-form input[name=reason]", "")
    page.type(f"{ITEM} .exclude-form input[name=reason]", "sensor 1 stuck")
    page.click(f"{ITEM} .exclude-button")
    wait_for_next(page, first)
    assert f"Excluded #{first}" in page.locator(f"{ITEM} .notice").inner_text()
    db.session.expire_all()
    item = db.session.get(Item, int(first))
    assert item.excluded_reason == "sensor 1 stuck" and item.label is None
    assert db.session.scalars(select(Annotation)).all() == []
    assert db.session.scalars(select(Skip)).all() == []
