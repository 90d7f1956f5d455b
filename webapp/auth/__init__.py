"""Authentication: browser logins for people, bearer API keys for apps."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import routes  # noqa: E402,F401
