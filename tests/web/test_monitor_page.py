"""The monitor and alerts pages, on windows and alerts made through the product: a champion
serves `predict` (tests/monitor/test_streams.py's `stream`), experts label and users send
feedback, and the monitoring job runs as each daily window closes, as the clock runs it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from labeling import alerting
from tests.factories import make_project, make_user
from tests.monitor import test_streams
from tests.monitor.test_streams import DAY, T0, label_day, serve_day, windows
from tests.web.conftest import PASSWORD
from tests.web.html import table, text
from webapp import serving, training
from webapp.alerts import rule_dict, run_monitoring
from webapp.extensions import db
from webapp.models import Alert, AlertRule, Item, Prediction, utcnow

# The monitoring tests' champion serving a tabular project (a fixture, used here by name).
stream = test_streams.stream
CLOSE = timedelta(minutes=5)  # the monitoring job runs a few minutes after a window closes


def days_to_now(days: int) -> int:
    """The day (after T0) that starts `days` days before today: alerts' actions that last a
    while (a raised audit share) are still on when the page is read."""
    return (utcnow().date() - T0.date()).days - days


def monitor_days(
    project, rng, normal: int, shifted: int, n: int = 40, audits: int = 8, first: int = 0
) -> None:
    """`normal` days of N(0, 1) inputs from day `first` after T0, then `shifted` days (twice
    the traffic) where x1 loses most of its spread: every prediction labelled by experts
    (`audits` a day, doubled when shifted, through the audit lane), feedback on 15 a day, and
    the monitoring job run after each day."""
    for day in range(first, first + normal + shifted):
        drifted = day >= first + normal
        X = rng.normal(size=(2 * n if drifted else n, 2))
        if drifted:
            X[:, 0] *= 0.25
        ids = serve_day(project, day, X)
        label_day(project, ids, rng, audits=2 * audits if drifted else audits)
        for prediction, label in db.session.execute(
            select(Prediction, Item.label)
            .join(Item, Item.id == Prediction.item_id)
            .where(Prediction.id.in_(ids[:15]))
        ):
            serving.add_feedback(prediction, correct=prediction.label == label)
        db.session.commit()
        run_monitoring(project.id, now=T0 + (day + 1) * DAY + CLOSE)


def one_quiet_day(project, rng) -> Alert:
    """A day of traffic, then none: the closed window after it fires `no_predictions`."""
    serve_day(project, 0, rng.normal(size=(20, 2)))
    run_monitoring(project.id, now=T0 + 2 * DAY + CLOSE)
    (alert,) = db.session.scalars(select(Alert)).all()
    assert (alert.metric, alert.state) == ("volume", "firing")
    return alert


def attribute(html: str, tag: str, name: str) -> list[str]:
    """The values of attribute `name` on every `tag` start tag that has it, in page order."""
    return re.findall(rf'<{tag}\b[^>]*\b{name}="([^"]*)"', html)


def axis(svg: str):
    """The plot's value -> y mapping, read off its first and last y ticks."""
    ticks = re.findall(
        r'<text x="[\d.]+" y="([\d.]+)" class="tick y-tick"[^>]*>([\d.]+)</text>', svg
    )
    (y0, v0), (y1, v1) = [(float(y), float(v)) for y, v in (ticks[0], ticks[-1])]
    return lambda value: y0 + (value - v0) * (y1 - y0) / (v1 - v0)


def champion_threshold(project, name: str) -> dict:
    """A champion-relative rule resolved as the evaluator resolves it, against the champion."""
    rule = db.session.scalar(
        select(AlertRule).where(AlertRule.project_id == project.id, AlertRule.name == name)
    )
    champion = training.champion_version(project.id)
    return alerting.resolve_threshold(rule_dict(rule), champion.metrics)


def figure(html: str, key: str) -> str:
    """The markup of one plot's figure (`chart-<key>`)."""
    start = html.index(f'id="chart-{key}"')
    return html[start : html.index("</figure>", start)]


def test_the_monitor_page_plots_accuracy_three_ways_with_the_alert_threshold(client, login, stream):
    project, rng = stream
    monitor_days(project, rng, normal=3, shifted=2)
    login("reviewer")
    page = client.get("/projects/stream/monitor")
    assert page.status_code == 200
    html = page.text
    assert attribute(html, "div", "data-windows") == ["5"]
    assert "v1: 5 windows of 1 day, 2026-11-01 00:00 UTC to 2026-11-06 00:00 UTC" in text(html)

    accuracy = figure(html, "accuracy")
    assert attribute(accuracy, "g", "data-series") == ["audit", "all", "cbpe"]
    # Every day has audits, labels and an estimate: five points each, joined by one line,
    # with a 95% band.
    assert attribute(accuracy, "g", "data-points") == ["5", "5", "5"]
    assert accuracy.count('class="band"') == 3
    legend = text(accuracy)
    for label in (
        "audits (unbiased)",
        "all labels (biased toward disputed items)",
        "estimated (CBPE)",
        "95% interval",
    ):
        assert label in legend
    # The champion-relative rules draw one dashed line where the evaluator puts their
    # threshold: at least their tolerance below the champion's held-out accuracy.
    champion = training.champion_version(project.id)
    expected = champion_threshold(project, "accuracy_below_champion")["threshold"]
    assert expected <= champion.metrics["accuracy"] - 0.05 + 1e-9
    (value,) = attribute(accuracy, "g", "data-value")
    assert float(value) == pytest.approx(expected, abs=1e-6)
    assert attribute(accuracy, "g", "data-rules") == [
        "accuracy_below_champion, cbpe_accuracy_below_champion"
    ]
    assert f"alert &lt; {expected:.3f}" in accuracy
    # Drawn where the axis puts that value, as are the audits' daily accuracies.
    y_of = axis(accuracy)
    (y,) = re.findall(r'class="threshold-line"[^>]*y1="([\d.]+)"', accuracy)
    assert float(y) == pytest.approx(y_of(expected), abs=0.2)
    audits = [w.stats["labeled"]["audit"]["accuracy"]["value"] for w in windows(project)]
    audit_series = accuracy[
        accuracy.index('data-series="audit"') : accuracy.index('data-series="all"')
    ]
    dots = [float(cy) for cy in re.findall(r'class="dot" cx="[\d.]+" cy="([\d.]+)"', audit_series)]
    assert dots == pytest.approx([y_of(v) for v in audits], abs=0.2)
    assert "(accuracy_below_champion, cbpe_accuracy_below_champion)" in legend

    # Volume doubles when the shift starts, above the `no_predictions` line at 0.
    volume = figure(html, "volume")
    assert re.findall(r"predictions: (\d+)", volume) == ["40", "40", "40", "80", "80"]
    assert attribute(volume, "g", "data-value") == ["0.0"]
    # 15 feedback verdicts a day, with the correction-rate rule's fixed threshold.
    corrections = figure(html, "correction-rate")
    assert re.findall(r"n = (\d+)", corrections) == ["15"] * 5
    assert attribute(corrections, "g", "data-value") == ["0.3"]
    for key in ("confidence", "ece"):
        assert attribute(figure(html, key), "g", "data-points") == ["5"]
        # No rule watches them: no line.
        assert attribute(figure(html, key), "g", "data-value") == []


def test_the_drift_table_flags_the_shifted_feature_and_the_alerts_show(client, login, stream):
    project, rng = stream
    first = days_to_now(5)
    monitor_days(project, rng, normal=3, shifted=2, first=first)
    login("engineer")
    html = client.get("/projects/stream/monitor").text

    rows = {row[0]: row for row in table(html, "drift-table")[1:]}
    assert rows["x1"][1] == "drift"
    assert rows["x2"][1] == "none"
    assert rows["prediction:confidence"][1] == "drift"  # the model grows unsure near the edge
    method, statistic, cut_off = rows["x1"][2], float(rows["x1"][3]), float(rows["x1"][4])
    assert statistic >= cut_off and method in ("psi", "ks", "wasserstein")
    # Drifted rows first; each row's sparkline has a point per window.
    assert list(rows)[:2] == ["x1", "prediction:confidence"]
    assert attribute(html, "svg", "data-points") == ["5"] * len(rows)

    # The drift rule fired on the second shifted day (two windows in a row) and raised the
    # audit share for a day.
    drift = db.session.scalar(select(Alert).where(Alert.metric == "drift.severity"))
    assert drift.state == "firing" and drift.window_start == T0 + (first + 4) * DAY
    recent = table(html, "recent-alerts")[1:]
    newest_first = db.session.scalars(select(Alert).order_by(Alert.id.desc())).all()
    assert [row[0] for row in recent] == [f"#{a.id}" for a in newest_first]
    assert [f"#{drift.id}", "firing", drift.message] in [row[:3] for row in recent]
    assert f'href="/projects/stream/alerts#alert-row-{drift.id}"' in html
    until = T0 + (first + 6) * DAY + CLOSE  # a day after the pass that fired it
    assert db.session.get(type(project), project.id).audit_boost_until == until
    assert (
        f"An alert raised the audit share to 30% until {until:%Y-%m-%d %H:%M} UTC: the queue "
        "serves more uniform random audits" in text(html)
    )
    firing = sum(a.state == "firing" for a in newest_first)
    assert f"{firing} alert{'s' if firing > 1 else ''} firing in Stream" in text(html)


def test_the_model_and_range_selects_swap_only_the_plots(client, login, hx, stream):
    project, rng = stream
    for day in range(9):
        serve_day(project, day, rng.normal(size=(10, 2)))
    # An app logs its own model's predictions for two of those days.
    serving.log_predictions(
        project,
        [
            {
                "data": {"features": {"x1": float(a), "x2": float(b)}},
                "label": "a" if a > 0 else "b",
                "model": "legacy",
                "timestamp": T0 + day * DAY + timedelta(hours=3),
            }
            for day in (7, 8)
            for a, b in rng.normal(size=(10, 2))
        ],
    )
    db.session.commit()
    run_monitoring(project.id, now=T0 + 9 * DAY + CLOSE)
    login("engineer")

    page = client.get("/projects/stream/monitor").text
    # The champion's model is monitored, so it is shown first; the app's model is offered.
    assert re.findall(r'<option value="([^"]+)"', page)[:2] == ["v1", "app:legacy"]
    assert "v1 (monitored by the alert rules)" in text(page)
    assert attribute(page, "div", "data-windows") == ["9"]

    last7 = hx("GET", "/projects/stream/monitor?model=v1&range=7")
    assert "HX-Request" in last7.headers["Vary"]
    assert "<html" not in last7.text and '<div id="monitor-panels"' in last7.text
    assert attribute(last7.text, "div", "data-windows") == ["7"]
    assert "v1: 7 windows of 1 day, 2026-11-03 00:00 UTC to 2026-11-10 00:00 UTC" in text(
        last7.text
    )

    legacy = hx("GET", "/projects/stream/monitor?model=app:legacy&range=30").text
    assert attribute(legacy, "div", "data-model") == ["app:legacy"]
    assert attribute(legacy, "div", "data-windows") == ["2"]
    # An app's model has no input reference: its drift is of its outputs only.
    assert [row[0] for row in table(legacy, "drift-table")[1:]] == ["prediction:label"]

    # Unknown choices fall back to the monitored model and 30 windows.
    odd = hx("GET", "/projects/stream/monitor?model=v9&range=12").text
    assert attribute(odd, "div", "data-model") == ["v1"]
    assert attribute(odd, "div", "data-windows") == ["9"]
    # Back and forward restore the whole page, not the part.
    restored = hx(
        "GET", "/projects/stream/monitor?range=7", headers={"HX-History-Restore-Request": "true"}
    ).text
    assert "<html" in restored


def test_the_empty_monitor_page_says_how_to_send_predictions(client, login, stream):
    project, rng = stream
    login("engineer")
    seen = text(client.get("/projects/stream/monitor").text)
    assert (
        "No predictions yet Log predictions with POST /api/v1/projects/stream/predictions or "
        "serve them with predict (POST /api/v1/projects/stream/predict)" in seen
    )
    assert "No alert has fired." in seen
    # Predictions the monitoring job has not folded into a window yet.
    serve_day(project, 0, rng.normal(size=(3, 2)))
    seen = text(client.get("/projects/stream/monitor").text)
    assert "No window computed yet Predictions have arrived" in seen


@pytest.mark.parametrize("path", ["/projects/news/monitor", "/projects/news/alerts"])
def test_annotators_may_not_open_monitoring_and_see_no_link_to_it(client, login, path):
    make_project()
    login("annotator")
    assert client.get(path).status_code == 403
    project_page = client.get("/projects/news").text
    assert "/projects/news/monitor" not in project_page
    assert "/projects/news/alerts" not in project_page


def test_reviewers_open_monitoring_from_the_project_page_and_outsiders_get_a_404(client, login):
    make_project()
    login("reviewer")
    project_page = client.get("/projects/news").text
    assert 'href="/projects/news/monitor"' in project_page
    assert 'href="/projects/news/alerts"' in project_page
    assert client.get("/projects/news/monitor").status_code == 200
    assert client.get("/projects/news/alerts").status_code == 200
    make_project(slug="secret", members=[])
    assert client.get("/projects/secret/monitor").status_code == 404
    assert client.get("/projects/secret/alerts").status_code == 404


def test_an_engineer_acknowledges_a_firing_alert_and_the_banner_goes(
    client, login, hx, auth, stream
):
    project, rng = stream
    alert = one_quiet_day(project, rng)
    engineer = login("engineer")
    project_page = client.get("/projects/stream").text
    assert "1 alert firing in Stream, not yet acknowledged." in text(project_page)
    assert 'href="/projects/stream/alerts?state=firing"' in project_page

    alerts = client.get("/projects/stream/alerts").text
    (row,) = table(alerts, "alerts-table")[1:]
    assert row[:5] == [
        f"#{alert.id}",
        "firing",
        "no_predictions: volume is 0 (<= 0.000).",
        "2026-11-02 00:00 – 11-03 00:00 UTC",
        "2026-11-03 00:05 UTC",
    ]
    assert row[5:] == ["—", "—", "Acknowledge"]

    # Without the session's CSRF token nothing happens.
    url = f"/projects/stream/alerts/{alert.id}/acknowledge"
    assert client.post(url).status_code == 400
    response = hx("POST", url)
    assert response.status_code == 200
    # The row comes back acknowledged, and the banner (out of band) empty.
    assert response.text.lstrip().startswith(f'<tr id="alert-row-{alert.id}"')
    assert '<div id="alert-banner" hx-swap-oob="true">' in response.text
    seen = text(response.text)
    assert "acknowledged" in seen and f"by {engineer.email}" in seen
    assert "alert firing" not in seen and "Acknowledge</button>" not in response.text
    assert f"Alert #{alert.id} acknowledged; it stays open until it resolves." in seen
    db.session.expire_all()
    alert = db.session.get(Alert, alert.id)
    # Stored as the app stores people (annotations too), shown as the email.
    assert (alert.state, alert.acknowledged_by) == ("acknowledged", f"user:{engineer.id}")
    (row,) = table(client.get("/projects/stream/alerts").text, "alerts-table")[1:]
    assert row[1] == "acknowledged" and row[5].endswith(f"by {engineer.email}")
    assert "alert firing" not in text(client.get("/projects/stream").text)
    # A second click says who has it and changes nothing.
    again = text(hx("POST", url).text)
    assert f"Alert #{alert.id} was already acknowledged by {engineer.email}." in again


def test_acknowledging_a_resolved_alert_does_nothing_and_says_so(client, login, hx, stream):
    project, rng = stream
    alert = one_quiet_day(project, rng)
    # Traffic comes back: the next closed window resolves the alert.
    serve_day(project, 2, rng.normal(size=(20, 2)))
    run_monitoring(project.id, now=T0 + 3 * DAY + CLOSE)
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).state == "resolved"
    login("engineer")
    response = hx("POST", f"/projects/stream/alerts/{alert.id}/acknowledge")
    assert response.status_code == 200
    assert f"Alert #{alert.id} is resolved already: nothing to acknowledge." in text(response.text)
    db.session.expire_all()
    alert = db.session.get(Alert, alert.id)
    assert (alert.state, alert.acknowledged_at) == ("resolved", None)
    (row,) = table(client.get("/projects/stream/alerts").text, "alerts-table")[1:]
    assert row[1] == "resolved" and row[6] == "2026-11-04 00:05 UTC" and row[7] == ""


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_engineers_acknowledge(client, login, hx, stream, role):
    project, rng = stream
    alert = one_quiet_day(project, rng)
    login(role)
    assert hx("POST", f"/projects/stream/alerts/{alert.id}/acknowledge").status_code == 403
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).state == "firing"
    if role == "reviewer":
        alerts = client.get("/projects/stream/alerts").text
        assert table(alerts, "alerts-table")[1][1] == "firing"
        assert "Acknowledge</button>" not in alerts


def test_a_plain_form_post_acknowledges_and_comes_back_with_a_message(client, login, auth, stream):
    project, rng = stream
    alert = one_quiet_day(project, rng)
    login("admin")
    response = client.post(
        f"/projects/stream/alerts/{alert.id}/acknowledge", data={"csrf_token": auth.csrf()}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/projects/stream/alerts"
    page = client.get("/projects/stream/alerts").text
    assert f"Alert #{alert.id} acknowledged" in text(page)
    assert table(page, "alerts-table")[1][1] == "acknowledged"


def test_the_alerts_page_filters_by_state_and_lists_the_rules(client, login, stream):
    project, rng = stream
    first = one_quiet_day(project, rng)
    serve_day(project, 2, rng.normal(size=(20, 2)))
    run_monitoring(project.id, now=T0 + 3 * DAY + CLOSE)  # resolves it
    run_monitoring(project.id, now=T0 + 5 * DAY + CLOSE)  # silence again: fires
    alerts = db.session.scalars(select(Alert).order_by(Alert.id)).all()
    assert [(a.id, a.state) for a in alerts] == [(first.id, "resolved"), (alerts[1].id, "firing")]
    login("reviewer")

    page = client.get("/projects/stream/alerts").text
    assert [row[:2] for row in table(page, "alerts-table")[1:]] == [
        [f"#{alerts[1].id}", "firing"],
        [f"#{first.id}", "resolved"],
    ]
    assert "All (2) Firing (1) Acknowledged (0) Resolved (1)" in text(page)
    firing = client.get("/projects/stream/alerts?state=firing").text
    assert [row[0] for row in table(firing, "alerts-table")[1:]] == [f"#{alerts[1].id}"]
    assert "No acknowledged alert." in text(
        client.get("/projects/stream/alerts?state=acknowledged").text
    )

    rules = {row[0].split()[0]: row for row in table(page, "rules-table")[1:]}
    resolved = champion_threshold(project, "accuracy_below_champion")
    start = resolved.get("interval_baseline", resolved["baseline"])
    side = "" if start == resolved["baseline"] else " (lower end of its 95% interval)"
    accuracy = rules["accuracy_below_champion"]
    assert accuracy[1:4] == [
        "accuracy",
        "< (top of its 95% interval)",
        f"champion{side} − 0.05 now {resolved['threshold']:.3f} on ≥ 30 rows",
    ]
    assert accuracy[4:8] == ["1", "1", "1 day", "retrain, audit share 30% for 24 h"]
    assert rules["drift"][1:8] == [
        "drift.severity",
        "==",
        "drift",
        "1",
        "2",
        "1 day",
        "audit share 30% for 24 h",
    ]
    assert rules["no_predictions"][3] == "0" and rules["no_predictions"][8] == "firing"
    assert rules["correction_rate_high"][2:4] == [
        "> (bottom of its 95% interval)",
        "0.3 on ≥ 20 rows",
    ]


def test_the_banner_costs_one_query_and_only_where_it_can_be_followed(client, auth, stream):
    project, rng = stream
    one_quiet_day(project, rng)
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        for role in ("engineer", "annotator"):
            user = make_user(f"{role}@example.com", role=role)
            auth.login(user.email, PASSWORD)
            statements.clear()
            seen = text(client.get("/projects/stream").text)
            on_alerts = [s for s in statements if re.search(r"\bFROM alert\b", s)]
            if role == "engineer":
                assert "1 alert firing in Stream" in seen
                assert len(on_alerts) == 1
            else:
                # Annotators cannot open the alerts page: no banner, and no query for it.
                assert "alert firing" not in seen
                assert on_alerts == []
            # A page of no project has no banner either.
            statements.clear()
            assert "alert firing" not in text(client.get("/projects").text)
            assert not [s for s in statements if re.search(r"\bFROM alert\b", s)]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
