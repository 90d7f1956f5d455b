"""In Chromium: an experiment's page draws the difference at each look with its confidence
sequence as a band (inside the plot, the zero line across), the figures refresh by htmx while
it runs, and an engineer stops it from the page.

`CORRIGO_SCREENSHOT_EXPERIMENT=docs/experiment.png` saves the page there.
"""

from __future__ import annotations

import os

from sqlalchemy import select

from tests.experiments import conftest as experiments_conftest
from tests.experiments.test_experiment_rules import predict
from tests.factories import TEXT_LABELS, make_user
from tests.web.test_browser import log_in
from tests.web.test_monitor_browser import inside
from tests.web.test_review_browser import _policy_errors
from webapp import abtests, pool
from webapp.extensions import db
from webapp.models import ModelVersion, Prediction

project = experiments_conftest.project  # news: champion v1, challenger v2 (a fixture)


def serve_and_label(project, units: range) -> None:
    """Units predict; experts find four answers in five right in both arms."""
    predict(project, [f"u-{i}" for i in units], prefix=f"-{units.start}")
    rows = db.session.scalars(
        select(Prediction).where(Prediction.id > 0).order_by(Prediction.id)
    ).all()
    pairs = [
        (p.item_id, p.label if p.id % 5 else next(x for x in TEXT_LABELS if x != p.label))
        for p in rows
    ]
    pool.label_unlabeled(project, pairs, "user:expert")


def test_the_lift_plot_refreshes_and_an_engineer_stops_the_experiment(app, page, project):
    experiment = abtests.start(project, "user:1", min_units=10)
    db.session.commit()
    for start in (0, 150, 300):
        serve_and_label(project, range(start, start + 150))
        assert abtests.step(experiment.id) == "continue"
    log_in(page, make_user(role="engineer"))
    errors = _policy_errors(page)
    page.goto(f"/projects/news/experiments/{experiment.id}")

    plot = page.locator("#lift-chart svg")
    plot.wait_for()
    frame = plot.bounding_box()
    assert frame["width"] > 900, frame
    sequential = page.locator('#lift-chart g.series[data-series="sequential"]')
    assert sequential.locator("circle.dot").count() == 3
    band = sequential.locator("path.band").bounding_box()
    line = sequential.locator("path.series-line").bounding_box()
    assert inside(band, frame) and band["height"] > line["height"]
    # The fixed-horizon interval is narrower than the confidence sequence at every look.
    fixed = page.locator('#lift-chart g.series[data-series="fixed"] path.band').bounding_box()
    assert fixed["height"] < band["height"]
    assert page.locator("#lift-chart g.threshold").count() == 2  # zero and the design's effect
    assert page.locator("#srm").inner_text().startswith("Split check passed")
    # Each arm's accuracy at each look, told apart by colour.
    arms = page.locator("#arms-chart g.series")
    assert arms.count() == 2 and arms.first.locator("circle.dot").count() == 3
    stroke = "e => getComputedStyle(e).stroke"
    colours = {
        page.locator(f"#arms-chart g.series-{arm} path.series-line").evaluate(stroke)
        for arm in ("champion", "challenger")
    }
    assert len(colours) == 2

    # A new look while the page is open: htmx swaps the figures in without a reload.
    serve_and_label(project, range(450, 600))
    abtests.step(experiment.id)
    dots = "#lift-chart g.series-sequential circle.dot"
    page.wait_for_function(
        f"() => document.querySelectorAll('{dots}').length === 4", timeout=20_000
    )

    shot = os.environ.get("CORRIGO_SCREENSHOT_EXPERIMENT")
    if shot:
        page.screenshot(path=shot, full_page=True)

    page.select_option("#stop select[name=decision]", "promote")
    page.fill("#stop input[name=reason]", "the audits read better")
    page.click("#stop button[type=submit]")
    page.locator("#decision").wait_for()
    assert page.locator("#decision h2").inner_text() == "Decision: promote"
    db.session.expire_all()
    assert db.session.scalar(select(ModelVersion.status).where(ModelVersion.version == 2)) == (
        "champion"
    )
    assert errors == []
