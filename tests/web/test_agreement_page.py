"""The agreement page: the figures of answers given through the product's path (the API tests'
hand-computed values, `tests.factories.OVERLAP`), its empty states, and who may open it."""

from __future__ import annotations

import re

import pytest

from labeling.stats import wilson_interval
from tests.factories import answer_overlap, make_items, make_project, make_user
from tests.web.html import table, text
from webapp import pool
from webapp.extensions import db
from webapp.models import Item
from webapp.pool.exclusion import exclude

PAGE = "/projects/news/agreement"


@pytest.fixture
def project(app):
    """`news`, without automatic retrains (the answers would trigger one)."""
    return make_project(settings={"retrain_every": 0})


@pytest.fixture
def answered(project):
    """`OVERLAP`'s answers by three people with logins; item 6 excluded."""
    experts = {
        who: make_user(f"{who}@example.com", role="annotator").annotator
        for who in ("ann", "bob", "cy")
    }
    ids = answer_overlap(project, experts)
    exclude(db.session.get(Item, ids[6]), "user:0", "garbled text")
    db.session.commit()
    return experts


def test_the_page_shows_alpha_the_experts_and_the_pairs(client, login, answered):
    login("reviewer")
    resp = client.get(PAGE)
    assert resp.status_code == 200
    shown = text(resp.text)
    assert "0.432 Krippendorff's alpha" in shown  # 16/37
    assert "16 answers" in shown and "6 items with several answers" in shown
    assert "Here: too low to rely on." in shown

    ann, bob, cy = (f"{who}@example.com {answered[who]}" for who in ("ann", "bob", "cy"))
    interval = "{:.3f} [{:.3f}, {:.3f}]".format
    experts = table(resp.text, "agreement-experts")
    assert experts[1:] == [
        [ann, "7", "6", interval(0.5, *wilson_interval(3, 6))],
        [bob, "6", "6", interval(5 / 6, *wilson_interval(5, 6))],
        [cy, "3", "3", interval(1.0, *wilson_interval(3, 3))],
    ]
    pairs = table(resp.text, "agreement-pairs")
    assert pairs[1:] == [
        [f"{ann} · {bob}", "6", "0.667", "0.500"],
        [f"{ann} · {cy}", "3", "0.667", "0.400"],
        [f"{bob} · {cy}", "3", "0.667", "0.400"],
    ]

    # One dot and one interval bar per expert, in table order, the bar around the dot.
    svg = resp.text.split('<figure class="agreement-chart"', 1)[1].split("</svg>", 1)[0]
    assert 'data-experts="3"' in svg
    dots = [float(x) for x in re.findall(r'<circle class="dot" cx="([\d.]+)"', svg)]
    bars = re.findall(r'<line class="whisker" x1="([\d.]+)" x2="([\d.]+)"', svg)
    assert len(dots) == len(bars) == 3
    assert dots[0] < dots[1] < dots[2]
    assert all(float(lo) <= x <= float(hi) for x, (lo, hi) in zip(dots, bars, strict=True))
    assert "ann@example.com: 0.500" in svg


def test_a_project_without_answers_says_so(client, login, project):
    make_items(project, 3)
    login("engineer")
    shown = text(client.get(PAGE).text)
    assert "No answers yet" in shown
    assert "Krippendorff" not in shown


def test_answers_without_overlap_say_agreement_needs_shared_items(client, login, project):
    first, second = make_items(project, 2)
    pool.annotate(project, db.session.get(Item, first), "user:101", "sport")
    pool.annotate(project, db.session.get(Item, second), "user:102", "tech")
    login("reviewer")
    resp = client.get(PAGE)
    shown = text(resp.text)
    assert "No item has answers from two experts yet" in shown
    assert "2 answers" in shown and "— Krippendorff's alpha" in shown
    assert "agreement-experts" not in resp.text and "<svg" not in resp.text


def test_anonymous_visitors_are_sent_to_the_login(client, project):
    resp = client.get(PAGE)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")


def test_annotators_get_403_and_no_link_reviewers_get_the_link(client, login, auth, project):
    login("annotator")
    assert client.get(PAGE).status_code == 403
    assert PAGE not in client.get("/projects/news").text
    client.post("/logout", data={"csrf_token": auth.csrf()})
    login("reviewer")
    assert f'href="{PAGE}"' in client.get("/projects/news").text


def test_non_members_get_404(client, login, project):
    login("engineer")  # a member of `news`, then a project they are not in
    make_project(slug="other", members=[])
    assert client.get("/projects/other/agreement").status_code == 404
