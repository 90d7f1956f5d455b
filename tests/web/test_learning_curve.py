"""The models page's learning curve: one point per version with its interval, measured on
today's held-out audits, or each version's stored metrics before there are any."""

from __future__ import annotations

import re

import pytest

from tests.factories import (
    REVIEW_SETTINGS,
    make_champion,
    make_project,
    make_reviewed_candidate,
    make_version,
)
from tests.web.html import table, text


@pytest.fixture
def reviewed(app):
    """`news` with champion v1 and the rejected v2 (see `make_reviewed_candidate`)."""
    return make_reviewed_candidate(make_project(settings=REVIEW_SETTINGS))


def score(value: float) -> str:
    return f"{value:.3f}"


def test_the_learning_curve_has_one_point_per_version_measured_on_todays_audits(
    client, login, reviewed
):
    login("reviewer")
    page = client.get("/projects/news/models").text
    assert 'data-points="2"' in page
    assert re.findall(
        r'<g class="point point-([\w-]+) source-(\w+)" data-version="(\d+)"', page
    ) == [
        ("champion", "current_heldout", "1"),
        ("not-promoted", "current_heldout", "2"),
    ]
    seen = text(page)
    assert "measured on today's 15 held-out audits: no version trained on them" in seen
    points = table(page, "learning-curve-points")
    assert [row[:3] for row in points[1:]] == [["v1", "champion", "60"], ["v2", "rejected", "64"]]
    for row in points[1:]:
        value, interval = float(row[3]), row[4]
        lo, hi = (float(v) for v in interval.strip("[]").split(", "))
        assert lo <= value <= hi and row[5] == "15"
        assert row[6] == "on today's held-out set"
    # Each version scores 0.556 macro-F1 on the audits (right on two classes of three).
    assert [row[3] for row in points[1:]] == ["0.556", "0.556"]
    # Every marker has its interval drawn (a whisker) inside the plot.
    assert page.count('class="whisker"') == 2


def test_without_audits_the_curve_shows_each_versions_stored_metrics(client, login, app):
    project = make_project(settings={"retrain_every": 0})
    champion = make_champion(project)
    login("reviewer")
    page = client.get("/projects/news/models").text
    seen = text(page)
    assert "No held-out audits yet: each version's macro-F1 as recorded when it was judged" in seen
    (row,) = table(page, "learning-curve-points")[1:]
    assert row[:4] == ["v1", "champion", "150", score(champion.metrics["macro_f1"])]
    assert row[6] == "as recorded (cross validation)"


def test_a_version_whose_model_cannot_load_keeps_its_stored_point(client, login, reviewed):
    # An empty artifact (as an import without a model would leave) costs only its own point.
    make_version(reviewed.project, 3)
    login("reviewer")
    page = client.get("/projects/news/models").text
    points = table(page, "learning-curve-points")
    assert [row[0] for row in points[1:]] == ["v1", "v2", "v3"]
    assert points[3][6] == "as recorded"
    assert points[1][6] == points[2][6] == "on today's held-out set"
