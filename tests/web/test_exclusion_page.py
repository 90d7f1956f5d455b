"""The labeling page's exclusion (engineers only) and the list of excluded items."""

from __future__ import annotations

import re

from tests.factories import make_items, make_project
from webapp.extensions import db
from webapp.models import Item


def _form_of(html: str) -> bool:
    """Whether the page offers the exclude form."""
    return 'class="exclude-form"' in html


def test_an_engineer_excludes_from_the_labeling_page_and_restores_from_the_list(client, login, hx):
    project = make_project()
    make_items(project, 2)
    login("engineer")
    page = client.get("/projects/news/annotate").text
    assert _form_of(page)
    item_id = int(re.search(r'data-item-id="(\d+)"', page).group(1))
    resp = hx("POST", f"/projects/news/annotate/{item_id}/exclude", data={"reason": "garbled"})
    assert resp.status_code == 200
    assert f"Excluded #{item_id}" in resp.text
    assert f'data-item-id="{item_id}"' not in resp.text, "the next item is shown"
    listing = client.get("/projects/news/excluded").text
    assert f"#{item_id}" in listing and "garbled" in listing
    assert "Excluded items" in client.get("/projects/news").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', listing).group(1)
    back = client.post(f"/projects/news/excluded/{item_id}/restore", data={"csrf_token": csrf})
    assert back.status_code == 302
    assert "No item of News is excluded" in client.get("/projects/news/excluded").text
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None
    assert project.id


def test_a_missing_reason_keeps_the_item_and_says_why(client, login, hx):
    project = make_project()
    item_id = make_items(project, 1)[0]
    login("engineer")
    client.get("/projects/news/annotate")
    resp = hx("POST", f"/projects/news/annotate/{item_id}/exclude", data={"reason": ""})
    assert resp.status_code == 422
    assert "Not excluded: the reason must say why" in resp.text
    assert f'data-item-id="{item_id}"' in resp.text and '<details class="exclude" open' in resp.text
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None
    assert project.id


def test_annotators_neither_see_nor_use_the_exclusion(client, login, hx):
    project = make_project()
    item_id = make_items(project, 1)[0]
    login("annotator")
    assert not _form_of(client.get("/projects/news/annotate").text)
    resp = hx("POST", f"/projects/news/annotate/{item_id}/exclude", data={"reason": "x"})
    assert resp.status_code == 403
    assert client.get("/projects/news/excluded").status_code == 403
    assert "Excluded items" not in client.get("/projects/news").text
    db.session.expire_all()
    assert db.session.get(Item, item_id).excluded_at is None
    assert project.id


def test_web_routes_answer_404_for_huge_or_foreign_item_ids(client, login, hx):
    make_project()
    other = make_project(slug="other")
    foreign = make_items(other, 1)[0]
    login("engineer")
    client.get("/projects/news/annotate")
    for item_id in (2**63, 2**64, foreign):
        resp = hx("POST", f"/projects/news/annotate/{item_id}/exclude", data={"reason": "x"})
        assert resp.status_code == 404, item_id
        resp = hx("POST", f"/projects/news/excluded/{item_id}/restore")
        assert resp.status_code == 404, item_id


def test_any_item_is_excluded_by_id_from_the_list_page(client, login, auth):
    project = make_project()
    ids = make_items(project, 2)
    labeled = db.session.get(Item, ids[0])
    labeled.label = "tech"  # labeled: the queue never serves it, so only its id reaches it
    db.session.commit()
    login("engineer")
    client.get("/projects/news/excluded")
    form = {"csrf_token": auth.csrf(), "item_id": f"#{ids[0]}", "reason": "sensor fault"}
    resp = client.post("/projects/news/excluded", data=form)
    assert resp.status_code == 302
    page = client.get("/projects/news/excluded").text
    assert f"Excluded #{ids[0]}" in page and "sensor fault" in page
    for item_id, reason, message in [
        ("12x", "r", "There is no item #12x"),
        (str(2**64), "r", "There is no item"),
        (str(ids[1]), "", "Not excluded: the reason must say why"),
    ]:
        form = {"csrf_token": auth.csrf(), "item_id": item_id, "reason": reason}
        resp = client.post("/projects/news/excluded", data=form)
        assert resp.status_code == 422 and message in resp.text, item_id
    db.session.expire_all()
    assert db.session.get(Item, ids[1]).excluded_at is None
    assert db.session.get(Item, ids[0]).excluded_by.startswith("user:")
