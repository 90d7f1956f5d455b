"""Pages for several experts: blind labeling on the labeling page, other experts' answers in
the side list once answered, and the reviewers' queue."""

from sqlalchemy import select

from tests.factories import make_items, make_project
from tests.web.html import text
from tests.web.test_annotate import item_id_of
from webapp import pool
from webapp.extensions import db
from webapp.models import Item, Resolution, Task


def two_answers(project, first="tech", second="sport"):
    """Two experts answer the same item through the queue; return it."""
    item, _ = pool.next_item(project, "user:ann")
    pool.annotate(project, item, "user:ann", first)
    other, _ = pool.next_item(project, "user:bob")
    assert other.id == item.id
    pool.annotate(project, other, "user:bob", second)
    db.session.commit()
    return db.session.get(Item, item.id)


def test_a_second_opinion_is_blind_until_given(client, login, hx):
    project = make_project(settings={"annotations_per_item": 2})
    make_items(project, 3)
    first, _ = pool.next_item(project, "user:ann")
    pool.annotate(project, first, "user:ann", "politics")
    db.session.commit()
    user = login()
    page = client.get("/projects/news/annotate").text
    assert item_id_of(page) == first.id
    assert "yours is a second opinion" in text(page)
    # Blind: Ann's answer (politics) shows nowhere on the item.
    shown = page.split('<section id="item"')[1].split('<form method="post"')[0]
    assert "politics" not in text(shown) and "user:ann" not in shown
    assert "Currently labeled" not in text(page)

    hx("POST", f"/projects/news/annotate/{first.id}", data={"label": "tech"})
    side = hx("GET", "/projects/news/annotate/history").text
    assert "others: user:ann politics" in text(side)
    assert user.annotator != "user:ann"


def test_the_review_queue_shows_every_answer_and_records_the_decision(client, login):
    project = make_project(settings={"annotations_per_item": 2, "resolution": "majority"})
    make_items(project, 3)
    item = two_answers(project)
    assert item.review_reason == "review"
    login("reviewer")
    page = client.get("/projects/news/review").text
    assert f'data-item-id="{item.id}"' in page
    assert "1 disagreements" in text(page) or "Waiting: 1 disagreements" in text(page)
    answers = text(page.split('id="answers"')[1].split("</table>")[0])
    assert "user:ann tech" in answers and "user:bob sport" in answers

    refused = client.post(
        f"/projects/news/review/{item.id}",
        data={"label": "politics", "reason": " ", "csrf_token": _csrf(client)},
        follow_redirects=True,
    )
    assert "is not decided: reason" in text(refused.text)
    assert db.session.get(Item, item.id).review_since is not None

    done = client.post(
        f"/projects/news/review/{item.id}",
        data={"label": "politics", "reason": "it is about a budget", "csrf_token": _csrf(client)},
        follow_redirects=True,
    )
    assert f"#{item.id} is now politics." in text(done.text)
    assert "Nothing to review" in text(done.text)
    db.session.expire_all()
    resolution = db.session.scalar(select(Resolution).where(Resolution.item_id == item.id))
    assert (resolution.label, resolution.reason, resolution.flagged) == (
        "politics",
        "it is about a budget",
        "review",
    )
    assert db.session.get(Item, item.id).label == "politics"


def test_annotators_do_not_see_the_review_queue_and_a_hunt_is_queued(client, login):
    make_project()
    login()
    assert client.get("/projects/news/review").status_code == 403
    client.post("/logout", data={"csrf_token": _csrf(client)})
    login("engineer", email="eng@example.com")
    response = client.post(
        "/projects/news/review/suspects", data={"csrf_token": _csrf(client)}, follow_redirects=True
    )
    assert "Looking for likely label errors" in text(response.text)
    assert db.session.scalar(select(Task.status).where(Task.name == "suspects")) == "queued"


def _csrf(client) -> str:
    with client.session_transaction() as sess:
        return sess.setdefault("csrf", "probe")


def test_the_review_lane_leads_reviewers_to_their_page_and_tells_annotators_why_not(client, login):
    make_project()
    login()
    told = client.get("/projects/news/annotate?lane=review", follow_redirects=True)
    assert "decided by reviewers on the project's Review page" in text(told.text)
    client.post("/logout", data={"csrf_token": _csrf(client)})
    login("reviewer", email="rev@example.com")
    led = client.get("/projects/news/annotate?lane=review")
    assert led.status_code == 302 and led.headers["Location"] == "/projects/news/review"
