"""The REST API, v1: imports, predictions, feedback, the labeling queue, retrains and exports.

One module per resource (`items`, `predictions`, `queue`, `runs`, `models`, `labels`, `docs`),
each with its request and response schemas beside its views; `mount` puts them under
`/api/v1` and builds the OpenAPI document from the same schemas. The limits and field types
they share with the CLI and the web live below the API, in `webapp.fields`.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Mount the API, its OpenAPI document and its docs page on the app."""
    from .mount import mount

    mount(app)
