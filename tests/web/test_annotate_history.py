"""The expert's workspace: undo, the side list of answers (editable in place) and skips (can be
brought back), the progress line, every label's probability, and the shortcuts list."""

import re

import numpy as np
from sqlalchemy import func, select

from tests.factories import make_champion, make_items, make_project, queue_retrain
from tests.web.html import text
from tests.web.test_annotate import item_id_of
from webapp import pool, training
from webapp.extensions import db
from webapp.models import Annotation, Item, ProjectCounter, Skip


def answers_of(item_id: int) -> list[tuple[str, str]]:
    """(annotator, label) of every answer stored for the item."""
    return [
        (a.annotator, a.label)
        for a in db.session.scalars(
            select(Annotation).where(Annotation.item_id == item_id).order_by(Annotation.id)
        )
    ]


def label_events(project) -> int:
    return db.session.scalar(
        select(func.sum(ProjectCounter.label_events)).where(ProjectCounter.project_id == project.id)
    )


def test_undo_takes_the_answer_back_and_shows_the_item_again(client, login, hx):
    project = make_project()
    make_items(project, 4)
    user = login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    response = hx("POST", f"/projects/news/annotate/{first}", data={"label": "tech"})
    assert response.headers["HX-Trigger-After-Settle"] == "history-changed"
    second = item_id_of(response.text)

    undone = hx("POST", "/projects/news/annotate/undo")
    assert undone.status_code == 200
    assert item_id_of(undone.text) == first
    assert f"Undid your answer tech on #{first}: answer it again." in text(undone.text)
    assert "0 labeled this session" in text(undone.text)
    item = db.session.get(Item, first)
    db.session.refresh(item)
    assert item.label is None and item.lease_owner == user.annotator
    assert item.lease_reason == "cold-start"  # the lane it was answered under, kept
    assert db.session.get(Item, second).lease_owner is None  # back to the queue
    assert answers_of(first) == []

    again = hx("POST", f"/projects/news/annotate/{first}", data={"label": "sport"})
    assert item_id_of(again.text) != first
    # Answered, undone, answered again: stored exactly once, under its lane.
    assert answers_of(first) == [(user.annotator, "sport")]
    assert db.session.scalar(select(Annotation.reason).where(Annotation.item_id == first)) == (
        "cold-start"
    )


def test_undo_of_a_skip_brings_the_item_back(client, login, hx):
    project = make_project()
    make_items(project, 3)
    login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    hx("POST", f"/projects/news/annotate/{first}/skip")
    undone = hx("POST", "/projects/news/annotate/undo")
    assert item_id_of(undone.text) == first
    assert f"Undid your skip of #{first}" in text(undone.text)
    assert db.session.scalar(select(func.count()).select_from(Skip)) == 0


def test_undo_with_nothing_to_undo_says_so(client, login, hx):
    project = make_project()
    make_items(project, 2)
    login()
    shown = item_id_of(client.get("/projects/news/annotate").text)
    response = hx("POST", "/projects/news/annotate/undo")
    assert response.status_code == 200
    assert "Nothing to undo" in text(response.text)
    assert item_id_of(response.text) == shown


def test_undo_does_not_take_back_what_someone_answered_after_you(client, login, hx, auth):
    project = make_project()
    make_items(project, 2)
    login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    hx("POST", f"/projects/news/annotate/{first}", data={"label": "tech"})
    # A reviewer corrects it through the API's path (a second answer on the item).
    pool.annotate(project, db.session.get(Item, first), "reviewer@example.org", "sport")
    response = hx("POST", "/projects/news/annotate/undo")
    assert "answered again by reviewer@example.org" in text(response.text)
    assert db.session.get(Item, first).label == "sport"
    assert len(answers_of(first)) == 2


def test_an_answer_is_changed_in_place_from_the_side_list(client, login, hx):
    project = make_project()
    make_items(project, 3)
    user = login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    hx("POST", f"/projects/news/annotate/{first}", data={"label": "tech"})
    events = label_events(project)

    side = hx("GET", "/projects/news/annotate/history")
    assert side.text.startswith('<aside id="history"')
    assert f'data-item-id="{first}"' in side.text
    assert "1 answered today" in text(side.text)

    changed = hx("POST", f"/projects/news/annotate/history/{first}", data={"label": "politics"})
    assert changed.status_code == 200
    assert f"#{first} is now politics." in text(changed.text)
    assert answers_of(first) == [(user.annotator, "politics")]  # one row, changed in place
    assert db.session.get(Item, first).label == "politics"
    assert label_events(project) == events + 1  # a label change counts towards retraining
    assert "edited" in text(changed.text)

    bad = hx("POST", f"/projects/news/annotate/history/{first}", data={"label": "weather"})
    assert bad.status_code == 422
    assert "is not a label of this project" in text(bad.text)
    assert answers_of(first) == [(user.annotator, "politics")]

    other = make_items(project, 1, start=10)[0]
    refused = hx("POST", f"/projects/news/annotate/history/{other}", data={"label": "tech"})
    assert refused.status_code == 409
    assert f"You have not answered item #{other}" in text(refused.text)


def test_a_skipped_item_is_brought_back_from_the_side_list(client, login, hx):
    project = make_project()
    make_items(project, 3)
    login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    hx("POST", f"/projects/news/annotate/{first}/skip")
    side = hx("GET", "/projects/news/annotate/history")
    assert "Skipped (1)" in text(side.text)
    back = hx("POST", f"/projects/news/annotate/skipped/{first}")
    assert item_id_of(back.text) == first
    assert f"#{first} is back." in text(back.text)
    gone = hx("POST", f"/projects/news/annotate/skipped/{first}")
    assert f"You have not skipped item #{first}" in text(gone.text)


def test_every_label_has_its_probability_most_likely_first(client, login):
    project = make_project()
    make_champion(project)
    login()
    page = client.get("/projects/news/annotate").text
    assert '<ol class="probabilities"' in page
    listed = page.split('<ol class="probabilities"')[1].split("</ol>")[0]
    rows = re.findall(r'prob-label">([^<]+)<.*?prob-value">(\d+)%', listed)
    assert sorted(label for label, _ in rows) == sorted(project.labels)
    shares = [int(share) for _, share in rows]
    assert shares == sorted(shares, reverse=True) and 98 <= sum(shares) <= 102
    assert "Enter accepts" in text(page)
    # The shortcuts list names every key.
    shortcuts = text(page.split('<dialog id="shortcuts"')[1].split("</dialog>")[0])
    for key in ("Enter", "s", "u or Backspace", "?"):
        assert key in shortcuts


def test_the_page_without_javascript_shows_the_side_list(client, login, auth):
    project = make_project()
    make_items(project, 3)
    login()
    first = item_id_of(client.get("/projects/news/annotate").text)
    client.post(
        f"/projects/news/annotate/{first}", data={"label": "tech", "csrf_token": auth.csrf()}
    )
    page = client.get("/projects/news/annotate").text
    assert '<aside id="history"' in page and f'data-item-id="{first}"' in page
    response = client.post("/projects/news/annotate/undo", data={"csrf_token": auth.csrf()})
    assert response.status_code == 302
    assert item_id_of(client.get("/projects/news/annotate").text) == first


def test_the_words_behind_the_suggestion_are_highlighted(client, login):
    project = make_project()
    make_champion(project)
    login()
    page = client.get("/projects/news/annotate").text
    suggested = re.search(r"suggests <strong>([^<]+)</strong>", page).group(1)
    marks = re.findall(r'<mark class="term" style="--w: ([0-9.]+)"[^>]*>([^<]+)</mark>', page)
    assert marks, "no word is highlighted"
    assert max(float(w) for w, _ in marks) == 1.0
    assert f'title="Pushed the model towards {suggested}"' in page
    assert 'data-key="h"' in page  # the toggle, by key or click


def test_a_tabular_items_rare_values_are_marked(client, login):
    project = make_project(slug="tab", kind="tabular", features=["x1", "x2"])
    rng = np.random.default_rng(0)
    rows = [
        {"external_id": f"r{i}", "data": {"features": {"x1": float(x1), "x2": float(x2)}}}
        for i, (x1, x2) in enumerate(rng.normal(size=(200, 2)))
    ]
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    labels = {
        i: ("a" if row["data"]["features"]["x1"] > 0 else "b")
        for i, row in zip(ids, rows, strict=True)
    }
    pool.label_unlabeled(project, labels.items(), "seed")
    training.run_retrain(queue_retrain(project).id)
    assert training.champion_version(project.id) is not None
    db.session.add(Item(project_id=project.id, data={"features": {"x1": 9.0, "x2": 0.1}}))
    db.session.commit()
    login()
    page = client.get("/projects/tab/annotate").text
    rows = re.findall(r"<tr( class=\"unusual\")?><th scope=\"row\">(x\d)</th>", page)
    assert rows == [(' class="unusual"', "x1"), ("", "x2")]
    assert "highest 0.0%" in text(page)


def test_filters_are_kept_per_expert_and_say_what_they_do(client, login):
    project = make_project()
    make_items(project, 4)
    login()
    held = item_id_of(client.get("/projects/news/annotate").text)
    bad = client.get("/projects/news/annotate?lane=loudest", follow_redirects=True)
    assert "“loudest” is not a lane" in text(bad.text)
    assert item_id_of(bad.text) == held  # a refused filter changes nothing

    page = client.get("/projects/news/annotate?lane=disputed", follow_redirects=True).text
    # No item is disputed: nothing for this filter, and the page says how to get out of it.
    assert "Nothing is left for your filter (lane disputed)" in text(page)
    assert "Audits still come at their share" in text(page)
    assert db.session.get(Item, held).lease_owner is None  # given back to the queue
    assert 'option value="disputed" selected' in page

    cleared = client.get("/projects/news/annotate?lane=all&label=", follow_redirects=True).text
    assert item_id_of(cleared) is not None
    assert "Audits still come at their share" not in text(cleared)
