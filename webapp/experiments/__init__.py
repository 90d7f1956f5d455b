"""The experiments feature: a project's A/B experiments, one page each, start/stop/override."""

from flask import Blueprint

bp = Blueprint("experiments", __name__)

from . import routes  # noqa: E402,F401
