"""The annotate feature."""

from flask import Blueprint

bp = Blueprint("annotate", __name__)

from . import exclusion, item, routes  # noqa: E402,F401
