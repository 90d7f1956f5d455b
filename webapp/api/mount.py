"""Mount the API on an app: the resources under `/api/v1`, and the OpenAPI document that
flask-smorest builds from their schemas (shared answers and parameters as components)."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api as SmorestApi
from flask_smorest.spec.plugins import FlaskPlugin

from ..auth.ratelimit import api_key_prefix, api_limit, limiter
from ..errors import PROBLEM
from . import (
    agreement,
    docs,
    experiments,
    items,
    labels,
    models,
    monitor,
    predictions,
    queue,
    runs,
    settings,
    webhooks,
)
from .common import CONVERTERS, ERRORS, PREFIX, BigIdConverter, Blueprint, Problem, id_schema

RESOURCES = (
    items,
    predictions,
    queue,
    runs,
    models,
    settings,
    labels,
    monitor,
    agreement,
    experiments,
    webhooks,
    docs,
)

bp = Blueprint("api", __name__, url_prefix=PREFIX)
for _resource in RESOURCES:
    bp.register_blueprint(_resource.blp)
# Every API request counts against its key's rate limit (`webapp.auth.ratelimit`).
limiter.limit(api_limit, key_func=api_key_prefix)(bp)

DESCRIPTION = (
    "Post predictions and feedback, label the items experts should see next, retrain, and "
    "export labels.\n\n"
    "Authenticate with `Authorization: Bearer <key>`. A key belongs to one project and carries "
    "scopes: `predict`, `feedback`, `label` (the key labels as one annotator, with its own "
    "leases) and `admin`; each operation names the scope it needs in `x-required-scope`. "
    "Bodies are JSON. Errors are `application/problem+json` documents; a missing or unknown key "
    "is 401, a key without the scope 403, and another project's resource 404.\n\n"
    "Interactive docs: `/api/docs`."
)


class _PathsUnderServer(FlaskPlugin):
    """Paths relative to the document's server (`/api/v1`), as v1 clients read them."""

    def path_helper(self, rule, operations, parameters, **kwargs):
        """The path without the API's prefix."""
        return super().path_helper(rule, operations, parameters, **kwargs).removeprefix(PREFIX)


class Api(SmorestApi):
    """flask-smorest's Api, answering errors through `webapp.errors` (problem documents)."""

    # Every operation lists its own error answers; no catch-all "default" response.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        """Leave error handling to `webapp.errors`, which answers every error as a problem."""

    def _register_etag_headers(self):
        """No ETags in this API."""

    def _register_pagination_header(self):
        """No pagination in this API."""

    def _register_responses(self):
        """Document each error answer once, as a problem document."""
        self.spec.components.schema("Problem", schema=Problem)
        for status, (name, description) in ERRORS.items():
            response = {"description": description, "content": {PROBLEM: {"schema": "Problem"}}}
            if status == 401:
                response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
            if status in (429, 503):
                response["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying.",
                        "schema": {"type": "string"},
                    }
                }
            self.spec.components.response(name, response)


def mount(app: Flask) -> None:
    """Register the API's blueprints and build its document."""
    app.url_map.converters.update(CONVERTERS)
    api = Api(
        spec_kwargs={
            "title": "Corrigo API",
            "version": "1",
            "openapi_version": "3.1.0",
            "flask_plugin": _PathsUnderServer(),
            "info": {"description": DESCRIPTION},
            "servers": [{"url": PREFIX}],
        }
    )
    api.init_app(app)
    api.register_converter(BigIdConverter, id_schema)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key created with `corrigo apikey create`.",
        },
    )
    for resource in RESOURCES:
        api.spec.tag({"name": resource.blp.name, "description": resource.blp.description})
    # flask-smorest's Api.register_blueprint, without the extra tag it gives the parent.
    app.extensions["flask-smorest"]["blp_name_to_api"][bp.name] = api
    app.register_blueprint(bp)
    bp.register_views_in_doc(api, app, api.spec, name=bp.name, parameters=None)
    app.register_blueprint(docs.pages)
    app.extensions["corrigo-api"] = {"api": api}
