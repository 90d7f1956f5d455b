"""The labeling page: an item with its reason, labels by button or key, skip, and htmx swaps."""

import re
from datetime import timedelta

from sqlalchemy import select

from tests.factories import make_champion, make_items, make_project, true_label
from tests.web.html import table, text
from webapp.extensions import db
from webapp.models import Annotation, Feedback, Item, Prediction, Skip, utcnow


def item_id_of(html: str) -> int | None:
    """The id of the item shown in the #item section, or None in the empty-queue state."""
    match = re.search(r'<section id="item" class="item-pane" data-item-id="(\d+)"', html)
    return int(match.group(1)) if match else None


def keyed_buttons(html: str) -> list[tuple[str, str]]:
    """(key, label) of each label button, in order."""
    return re.findall(r'value="([^"]+)"[^>]*?data-key="([^"]+)"', html)


def test_page_shows_an_item_with_reason_and_one_button_per_label(client, login):
    project = make_project()
    make_items(project, 3)
    user = login()
    response = client.get("/projects/news/annotate")
    assert response.status_code == 200
    page = response.text
    assert page.startswith("<!doctype html>")
    item = db.session.get(Item, item_id_of(page))
    assert item.lease_owner == user.annotator
    assert item.data["text"] in page
    assert '<span class="badge reason-cold-start" title="No model exists yet' in page
    assert keyed_buttons(page) == [("sport", "1"), ("politics", "2"), ("tech", "3")]
    assert 'data-key="s"' in page and "Skip" in page
    assert "No model yet: no suggestion" in page
    assert "0 labeled this session" in text(page)
    # The keyboard script and htmx are on the page; a reload serves the same leased item.
    assert 'addEventListener("keydown"' in page
    assert item_id_of(client.get("/projects/news/annotate").text) == item.id


def test_label_with_htmx_returns_the_next_item_partial_and_records_it(client, login, hx):
    project = make_project()
    make_items(project, 3)
    user = login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    response = hx("POST", f"/projects/news/annotate/{first}", data={"label": "politics"})
    assert response.status_code == 200
    partial = response.text
    assert partial.startswith('<section id="item"')
    assert "<html" not in partial and "<header" in partial
    second = item_id_of(partial)
    assert second not in (None, first)
    assert f"Saved #{first} as politics." in text(partial)
    assert "1 labeled this session" in text(partial)
    annotation = db.session.scalar(select(Annotation))
    assert (annotation.item_id, annotation.label, annotation.annotator) == (
        first,
        "politics",
        user.annotator,
    )
    assert annotation.reason == "cold-start"
    assert db.session.get(Item, first).label == "politics"
    assert db.session.get(Item, second).lease_owner == user.annotator


def test_label_without_javascript_redirects_back_to_the_page(client, login, auth):
    project = make_project()
    make_items(project, 3)
    login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    response = client.post(
        f"/projects/news/annotate/{first}", data={"label": "tech", "csrf_token": auth.csrf()}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/projects/news/annotate"
    page = client.get("/projects/news/annotate").text
    assert f"Saved #{first} as tech." in text(page)
    assert item_id_of(page) != first
    # Sending the same form again (a double submit, or the back button) labels nothing twice.
    client.post(
        f"/projects/news/annotate/{first}", data={"label": "tech", "csrf_token": auth.csrf()}
    )
    assert db.session.query(Annotation).filter_by(item_id=first).count() == 1


def test_unknown_label_rerenders_the_same_item_with_the_error(client, login, hx):
    project = make_project()
    make_items(project, 3)
    user = login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    response = hx("POST", f"/projects/news/annotate/{first}", data={"label": "weather"})
    assert response.status_code == 422
    assert response.text.startswith('<section id="item"')
    assert item_id_of(response.text) == first
    assert "“weather” is not a label of this project" in text(response.text)
    assert db.session.query(Annotation).count() == 0
    item = db.session.get(Item, first)
    assert item.label is None and item.lease_owner == user.annotator
    empty = hx("POST", f"/projects/news/annotate/{first}", data={})
    assert empty.status_code == 422
    assert "Pick a label" in empty.text
    assert db.session.query(Annotation).count() == 0


def test_skip_hides_the_item_from_that_user_only(client, login, hx, auth):
    project = make_project()
    make_items(project, 3)
    user = login()
    skipped = item_id_of(client.get("/projects/news/annotate").text)
    response = hx("POST", f"/projects/news/annotate/{skipped}/skip")
    assert response.status_code == 200
    assert f"Skipped #{skipped}" in text(response.text)
    assert db.session.get(Skip, (user.annotator, skipped)) is not None
    assert db.session.get(Item, skipped).lease_owner is None
    # Label everything else: the skipped item never comes back, and the queue ends.
    shown = item_id_of(response.text)
    seen = []
    while shown is not None:
        assert shown != skipped
        seen.append(shown)
        partial = hx("POST", f"/projects/news/annotate/{shown}", data={"label": "sport"}).text
        shown = item_id_of(partial)
    assert len(seen) == 2
    assert "All caught up" in partial
    assert db.session.get(Item, skipped).label is None
    # Another expert still gets it.
    client.post("/logout", data={"csrf_token": auth.csrf()})
    login(email="other@example.com")
    assert item_id_of(client.get("/projects/news/annotate").text) == skipped


def test_empty_queue_shows_a_friendly_message(client, login, hx):
    make_project()
    login()
    page = client.get("/projects/news/annotate")
    assert page.status_code == 200
    assert "All caught up" in page.text
    assert '<button type="submit" name="label"' not in page.text  # no label buttons
    assert hx("GET", "/projects/news/annotate").text.startswith('<section id="item"')


def test_an_item_taken_over_by_someone_else_is_not_labeled(client, login, hx):
    project = make_project()
    make_items(project, 3)
    login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    # The lease ran out and another expert got the item.
    item = db.session.get(Item, first)
    item.lease_owner, item.lease_until = "user:999", utcnow() + timedelta(minutes=5)
    db.session.commit()
    response = hx("POST", f"/projects/news/annotate/{first}", data={"label": "sport"})
    assert response.status_code == 200
    assert f"Item #{first} was passed to someone else" in text(response.text)
    assert item_id_of(response.text) not in (None, first)
    assert db.session.query(Annotation).count() == 0
    assert db.session.get(Item, first).lease_owner == "user:999"


def test_unknown_item_or_project_is_a_404(client, login, auth):
    make_project()
    other = make_project(slug="other")
    (foreign,) = make_items(other, 1)
    login()
    client.get("/projects/news/annotate")
    form = {"label": "sport", "csrf_token": auth.csrf()}
    assert client.post(f"/projects/news/annotate/{foreign}", data=form).status_code == 404
    assert client.post("/projects/news/annotate/999999", data=form).status_code == 404
    assert client.get("/projects/nope/annotate").status_code == 404
    assert db.session.query(Annotation).count() == 0


def test_champion_suggestion_and_confidence_are_shown(client, login):
    project = make_project()
    make_champion(project)
    login()
    page = client.get("/projects/news/annotate").text
    item = db.session.get(Item, item_id_of(page))
    match = re.search(r"Model v1 suggests <strong>(\w+)</strong>", page)
    assert match, page
    assert match.group(1) == true_label(project, item)
    assert re.search(r"\d+%", text(page))
    assert f'value="{match.group(1)}" class="label-button suggested"' in page
    assert re.search(r'class="badge reason-(uncertain|audit)"', page)


def test_disputed_item_comes_first_with_the_feedback(client, login):
    project = make_project()
    ids = make_items(project, 3)
    item = db.session.get(Item, ids[2])
    prediction = Prediction(project_id=project.id, item_id=item.id, label="tech")
    db.session.add(prediction)
    db.session.flush()
    db.session.add(
        Feedback(prediction_id=prediction.id, project_id=project.id, correct=False, label="sport")
    )
    item.disputed_at = utcnow()
    db.session.commit()
    login()
    page = client.get("/projects/news/annotate").text
    assert item_id_of(page) == item.id
    assert 'class="badge reason-disputed"' in page
    assert "Production predicted tech; feedback says that was wrong and suggests sport." in text(
        page
    )


def test_text_keeps_its_paragraphs(client, login):
    project = make_project()
    db.session.add(
        Item(project_id=project.id, data={"text": "Title line\n\nFirst para.\n\nSecond para."})
    )
    db.session.commit()
    login()
    page = client.get("/projects/news/annotate").text
    assert "<p>Title line</p><p>First para.</p><p>Second para.</p>" in page


def test_tabular_item_is_a_feature_table(client, login):
    project = make_project(slug="tab", kind="tabular", features=["x1", "x2"])
    db.session.add(Item(project_id=project.id, data={"features": {"x1": 1.5, "x2": -2}}))
    db.session.commit()
    login()
    page = client.get("/projects/tab/annotate").text
    assert table(page, "features") == [["x1", "1.5"], ["x2", "-2"]]
    assert keyed_buttons(page) == [("a", "1"), ("b", "2")]


def test_more_than_ten_labels_get_keys_up_to_zero_and_a_filter(client, login):
    labels = [f"class-{i:02d}" for i in range(12)]
    project = make_project(labels=labels)
    db.session.add(Item(project_id=project.id, data={"text": "anything"}))
    db.session.commit()
    login()
    page = client.get("/projects/news/annotate").text
    keys = [key for _label, key in keyed_buttons(page)]
    assert keys == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
    assert page.count('class="label-button') == 12
    assert 'class="label-filter"' in page
