"""Monitoring over the API: windows, alert rules and alerts, as an engineer's script uses them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.helpers import assert_problem
from webapp.alerts import run_monitoring

TEXTS = ["the team won the cup match", "the minister lost the vote", "a new phone chip and app"]


def _traffic(api, project) -> None:
    """20 predictions served by the champion now, 12 logged by the app's model two days ago."""
    for i in range(20):
        resp = api.post("/projects/news/predict", {"data": {"text": TEXTS[i % 3]}})
        assert resp.status_code == 200, resp.get_json()
    stamp = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    rows = [
        {"data": {"text": TEXTS[i % 3]}, "label": "sport", "model": "legacy", "timestamp": stamp}
        for i in range(12)
    ]
    assert api.post("/projects/news/predictions", {"predictions": rows}).status_code == 201
    run_monitoring(project.id)


def test_the_monitor_returns_windows_per_model_with_figures_and_drift(api, project, champion):
    _traffic(api, project)
    doc = api.get("/projects/news/monitor").get_json()
    assert doc["window_seconds"] == 86400 and doc["models"] == ["v1", "app:legacy"]
    by_model = {w["model"]: w for w in doc["windows"]}
    served, logged = by_model["v1"], by_model["app:legacy"]
    assert served["volume"] == 20 and served["model_version"] == 1
    assert served["start"].endswith("T00:00:00Z") and served["end"].endswith("T00:00:00Z")
    assert served["estimate"]["accuracy"]["value"] is not None  # CBPE, no labels needed
    names = {f["feature"] for f in served["drift"]["features"]}
    assert {"text:length", "prediction:label"} <= names
    for feature in served["drift"]["features"]:
        assert set(feature) == {"feature", "method", "statistic", "threshold", "severity"}
    assert logged["volume"] == 12 and logged["model_version"] is None
    assert logged["predicted"]["sport"]["count"] == 12
    assert logged["estimate"] is None  # no probabilities were logged: nothing to estimate from
    assert logged["start"] < served["start"]  # backfilled into its own day

    only = api.get("/projects/news/monitor?model_version=1").get_json()["windows"]
    assert [w["model"] for w in only] == ["v1"]
    assert [
        w["model"] for w in api.get("/projects/news/monitor?model=app:legacy").get_json()["windows"]
    ] == ["app:legacy"]
    since = served["start"]
    assert [
        w["model"] for w in api.get(f"/projects/news/monitor?since={since}").get_json()["windows"]
    ] == ["v1"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("model=v2&model_version=1", "model_version"),
    ],
)
def test_a_bad_monitor_query_is_a_422_naming_the_parameter(api, project, query, field):
    assert_problem(api.get(f"/projects/news/monitor?{query}"), 422, field)


def test_every_project_starts_with_default_rules(api, project):
    rules = api.get("/projects/news/alert-rules").get_json()["rules"]
    names = {r["name"] for r in rules}
    assert {"accuracy_below_champion", "drift", "no_predictions", "correction_rate_high"} <= names
    assert "recall_below_champion[sport]" in names
    accuracy = next(r for r in rules if r["name"] == "accuracy_below_champion")
    assert accuracy["threshold"] is None and accuracy["tolerance"] == 0.05
    assert accuracy["bound"] == "upper" and accuracy["actions"]["retrain"] is True
    drift = next(r for r in rules if r["name"] == "drift")
    assert (drift["comparison"], drift["threshold"], drift["persistence"]) == ("==", "drift", 2)


def test_add_change_and_delete_a_rule(api, project):
    body = {"name": "busy", "metric": "volume", "comparison": ">", "threshold": 1000}
    resp = api.post("/projects/news/alert-rules", body)
    assert resp.status_code == 201, resp.get_json()
    rule = resp.get_json()
    assert (rule["threshold"], rule["window"], rule["status"], rule["enabled"]) == (
        1000,
        1,
        "ok",
        True,
    )
    changed = api.patch(f"/projects/news/alert-rules/{rule['id']}", {"threshold": 50})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["threshold"] == 50 and changed.get_json()["name"] == "busy"
    assert api.delete(f"/projects/news/alert-rules/{rule['id']}").status_code == 204
    assert_problem(api.delete(f"/projects/news/alert-rules/{rule['id']}"), 404)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"metric": "happiness", "comparison": "<", "threshold": 1}, "metric"),
        ({"metric": "recall", "comparison": "<", "threshold": 0.5}, "metric"),
        ({"metric": "accuracy", "comparison": "<"}, "threshold"),
        ({"metric": "accuracy", "comparison": "<", "threshold": "low"}, "threshold"),
        ({"metric": "accuracy", "comparison": "~", "threshold": 0.5}, "comparison"),
        ({"metric": "accuracy", "comparison": "<", "threshold": 0.5, "window": 0}, "window"),
        (
            {"metric": "drift.severity", "comparison": "==", "threshold": "drift", "hysteresis": 1},
            "hysteresis",
        ),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field_and_nothing_is_stored(api, project, body, field):
    before = len(api.get("/projects/news/alert-rules").get_json()["rules"])
    assert_problem(api.post("/projects/news/alert-rules", {"name": "bad", **body}), 422, field)
    assert len(api.get("/projects/news/alert-rules").get_json()["rules"]) == before


def test_an_alert_fires_is_listed_and_acknowledged(api, project, champion):
    rule = api.post(
        "/projects/news/alert-rules",
        {"name": "quiet", "metric": "volume", "comparison": "<", "threshold": 100},
    ).get_json()
    _traffic(api, project)
    tomorrow = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    run_monitoring(project.id, now=tomorrow)
    (alert,) = [
        a for a in api.get("/projects/news/alerts").get_json()["alerts"] if a["rule"] == "quiet"
    ]
    assert alert["state"] == "firing" and alert["value"] == 20 and alert["rule_id"] == rule["id"]
    assert "volume is 20" in alert["message"]
    acked = api.post(f"/projects/news/alerts/{alert['id']}/acknowledge")
    assert acked.status_code == 200
    assert acked.get_json()["state"] == "acknowledged" and acked.get_json()["acknowledged_by"]
    listed = api.get("/projects/news/alerts?state=acknowledged").get_json()["alerts"]
    assert [a["id"] for a in listed] == [alert["id"]]
    firing = api.get("/projects/news/alerts?state=firing").get_json()["alerts"]
    assert alert["id"] not in [a["id"] for a in firing]
    assert_problem(api.get("/projects/news/alerts?state=loud"), 422, "state")


def test_another_projects_alert_is_a_404(api, project, other):
    assert_problem(other.post("/projects/sports/alerts/1/acknowledge"), 404)
    rule = api.get("/projects/news/alert-rules").get_json()["rules"][0]
    assert_problem(other.delete(f"/projects/sports/alert-rules/{rule['id']}"), 404)


def test_an_engineer_picks_the_reference_window_of_an_app_model(api, project):
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    new = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    rows = [
        {"data": {"text": TEXTS[0]}, "label": "sport", "model": "legacy", "timestamp": old}
        for _ in range(60)
    ] + [
        {"data": {"text": TEXTS[1]}, "label": "politics", "model": "legacy", "timestamp": new}
        for _ in range(60)
    ]
    assert api.post("/projects/news/predictions", {"predictions": rows}).status_code == 201
    run_monitoring(project.id)
    # By default the reference is the first 1,000 predictions: here both days mixed, which
    # neither day looks like.
    windows = api.get("/projects/news/monitor?model=app:legacy").get_json()["windows"]
    assert [w["drift"]["severity"] for w in windows] == ["drift", "drift"]
    # The engineer makes the newer day the reference: now the older day is the odd one.
    since = windows[1]["start"]
    resp = api.put("/projects/news/monitor/reference", {"model": "app:legacy", "since": since})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["predictions"] == 60
    windows = api.get("/projects/news/monitor?model=app:legacy").get_json()["windows"]
    assert [w["drift"]["severity"] for w in windows] == ["drift", "none"]
    assert_problem(
        api.put("/projects/news/monitor/reference", {"model": "v1", "since": since}), 422, "model"
    )
    assert_problem(
        api.put(
            "/projects/news/monitor/reference",
            {
                "model": "app:legacy",
                "since": "2001-01-01T00:00:00Z",
                "until": "2001-01-02T00:00:00Z",
            },
        ),
        422,
        "since",
    )


def test_an_app_model_with_probabilities_gets_a_label_free_estimate(api, project):
    rows = [
        {
            "data": {"text": TEXTS[i % 3]},
            "label": "sport",
            "probabilities": {"sport": 0.8, "politics": 0.1, "tech": 0.1},
            "model": "legacy",
        }
        for i in range(50)
    ]
    assert api.post("/projects/news/predictions", {"predictions": rows}).status_code == 201
    run_monitoring(project.id)
    (window,) = api.get("/projects/news/monitor?model=app:legacy").get_json()["windows"]
    # Taken at their word, probabilities of 0.8 on the predicted label expect 80% accuracy.
    assert window["estimate"]["accuracy"]["value"] == pytest.approx(0.8)
