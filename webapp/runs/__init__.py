"""The runs feature: retrain runs and the model versions they produce (the registry's pages)."""

from flask import Blueprint

bp = Blueprint("runs", __name__)

from . import routes  # noqa: E402,F401
