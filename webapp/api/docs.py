"""The contract itself: the OpenAPI 3.1 document, and interactive docs at `/api/docs`.

The document is generated from the resources' schemas by flask-smorest and served as is. The
docs page is Swagger UI 5 (which reads OpenAPI 3.1) from the assets the `swagger-ui-py` package
ships, served here: the page needs nothing from outside, so it works offline.
"""

from __future__ import annotations

import importlib.util
import os

from flask import Blueprint as FlaskBlueprint
from flask import abort, current_app, render_template, send_from_directory

from .common import Blueprint, scoped

blp = Blueprint("meta", __name__, description="This document.")
# Outside /api/v1: the page is for people, not part of the versioned contract.
pages = FlaskBlueprint("api_docs", __name__, url_prefix="/api/docs")

# The only files the page loads (the package ships editor bundles and source maps too).
ASSETS = (
    "swagger-ui.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "favicon-32x32.png",
)


def document() -> dict:
    """This app's OpenAPI document, generated once from the schemas."""
    state = current_app.extensions["corrigo-api"]
    if "document" not in state:
        state["document"] = state["api"].spec.to_dict()
    return state["document"]


@blp.route("/openapi.json")
@scoped(None, "The OpenAPI 3.1 description of this API.")
@blp.response(200, {"type": "object"}, description="The OpenAPI document.")
def openapi():
    """This document."""
    return current_app.response_class(
        current_app.json.dumps(document()), mimetype="application/json"
    )


def _assets_dir() -> str:
    """Where the swagger-ui-py package keeps Swagger UI's files (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "swagger-ui-py is not installed"
    return os.path.join(spec.submodule_search_locations[0], "static")


@pages.get("/")
def index():
    """Interactive API docs: Swagger UI on this server's OpenAPI document."""
    return render_template("api/docs.html")


@pages.get("/assets/<name>")
def asset(name: str):
    """One of Swagger UI's files, served from the installed package."""
    if name not in ASSETS:
        abort(404)
    return send_from_directory(_assets_dir(), name, max_age=86400)
