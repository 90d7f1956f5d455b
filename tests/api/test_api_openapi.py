"""The OpenAPI document matches the routes, the scopes the views enforce, and real responses.

Beyond these checks, every request the API tests send through `helpers.Api` has its answer
validated against the document (status, content type and body schema).
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing.exceptions import Unresolvable

from tests.api.helpers import Api, check_documented, label_all, spec, validator_at
from tests.factories import make_items, queue_retrain
from webapp.enums import Decision, ModelStatus, QueueReason, RunStatus, Trigger, values
from webapp.extensions import db
from webapp.models import RetrainRun

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def api_rules(app):
    """(spec-style path, method, view function) for every /api/v1 route of the app."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule[len("/api/v1") :])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            yield path, method.lower(), app.view_functions[rule.endpoint]


@pytest.fixture
def SPEC(app):
    """The app's OpenAPI document."""
    return spec()


def operations(SPEC):
    """(path, method, operation) for every operation in the document."""
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue  # the path's own parameters, shared by its operations
            assert method in HTTP_METHODS, (path, method)
            yield path, method, op


def parameters(SPEC, path: str, op: dict) -> list[dict]:
    """An operation's parameters, its path's included, with references resolved."""
    declared = SPEC["paths"][path].get("parameters", []) + op.get("parameters", [])
    return [
        SPEC["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
        for p in declared
    ]


def test_the_document_is_served_as_is(client, SPEC):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.get_json() == json.loads(json.dumps(SPEC))
    assert SPEC["openapi"] == "3.1.0"
    assert SPEC["servers"] == [{"url": "/api/v1"}]


def test_the_document_is_valid_openapi_3_1(SPEC):
    validate(json.loads(json.dumps(SPEC)), cls=OpenAPIV31SpecValidator)
    broken = json.loads(json.dumps(SPEC))
    broken["paths"]["/projects/{slug}/models"]["get"]["responses"]["200"].pop("description")
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_every_route_is_documented_with_its_methods_and_nothing_else(app, SPEC):
    routes = {(path, method) for path, method, _ in api_rules(app)}
    documented = {(path, method) for path, method, _ in operations(SPEC)}
    assert routes == documented


def test_each_operation_names_the_scope_its_view_enforces(app, SPEC):
    ops = {(path, method): op for path, method, op in operations(SPEC)}
    for path, method, view in api_rules(app):
        op = ops[(path, method)]
        enforced = getattr(view, "required_scope", None)
        assert op.get("x-required-scope") == enforced, (path, method)
        if enforced is None:
            assert op["security"] == [], path
        else:
            assert op["security"] == [{"bearerAuth": []}], path
            assert f"`{enforced}` scope" in op["description"], path
            assert {"401", "403"} <= set(op["responses"]), path


def test_path_parameters_are_declared_and_bodies_document_their_errors(SPEC):
    for path, _method, op in operations(SPEC):
        declared = {p["name"] for p in parameters(SPEC, path, op) if p["in"] == "path"}
        assert set(re.findall(r"\{([^}]+)\}", path)) <= declared, path
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(op["responses"]), path


def test_every_schema_is_valid_and_every_reference_resolves(SPEC):
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)

    def refs(node):
        """Every $ref in a tree."""
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(SPEC)):
        target = SPEC
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


def test_the_response_check_has_teeth(api, project):
    label_all(project, make_items(project, 12))
    resp = api.post("/projects/news/retrain")
    good = resp.get_json()
    resp.set_data(json.dumps({"run": good["run_id"]}))
    with pytest.raises(jsonschema.ValidationError):
        check_documented("POST", "/api/v1/projects/news/retrain", resp)
    resp.status_code = 200
    with pytest.raises(AssertionError, match="does not document status 200"):
        check_documented("POST", "/api/v1/projects/news/retrain", resp)
    with pytest.raises(AssertionError, match="not in the OpenAPI document"):
        check_documented("GET", "/api/v1/projects/news/elsewhere", resp)


def test_a_problem_document_missing_its_detail_fails_the_schema(app):
    validator = validator_at("/components/schemas/Problem")
    validator.validate({"type": "about:blank", "status": 404, "title": "Not found", "detail": "x"})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"type": "about:blank", "status": 404, "title": "Not found"})


def test_a_reference_into_nowhere_is_caught(app):
    with pytest.raises(Unresolvable):
        validator_at("/components/schemas/Nope").validate({})


def test_error_answers_match_the_problem_schema(client, api, project):
    # Api checks each answer against the document; these reach the documented error statuses.
    answers = [
        Api(client, None).get("/projects/news/models"),
        Api(client, "cg_nope_nope").post("/projects/news/retrain"),
        api.get("/projects/elsewhere/models"),
        api.post("/projects/news/predict", {"data": {"text": "x"}}),
        api.post("/projects/news/items", data=b"{", content_type="application/json"),
        api.post("/projects/news/items", {"items": []}),
    ]
    assert [a.status_code for a in answers] == [401, 401, 404, 409, 400, 422]


def test_status_like_fields_document_the_enums_of_webapp_enums(SPEC):
    schemas = SPEC["components"]["schemas"]
    assert schemas["Run"]["properties"]["status"]["enum"] == list(values(RunStatus))
    assert schemas["Run"]["properties"]["trigger"]["enum"] == list(values(Trigger))
    assert schemas["Run"]["properties"]["decision"]["enum"] == [*values(Decision), None]
    assert schemas["QueueItem"]["properties"]["reason"]["enum"] == list(values(QueueReason))
    assert schemas["ModelVersion"]["properties"]["status"]["enum"] == list(values(ModelStatus))


def test_runs_of_every_trigger_are_answered_as_documented(api, project):
    for trigger in Trigger:
        run = queue_retrain(project, trigger=trigger)
        # Api checks the answer against the document, whose `trigger` enum must name it.
        assert api.get(f"/projects/news/runs/{run.id}").get_json()["trigger"] == trigger
        db.session.delete(db.session.get(RetrainRun, run.id))
        db.session.commit()
