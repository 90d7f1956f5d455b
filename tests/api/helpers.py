"""Helpers for the REST API tests: a bearer-token client that checks every answer against the
OpenAPI document, problem-document assertions, and service-level labeling shortcuts."""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.factories import label_all  # noqa: F401 (the one helper, re-exported for the API tests)
from webapp import pool
from webapp.api.docs import document

ALL_SCOPES = ("predict", "feedback", "label", "admin")
# Requests the schemathesis fuzzing sent in this run (reported at the end of the run).
FUZZ_SENT = {"requests": 0}
# A small held-out minimum lets a model trained on a few dozen labels pass the gate.
SETTINGS = {"gate": {"min_heldout": 5}}

_SPEC_URI = "urn:corrigo:openapi"


def spec() -> dict:
    """The app's OpenAPI document (generated from the API's schemas)."""
    return document()


def _templates(doc: dict) -> list[tuple[re.Pattern, str]]:
    """A regex per documented path template, literal paths first (`…/models/rollback` before
    `…/models/{version}`, as the router matches them)."""
    return [
        (re.compile("^/api/v1" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
        for path in sorted(doc["paths"], key=lambda path: path.count("{"))
    ]


def _pointer(*segments: str) -> str:
    """A JSON pointer (RFC 6901) from unescaped segments."""
    return "/" + "/".join(s.replace("~", "~0").replace("/", "~1") for s in segments)


def documented_response(method: str, path: str, status: int) -> tuple[dict, str]:
    """The documented response for a request, with the JSON pointer to it in the spec."""
    doc = spec()
    template = next((t for rx, t in _templates(doc) if rx.match(path)), None)
    assert template is not None, f"{path} is not in the OpenAPI document"
    operation = doc["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template} does not document status {status}"
    pointer = _pointer("paths", template, method.lower(), "responses", str(status))
    if "$ref" in response:
        pointer = response["$ref"][1:]
        response = doc["components"]["responses"][pointer.rsplit("/", 1)[1]]
    return response, pointer


def validator_at(pointer: str) -> Draft202012Validator:
    """A validator for the schema at a JSON pointer into the OpenAPI document."""
    registry = Registry().with_resource(
        _SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#{pointer}"}, registry=registry)


def check_documented(method: str, path: str, resp) -> None:
    """Assert that a response's status, content type and body are what the spec says."""
    response, pointer = documented_response(method, path, resp.status_code)
    content = response.get("content")
    if not content:
        assert not resp.get_data(), f"{resp.status_code} is documented without a body"
        return
    assert resp.mimetype in content, f"{resp.mimetype} not documented for {resp.status_code}"
    schema_at = pointer + _pointer("content", resp.mimetype, "schema")
    validator = validator_at(schema_at)
    text = resp.get_data(as_text=True)
    if resp.mimetype == "application/x-ndjson":
        docs = [json.loads(line) for line in text.splitlines()]
    elif "json" in resp.mimetype:
        docs = [json.loads(text)]
    else:
        docs = [text]
    for doc in docs:
        validator.validate(doc)


class Api:
    """A test client sending one API key as a bearer token; every answer is checked against
    the OpenAPI document, so the spec cannot drift from what the endpoints do."""

    def __init__(self, client, token: str | None):
        self.client = client
        self.token = token

    def _headers(self, headers: dict | None) -> dict:
        """The caller's headers plus this client's bearer token."""
        out = dict(headers or {})
        if self.token is not None:
            out.setdefault("Authorization", f"Bearer {self.token}")
        return out

    def get(self, path: str, headers: dict | None = None, **kw):
        """GET an /api/v1 path and check the answer against the spec."""
        resp = self.client.get("/api/v1" + path, headers=self._headers(headers), **kw)
        check_documented("GET", "/api/v1" + path.split("?")[0], resp)
        return resp

    def delete(self, path: str, headers: dict | None = None, **kw):
        """DELETE an /api/v1 path and check the answer against the spec."""
        resp = self.client.delete("/api/v1" + path, headers=self._headers(headers), **kw)
        check_documented("DELETE", "/api/v1" + path, resp)
        return resp

    def patch(self, path: str, json=None, headers: dict | None = None, **kw):
        """PATCH an /api/v1 path and check the answer against the spec."""
        resp = self.client.patch("/api/v1" + path, json=json, headers=self._headers(headers), **kw)
        check_documented("PATCH", "/api/v1" + path, resp)
        return resp

    def put(self, path: str, json=None, headers: dict | None = None, **kw):
        """PUT an /api/v1 path and check the answer against the spec."""
        resp = self.client.put("/api/v1" + path, json=json, headers=self._headers(headers), **kw)
        check_documented("PUT", "/api/v1" + path, resp)
        return resp

    def post(self, path: str, json=None, headers: dict | None = None, **kw):
        """POST an /api/v1 path and check the answer against the spec."""
        resp = self.client.post("/api/v1" + path, json=json, headers=self._headers(headers), **kw)
        check_documented("POST", "/api/v1" + path, resp)
        return resp


def assert_problem(resp, status: int, field: str | None = None, case=None) -> dict:
    """Check a problem document: its status, its content type and (if given) the named field.

    `case` says which input of a table-driven test failed.
    """
    where = f"{case!r}: " if case is not None else ""
    assert resp.status_code == status, where + resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json", where + resp.mimetype
    doc = resp.get_json()
    assert doc["status"] == status and doc["title"] and doc["detail"], where + str(doc)
    if field is not None:
        assert field in doc.get("errors", {}), where + str(doc)
    return doc


def item_count(project) -> int:
    """How many items the project holds."""
    return pool.counts(project)["items"]
