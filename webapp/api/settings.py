"""Project settings: read them all, change some (validated by `webapp.settings`, as the CLI's
`corrigo project settings` is)."""

from __future__ import annotations

from marshmallow import Schema, fields

from .. import fields as f
from .. import settings
from ..extensions import db
from ..models import Project
from .common import BODY_ERRORS, Blueprint, scoped, with_project

blp = Blueprint("settings", __name__, description="The project's settings.")

# Field attribute names cannot hold the dots of `gate.min_delta`: each field is named with
# underscores and reads and writes the setting's own key.
_ATTRIBUTE = {key: key.replace(".", "__") for key in settings.SETTING_KEYS}
_KEY = {attribute: key for key, attribute in _ATTRIBUTE.items()}
_FIELDS = {
    "string": fields.String,
    "number": f.StrictNumber,
    "integer": lambda **kw: fields.Integer(strict=True, **kw),
    "boolean": f.StrictBoolean,
}


def _field(key: str, **kwargs) -> fields.Field:
    metadata = {"description": f"{settings.expected(key)[0].upper()}{settings.expected(key)[1:]}."}
    if key in settings.CHOICES:
        metadata["enum"] = list(settings.CHOICES[key])
    return _FIELDS[settings.TYPES[key]](data_key=key, metadata=metadata, **kwargs)


Settings = Schema.from_dict(
    {_ATTRIBUTE[key]: _field(key, required=True) for key in settings.SETTING_KEYS},
    name="Settings",
)
Settings.__doc__ = "Every setting of the project, defaults filled in."
SettingsChange = Schema.from_dict(
    {_ATTRIBUTE[key]: _field(key) for key in settings.SETTING_KEYS}, name="SettingsChange"
)
SettingsChange.__doc__ = (
    "The settings to change, each by its key; the others keep their values. Nothing changes "
    "unless every one is valid."
)


def _body(project: Project) -> dict:
    return {_ATTRIBUTE[key]: value for key, value in settings.effective(project).items()}


@blp.route("/projects/<slug>/settings")
@scoped("admin", "Every setting of the project, defaults filled in.", errors=(404,))
@with_project
@blp.response(200, Settings, description="The settings.")
def show_settings(project: Project):
    """Project settings."""
    return _body(project)


@blp.route("/projects/<slug>/settings", methods=["PATCH"])
@scoped(
    "admin",
    "Change some settings. A new `query_strategy`, or `batch_diversity` turned on or off, "
    "queues a rescore of the pool. `heldout_share` is fixed once the project has labels. An "
    "invalid value is a 422 naming its setting, and then nothing changes.",
    errors=(404, *BODY_ERRORS),
)
@with_project
@blp.arguments(SettingsChange, arg_name="payload", description="The settings to change.")
@blp.response(200, Settings, description="Every setting after the change.")
def change_settings(project: Project, payload: dict):
    """Change project settings."""
    settings.apply(project, {_KEY[attribute]: value for attribute, value in payload.items()})
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return _body(project)
