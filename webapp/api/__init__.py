"""The api feature."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import exclusions, routes  # noqa: E402,F401
