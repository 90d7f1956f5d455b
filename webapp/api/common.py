"""What every API resource shares: the blueprint class, the argument parser that turns schema
errors into problem documents keyed by field path, the scope decorator, and small helpers.

Each resource module (`items`, `predictions`, `queue`, `runs`, `models`, `labels`, `docs`)
declares its request and response bodies as marshmallow schemas beside its views; the parser
validates requests with them and flask-smorest draws the OpenAPI document from the same classes.
"""

from __future__ import annotations

import functools
import re
from copy import deepcopy
from datetime import datetime

from flask import Response, jsonify
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.utils import deepupdate
from marshmallow import Schema, fields, validate
from sqlalchemy.exc import IntegrityError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from ..auth.keys import owned, project_for_key, require_scope
from ..errors import ValidationError
from ..extensions import db
from ..fields import MAX_BIG_ID, MAX_INT_ID
from . import body

PREFIX = "/api/v1"
# Errors listed for one request: enough to fix a batch, bounded for a 1,000-row one.
MAX_ERRORS = 20

# Error answers, documented once as response components (problem documents) and referred to
# by name; flask-smorest's own names for the status codes, so its 422 reference resolves here.
ERRORS = {
    400: ("BAD_REQUEST", "The body is not valid JSON (`Malformed JSON`)."),
    401: (
        "UNAUTHORIZED",
        "No API key, a malformed Authorization header, or an unknown or revoked key.",
    ),
    403: ("FORBIDDEN", "The API key lacks the scope this operation needs."),
    404: (
        "NOT_FOUND",
        "No such resource in the API key's project (another project's resources are never shown).",
    ),
    409: ("CONFLICT", "The request conflicts with the project's current state."),
    413: ("REQUEST_ENTITY_TOO_LARGE", "The body is larger than the server's limit."),
    415: (
        "UNSUPPORTED_MEDIA_TYPE",
        "The body is not JSON (send `Content-Type: application/json`).",
    ),
    422: (
        "UNPROCESSABLE_ENTITY",
        "The body (or a parameter) is well-formed but invalid; `errors` names each field.",
    ),
    429: (
        "TOO_MANY_REQUESTS",
        "The API key sent more requests than its limit allows; retry after `Retry-After` seconds.",
    ),
    503: (
        "SERVICE_UNAVAILABLE",
        "The database is briefly unreachable; nothing was written. Retry after `Retry-After` "
        "seconds.",
    ),
}
BODY_ERRORS = (400, 413, 415, 422)


class Problem(Schema):
    """An RFC 9457 problem document; every error answer has this shape."""

    type = fields.String(required=True, metadata={"examples": ["about:blank"]})
    status = fields.Integer(required=True, validate=validate.Range(400, 599))
    title = fields.String(required=True, metadata={"examples": ["Invalid input"]})
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={
            "description": (
                "Per-field messages, keyed by the field's path in the request "
                "(e.g. `items[3].data.text`, `label`, `format`, `Idempotency-Key`)."
            )
        },
    )


def field_errors(messages, path: str = "") -> dict[str, str]:
    """Flatten marshmallow's nested messages into {field path: message} (`items[3].data.text`)."""
    out: dict[str, str] = {}
    stack = [(path, messages)]
    while stack and len(out) < MAX_ERRORS:
        where, node = stack.pop(0)
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, int):
                    stack.append((f"{where}[{key}]", child))
                elif key == "_schema":
                    stack.append((where, child))
                else:
                    stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(node, list) and node and all(isinstance(m, str) for m in node):
            out.setdefault(where or "body", " ".join(node))
        elif isinstance(node, list):
            stack.extend((where, child) for child in node)
        else:
            out.setdefault(where or "body", str(node))
    return out


def invalid(errors: dict[str, str], batch: bool = False) -> ValidationError:
    """The 422 for these field errors; a batch's detail says that nothing was written."""
    first, message = next(iter(errors.items()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    tail = "; nothing was written." if batch else ""
    return ValidationError(errors, detail=f"{first}: {message}{more}{tail}")


class Parser(FlaskParser):
    """webargs' parser reading bodies through the strict JSON step and answering in problems."""

    DEFAULT_VALIDATION_STATUS = 422

    def load_json(self, req, schema):
        """The body as one JSON object, whatever the (JSON or form) Content-Type says."""
        return body.json_object()

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        """Raise the problem document naming each field by its path."""
        messages = error.messages
        if isinstance(messages, dict) and len(messages) == 1:
            # webargs nests messages under the location ("json", "query", "headers").
            (messages,) = messages.values()
        raise invalid(field_errors(messages), batch="json" in error.messages)


PATH_PARAMETERS = {
    "slug": "The project's slug; it must be the API key's own project.",
    "item_id": "An item of the API key's project.",
    "prediction_id": "A prediction of the API key's project.",
    "run_id": "A retrain run of the API key's project.",
}


class Blueprint(SmorestBlueprint):
    """A resource's blueprint: the problem-document parser, and its name as the default tag."""

    ARGUMENTS_PARSER = Parser()

    def route(self, rule, *, parameters=None, tags=None, **options):
        """Register a view, tagged with the resource's name, its path parameters described."""
        described = [
            {"in": "path", "name": name, "description": description}
            for name, description in PATH_PARAMETERS.items()
            if re.search(rf"<(?:\w+:)?{name}>", rule)
        ]
        return super().route(
            rule, parameters=[*described, *(parameters or [])], tags=tags or [self.name], **options
        )


def _operation_id(name: str) -> str:
    """`import_items` -> `importItems`."""
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def scoped(scope: str | None, description: str, errors: tuple[int, ...] = ()):
    """Decorate a view: require `scope` (None: public) and document it, its prose and errors.

    The operation gets its id from the view's name, `x-required-scope`, bearer security and
    the 401/403 answers; `errors` lists the other documented error statuses.
    """

    def decorator(view):
        # Any operation may meet a database blip (503); a keyed one, the key's rate limit (429).
        statuses = set(errors) | {503} | ({401, 403, 429} if scope else set())
        doc: dict = {"operationId": _operation_id(view.__name__)}
        if scope is None:
            doc.update(description=description + "\n\nPublic: no API key is needed.", security=[])
        else:
            doc.update(
                {
                    "description": description
                    + f"\n\nRequires an API key with the `{scope}` scope.",
                    "security": [{"bearerAuth": []}],
                    "x-required-scope": scope,
                }
            )
        wrapped = require_scope(scope)(view) if scope is not None else view
        # The documentation flask-smorest collects from its own decorators, extended in place
        # of stacking one wrapper per documented answer.
        apidoc = deepcopy(getattr(wrapped, "_apidoc", {}))
        responses = apidoc.setdefault("response", {}).setdefault("responses", {})
        for status in sorted(statuses):
            responses.setdefault(status, []).append(ERRORS[status][0])
        apidoc["manual_doc"] = deepupdate(apidoc.get("manual_doc", {}), doc)
        wrapped._apidoc = apidoc
        return wrapped

    return decorator


class BigIdConverter(IntegerConverter):
    """A path id of a 64-bit column: a larger number is a 404 before any query."""

    # Not `max`: werkzeug's converter keeps its own (unset) bound there.
    limit = MAX_BIG_ID

    def to_python(self, value: str) -> int:
        """The id; 404 when no row can have it.

        Not werkzeug's "no match": with a second rule on the same path (POST and DELETE of
        one resource), that would make the other rule's method answer 405 instead.
        """
        number = super().to_python(value)
        if number > self.limit:
            raise NotFound(f"There is no row with id {number}: ids stop at {self.limit}.")
        return number


class IntIdConverter(BigIdConverter):
    """A path id of a 32-bit column (INTEGER on PostgreSQL)."""

    limit = MAX_INT_ID


CONVERTERS = {"id64": BigIdConverter, "id32": IntIdConverter}


def id_schema(converter: BigIdConverter) -> dict:
    """The OpenAPI schema of a path id: a non-negative integer no larger than its column takes."""
    return {"type": "integer", "minimum": 0, "maximum": converter.limit}


def row(model, row_id: int, what: str):
    """Load a row of the key's project by id, or 404."""
    return owned(db.session.get(model, row_id), what, row_id)


def retrying(write, *args):
    """Run a write once more if a concurrent request inserted the same external id first."""
    try:
        return write(*args)
    except IntegrityError:
        db.session.rollback()
        return write(*args)


def timestamp(value: datetime | None) -> str | None:
    """Format a stored (naive UTC) time as ISO 8601 with a Z."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def created(payload: dict, status: int = 201, location: str | None = None) -> Response:
    """A JSON response with a status other than 200 (and a Location when there is one)."""
    resp = jsonify(payload)
    resp.status_code = status
    if location:
        resp.headers["Location"] = location
    return resp


def check_rows(rows: list, key: str, check) -> list:
    """Run the project check `check(row, prefix)` on every row; report all bad rows (up to 20).

    Nothing is written unless every row passes, so a batch is all or nothing.
    """
    checked, errors = [], {}
    for i, one in enumerate(rows):
        try:
            checked.append(check(one, f"{key}[{i}]"))
        except ValidationError as exc:
            errors.update(exc.errors)
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        raise invalid(errors, batch=True)
    return checked


DATE_TIME = {"format": "date-time"}


def with_project(view):
    """Decorate a view: resolve `slug` to the key's own project (404 otherwise) before any
    body is read, and pass it as `project`."""

    @functools.wraps(view)
    def wrapped(*args, slug: str, **kwargs):
        return view(*args, project=project_for_key(slug), **kwargs)

    return wrapped


def with_row(model, what: str, param: str):
    """Decorate a view: load the row whose id is the path's `param` (404 unless it is the key
    project's) before any body is read, and pass it as `what`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            kwargs[what] = row(model, kwargs.pop(param), what)
            return view(*args, **kwargs)

        return wrapped

    return decorator
