"""In Chromium: the monitor page draws its plots as inline SVG (three accuracy series with
their bands, the alert threshold dashed across), the range select swaps the plots in place,
and acknowledging an alert updates its row and the banner without a reload.

`CORRIGO_SCREENSHOT=docs/monitor.png` saves the monitor page, drawn from real windows, there.
"""

from __future__ import annotations

import os

from tests.factories import make_user
from tests.monitor import test_streams
from tests.web.test_browser import log_in
from tests.web.test_monitor_page import days_to_now, monitor_days, one_quiet_day
from tests.web.test_review_browser import _policy_errors

# The monitoring tests' champion serving a tabular project (a fixture, used here by name).
stream = test_streams.stream


def inside(box: dict, frame: dict) -> bool:
    """Whether a bounding box lies within another (a pixel of slack for strokes)."""
    return (
        frame["x"] - 1 <= box["x"]
        and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
        and frame["y"] - 1 <= box["y"]
        and box["y"] + box["height"] <= frame["y"] + frame["height"] + 1
    )


def test_the_monitor_page_draws_its_plots_and_swaps_the_range_in_place(app, page, stream):
    project, rng = stream
    # Nine days up to yesterday; drift fires on the last one and raises the audit share.
    monitor_days(project, rng, normal=7, shifted=2, first=days_to_now(9))
    log_in(page, make_user(role="engineer"))
    errors = _policy_errors(page)
    page.goto("/projects/stream/monitor")

    accuracy = page.locator("#chart-accuracy svg")
    accuracy.wait_for()
    frame = accuracy.bounding_box()
    assert frame["width"] > 900 and frame["height"] > 200, frame
    series = page.locator("#chart-accuracy g.series")
    assert series.count() == 3
    for key in ("audit", "all", "cbpe"):
        one = page.locator(f'#chart-accuracy g.series[data-series="{key}"]')
        assert one.locator("circle.dot").count() == 9
        line = one.locator("path.series-line").bounding_box()
        # A line across the windows, drawn inside the plot, with its 95% band around it.
        assert line["width"] > 0.8 * frame["width"] and inside(line, frame)
        band = one.locator("path.band").bounding_box()
        assert band["height"] > line["height"] * 0.5 and inside(band, frame)
    # The series are told apart by colour: the stylesheet applies under the CSP.
    stroke = "e => getComputedStyle(e).stroke"
    colours = {
        page.locator(f"#chart-accuracy g.series-{key} path.series-line").evaluate(stroke)
        for key in ("audit", "all", "cbpe")
    }
    assert len(colours) == 3

    threshold = page.locator("#chart-accuracy g.threshold line.threshold-line")
    assert threshold.count() == 1
    assert threshold.evaluate("e => getComputedStyle(e).strokeDasharray") != "none"
    box = threshold.bounding_box()
    assert box["width"] > 0.9 * frame["width"] and inside(box, frame)
    assert (
        page.locator("#chart-accuracy text.threshold-label").text_content().startswith("alert < ")
    )
    # Every other plot is drawn too, each with one series.
    for key in ("volume", "correction-rate", "confidence", "ece"):
        assert page.locator(f"#chart-{key} svg").is_visible()
        assert page.locator(f"#chart-{key} g.series").count() == 1
    x1 = page.locator('table.drift-table tr[data-feature="x1"]')
    assert x1.locator(".badge").inner_text() == "drift"
    assert x1.locator("svg.sparkline").is_visible()
    assert page.locator("#alert-banner").inner_text().endswith("not yet acknowledged.")
    assert page.locator(".audit-boost").inner_text().startswith("An alert raised the audit share")

    shot = os.environ.get("CORRIGO_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)

    # Choosing a range swaps the plots in place and puts the choice in the address.
    page.evaluate("window.__marker = 1")
    page.select_option("select[name=range]", "7")
    page.wait_for_selector('#monitor-panels[data-windows="7"]')
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    assert "range=7" in page.url
    assert page.locator('#chart-accuracy g.series[data-series="audit"] circle.dot').count() == 7
    assert page.locator("#chart-accuracy g.series").count() == 3
    assert "v1: 7 windows of 1 day" in page.locator(".window-summary").inner_text()
    assert errors == []


def test_acknowledging_in_the_browser_updates_the_row_and_the_banner(app, page, stream):
    project, rng = stream
    alert = one_quiet_day(project, rng)
    engineer = make_user("engineer@example.com", role="engineer")
    log_in(page, engineer)
    errors = _policy_errors(page)
    page.goto("/projects/stream")
    banner = page.locator("#alert-banner")
    assert banner.inner_text() == "1 alert firing in Stream, not yet acknowledged."
    banner.locator("a").click()
    page.wait_for_url("**/projects/stream/alerts?state=firing")

    page.evaluate("window.__marker = 1")
    row = page.locator(f"#alert-row-{alert.id}")
    assert row.get_attribute("data-state") == "firing"
    row.get_by_role("button", name="Acknowledge").click()
    page.wait_for_selector(f'#alert-row-{alert.id}[data-state="acknowledged"]')
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    row = page.locator(f"#alert-row-{alert.id}")
    assert row.locator(".badge").inner_text() == "acknowledged"
    assert f"by {engineer.email}" in row.inner_text()
    assert "acknowledged; it stays open until it resolves" in row.locator(".notice").inner_text()
    assert row.get_by_role("button", name="Acknowledge").count() == 0
    # The banner emptied out of band, and stays gone on the next page.
    assert banner.inner_text() == "" and not banner.is_visible()
    page.goto("/projects/stream")
    assert page.locator("#alert-banner").inner_text() == ""
    assert errors == []
