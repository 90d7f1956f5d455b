"""The runs feature."""

from flask import Blueprint

bp = Blueprint("runs", __name__)

from . import routes  # noqa: E402,F401
