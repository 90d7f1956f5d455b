"""Authentication, scopes and project isolation, for every endpoint."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.api.helpers import ALL_SCOPES, Api, assert_problem
from tests.factories import make_experiment_row, make_items, make_version, queue_retrain
from webapp import serving
from webapp.extensions import db
from webapp.models import (
    Alert,
    AlertRule,
    Annotation,
    ApiKey,
    Feedback,
    Item,
    ModelEvent,
    Prediction,
    RetrainRun,
    Skip,
    Webhook,
    utcnow,
)

# (method, path, scope); {item}, {prediction} and {run} are filled with rows of `news`.
ENDPOINTS = [
    ("POST", "/projects/news/items", "admin"),
    ("POST", "/projects/news/predict", "predict"),
    ("POST", "/projects/news/predictions", "predict"),
    ("POST", "/predictions/{prediction}/feedback", "feedback"),
    ("GET", "/projects/news/queue/next", "label"),
    ("POST", "/items/{item}/annotations", "label"),
    ("POST", "/items/{item}/skip", "label"),
    ("POST", "/projects/news/retrain", "admin"),
    ("GET", "/projects/news/runs/{run}", "admin"),
    ("GET", "/projects/news/models", "admin"),
    ("GET", "/projects/news/models/1", "admin"),
    ("GET", "/projects/news/models/1/review", "admin"),
    ("GET", "/projects/news/models/learning-curve", "admin"),
    ("POST", "/projects/news/models/1/promote", "admin"),
    ("POST", "/projects/news/models/1/reject", "admin"),
    ("POST", "/projects/news/models/1/challenger", "admin"),
    ("POST", "/projects/news/models/rollback", "admin"),
    ("GET", "/projects/news/settings", "admin"),
    ("PATCH", "/projects/news/settings", "admin"),
    ("GET", "/projects/news/labels", "admin"),
    ("POST", "/items/{item}/exclusion", "admin"),
    ("DELETE", "/items/{item}/exclusion", "admin"),
    ("GET", "/projects/news/monitor", "admin"),
    ("PUT", "/projects/news/monitor/reference", "admin"),
    ("GET", "/projects/news/agreement", "admin"),
    ("GET", "/projects/news/alerts", "admin"),
    ("POST", "/projects/news/alerts/{alert}/acknowledge", "admin"),
    ("GET", "/projects/news/alert-rules", "admin"),
    ("POST", "/projects/news/alert-rules", "admin"),
    ("PATCH", "/projects/news/alert-rules/{rule}", "admin"),
    ("DELETE", "/projects/news/alert-rules/{rule}", "admin"),
    ("GET", "/projects/news/webhooks", "admin"),
    ("POST", "/projects/news/webhooks", "admin"),
    ("GET", "/projects/news/webhooks/{webhook}/deliveries", "admin"),
    ("POST", "/projects/news/experiments", "admin"),
    ("GET", "/projects/news/experiments", "admin"),
    ("GET", "/projects/news/experiments/{experiment}", "admin"),
    ("PATCH", "/projects/news/experiments/{experiment}", "admin"),
    ("POST", "/projects/news/experiments/{experiment}/stop", "admin"),
    ("POST", "/projects/news/experiments/{experiment}/override", "admin"),
    # Deletions last: the list runs in order against the same rows.
    ("DELETE", "/projects/news/webhooks/{webhook}", "admin"),
]


@pytest.fixture
def rows(project):
    """One item, one logged prediction, one queued run, one candidate model v1, an alert rule
    (a default one), an alert, a webhook and a stopped experiment of `news`."""
    (item_id,) = make_items(project, 1)
    make_version(project, 1)
    (prediction_id,) = serving.log_predictions(project, [{"data": {"text": "x"}, "label": "tech"}])
    run = queue_retrain(project)
    rule = db.session.scalar(select(AlertRule).where(AlertRule.project_id == project.id))
    alert = Alert(project_id=project.id, rule_id=rule.id, metric="volume", message="quiet")
    hook = Webhook(project_id=project.id, url="http://127.0.0.1:9/x", secret="s" * 16, events=[])
    experiment = make_experiment_row(project, decision="keep")
    db.session.add_all([alert, hook, experiment])
    db.session.commit()
    return {
        "item": item_id,
        "prediction": prediction_id,
        "run": run.id,
        "rule": rule.id,
        "alert": alert.id,
        "webhook": hook.id,
        "experiment": experiment.id,
    }


def call(api: Api, method: str, path: str, rows: dict, headers=None):
    """Send a request to an endpoint with a valid body, so only auth decides the answer."""
    path = path.format(**rows)
    if method == "GET":
        return api.get(path, headers=headers)
    if method == "DELETE":
        return api.delete(path, headers=headers)
    if method == "PATCH":
        body = {"threshold": 0.5} if "/alert-rules/" in path else {"audit_share": 0.2}
        if "/experiments/" in path:
            body = {"share": 0.6}
        return api.patch(path, body, headers=headers)
    if method == "PUT":
        return api.put(path, {"model": "app"}, headers=headers)
    payload = {"label": "sport", "correct": False}
    if path.endswith("/items"):
        payload = {"items": [{"data": {"text": "a"}}]}
    elif path.endswith("/predict"):
        payload = {"data": {"text": "a"}}
    elif path.endswith("/exclusion"):
        payload = {"reason": "a bad row"}
    elif "/models/" in path:
        payload = {"reason": "checked by hand"}
    elif path.endswith("/predictions"):
        payload = {"predictions": [{"data": {"text": "a"}, "label": "tech"}]}
    elif path.endswith("/alert-rules"):
        payload = {"name": "n", "metric": "volume", "comparison": "<", "threshold": 1}
    elif path.endswith("/webhooks"):
        payload = {"url": "http://127.0.0.1:9/y", "secret": "s" * 16}
    elif path.endswith("/acknowledge") or path.endswith("/experiments"):
        payload = {}
    elif path.endswith("/stop") or path.endswith("/override"):
        payload = {"decision": "promote", "reason": "checked by hand"}
    return api.post(path, payload, headers=headers)


def test_no_key_is_401_everywhere(client, rows):
    for method, path, _scope in ENDPOINTS:
        resp = call(Api(client, None), method, path, rows)
        assert resp.status_code == 401, (method, path)
        assert_problem(resp, 401)
        assert resp.headers["WWW-Authenticate"] == "Bearer", path


def test_the_endpoint_list_covers_every_scoped_route(app, rows):
    adapter = app.url_map.bind("localhost")
    listed = {}
    for method, path, scope in ENDPOINTS:
        endpoint, _ = adapter.match("/api/v1" + path.format(**rows), method)
        listed[endpoint] = scope
    scoped = {
        endpoint: view.required_scope
        for endpoint, view in app.view_functions.items()
        if endpoint.startswith("api.") and hasattr(view, "required_scope")
    }
    assert listed == scoped


def test_a_malformed_authorization_header_is_401(client, rows):
    headers = ["", "Bearer", "Bearer ", "Token abc", "Basic dXNlcjpwYXNz", "cg_abc_def"]
    for header in headers:
        api = Api(client, None)
        resp = call(api, "GET", "/projects/news/models", rows, {"Authorization": header})
        assert resp.status_code == 401, header
        assert_problem(resp, 401)


def test_an_unknown_key_is_401(client, rows):
    for token in [
        "not-a-key",
        "cg_000000000000_secret",
        "cg_x",
        "cg__",
        "cg_" + "a" * 5000,
        "cg_" + "a" * 5000 + "_x",
    ]:
        resp = call(Api(client, token), "GET", "/projects/news/models", rows)
        assert resp.status_code == 401, token
        assert_problem(resp, 401)


def test_a_key_with_a_wrong_secret_is_401(client, api, rows):
    prefix = api.token.split("_")[1]
    resp = call(Api(client, f"cg_{prefix}_guessed-secret"), "GET", "/projects/news/models", rows)
    assert_problem(resp, 401)


def test_a_revoked_key_is_401(client, api, rows):
    assert call(api, "GET", "/projects/news/models", rows).status_code == 200
    db.session.query(ApiKey).update({"revoked_at": utcnow()})
    db.session.commit()
    assert_problem(call(api, "GET", "/projects/news/models", rows), 401)


def test_a_key_without_the_scope_is_403_everywhere(api_for, rows):
    for method, path, scope in ENDPOINTS:
        others = [s for s in ALL_SCOPES if s != scope]
        resp = call(api_for(*others), method, path, rows)
        assert resp.status_code == 403, (method, path)
        doc = assert_problem(resp, 403)
        assert f"`{scope}`" in doc["detail"], path


def test_a_key_with_only_the_scope_gets_past_auth_everywhere(api_for, rows):
    for method, path, scope in ENDPOINTS:
        resp = call(api_for(scope), method, path, rows)
        assert resp.status_code not in (401, 403, 404), (method, path, resp.get_json())


def row_counts() -> dict[str, int]:
    """How many rows each table the API writes to holds."""
    tables = (Item, Prediction, Feedback, Annotation, Skip, RetrainRun, ModelEvent)
    return {t.__name__: db.session.scalar(select(func.count()).select_from(t)) for t in tables}


def test_another_projects_key_gets_404_everywhere_and_writes_nothing(other, rows):
    before = row_counts()
    for method, path, _scope in ENDPOINTS:
        resp = call(other, method, path, rows)
        assert resp.status_code == 404, (method, path)
        assert_problem(resp, 404)
    assert row_counts() == before


def test_an_unknown_slug_is_404(api, rows):
    assert_problem(api.get("/projects/nope/models"), 404)


def test_an_unknown_id_is_404(api, rows):
    for row_id in ["999999", "99999999999999999999999"]:
        for path in [f"/items/{row_id}/skip", f"/items/{row_id}/annotations"]:
            assert_problem(api.post(path, {"label": "sport"}), 404, case=path)
        path = f"/predictions/{row_id}/feedback"
        assert_problem(api.post(path, {"correct": True}), 404, case=path)
        assert_problem(api.get(f"/projects/news/runs/{row_id}"), 404, case=row_id)


def test_the_openapi_document_is_public(client):
    resp = Api(client, None).get("/openapi.json")
    assert resp.status_code == 200
    assert resp.get_json()["openapi"].startswith("3.")
