"""The review feature: how well a project's experts agree with each other and with the final
labels (the agreement page); the reviewers' own work on disputed items will join it here."""

from flask import Blueprint

bp = Blueprint("review", __name__)

from . import routes  # noqa: E402,F401
