"""In Chromium: the models page draws the learning curve as an inline SVG (one marker per
version with its interval, the champion marked, styled by the site's own CSS under its CSP),
and the run page's review renders without a script or style the policy refuses."""

from __future__ import annotations

from tests.factories import REVIEW_SETTINGS, make_project, make_reviewed_candidate, make_user
from tests.web.test_browser import log_in


def _policy_errors(page) -> list[str]:
    """Collect the console's Content-Security-Policy complaints from here on."""
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    return errors


def test_the_learning_curve_is_drawn_with_a_marker_and_an_interval_per_version(app, page, tmp_path):
    made = make_reviewed_candidate(make_project(settings=REVIEW_SETTINGS))
    log_in(page, make_user(role="reviewer"))
    errors = _policy_errors(page)
    page.goto("/projects/news/models")
    plot = page.locator("#learning-curve svg.curve-plot")
    plot.wait_for()
    frame = plot.bounding_box()
    assert frame["width"] > 600 and frame["height"] > 250, frame

    assert page.locator("#learning-curve g.point").count() == len(made.versions) == 2
    centres = []
    for version in (1, 2):
        point = page.locator(f'#learning-curve g.point[data-version="{version}"]')
        dot, whisker = point.locator("circle.dot").bounding_box(), point.locator(".whisker")
        centre = (dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2)
        span = whisker.bounding_box()
        # The marker sits inside the plot, on its interval, which has a visible height.
        assert frame["x"] < centre[0] < frame["x"] + frame["width"]
        assert frame["y"] < centre[1] < frame["y"] + frame["height"]
        assert span["height"] > 20 and span["y"] <= centre[1] <= span["y"] + span["height"]
        centres.append(centre)
    # More labels, further right: v2 trained on 64 labels, v1 on 60.
    assert centres[1][0] - centres[0][0] > 300

    champion = page.locator("#learning-curve g.point-champion")
    assert champion.get_attribute("data-version") == "1"
    assert champion.locator("text.point-label").text_content() == "v1 champion"
    # The stylesheet applies (no CDN, no inline style block): the champion's marker is filled
    # green, a never-promoted one white.
    fill = "e => getComputedStyle(e).fill"
    assert champion.locator("circle.dot").evaluate(fill) == "rgb(31, 122, 77)"
    never = page.locator('#learning-curve g.point[data-version="2"] circle.dot')
    assert never.evaluate(fill) == "rgb(255, 255, 255)"
    ticks = page.locator("#learning-curve .y-tick").all_text_contents()
    assert ticks and all(0 <= float(t) <= 1 for t in ticks)

    shot = tmp_path / "models.png"
    page.locator("#learning-curve").screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000
    assert errors == []


def test_the_run_page_review_renders_in_the_browser(app, page):
    made = make_reviewed_candidate(make_project(settings=REVIEW_SETTINGS))
    log_in(page, make_user(role="engineer"))
    errors = _policy_errors(page)
    page.goto(f"/projects/news/runs/{made.runs[1].id}")
    page.locator("#run-review").wait_for()
    assert page.locator("table.fixed-items tbody tr").count() == 5
    assert page.locator("table.broken-items tbody tr").count() == 5
    flagged = page.locator("table.class-deltas tr.flagged th")
    assert flagged.all_inner_texts() == ["politics"]
    # Following a fixed item's link opens its page.
    page.locator("table.fixed-items a").first.click()
    page.wait_for_url(f"**/projects/news/items/{made.fixed[0]}")
    assert f"Item #{made.fixed[0]}" in page.locator("h1").inner_text()
    assert errors == []
