"""Request bodies: JSON parsing and field checks whose errors name the offending field."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from flask import request

from ..errors import ApiError, ValidationError

# Rows per import or prediction-log request: one transaction, and a bounded response time.
MAX_ROWS = 1000
MAX_DEPTH = 32
MAX_ERRORS = 20
# JSON integers are unbounded; the database and the float maths downstream are not.
INT_LIMIT = 2**63
MAX_ID_LENGTH = 200


def _reject_constant(name: str):
    """Refuse the NaN/Infinity literals Python's parser would otherwise accept."""
    raise ValueError(f"{name} is not valid JSON")


def json_object() -> dict:
    """Parse the request body as a JSON object: 400 if it is not JSON, 422 if not an object."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, "Malformed JSON", "The request body is empty; send a JSON object.")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, "Malformed JSON", "The request body is nested too deeply.") from None
    except ValueError as exc:
        raise ApiError(
            400, "Malformed JSON", f"The request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ValidationError({"body": "must be a JSON object"})
    _check_values(value)
    return value


def _check_values(root: dict) -> None:
    """Reject values no column can store: deep nesting, NUL or unpaired surrogates, huge numbers."""
    stack: list[tuple[object, str, int]] = [(root, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationError({path: f"is nested more than {MAX_DEPTH} levels deep"})
        if isinstance(value, dict):
            for key, child in value.items():
                child_path = f"{path}.{key}" if path else key
                _check_string(key, child_path)
                stack.append((child, child_path, depth + 1))
        elif isinstance(value, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, path)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not -INT_LIMIT < value < INT_LIMIT:
            raise ValidationError({path: "is out of range for a 64-bit integer"})
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValidationError({path: "must be a finite number"})


def _check_string(value: str, path: str) -> None:
    """Strings must be storable text: valid Unicode without NUL characters."""
    if "\x00" in value:
        raise ValidationError({path: "must not contain NUL characters"})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError({path: "must be valid Unicode (no unpaired surrogates)"}) from None


def name(prefix: str, key: str) -> str:
    """The field name for `key` inside `prefix` (`items[3]` + `data` -> `items[3].data`)."""
    return f"{prefix}.{key}" if prefix else key


def only(obj: dict, allowed: Iterable[str], prefix: str = "") -> None:
    """Reject fields the endpoint does not know, so a typo is not silently ignored."""
    allowed = set(allowed)
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        expected = ", ".join(sorted(allowed))
        raise ValidationError(
            {name(prefix, unknown[0]): f"is not a known field; expected {expected}"}
        )


def required(obj: dict, key: str, prefix: str = ""):
    """Return a field that must be present."""
    if obj.get(key) is None:
        raise ValidationError({name(prefix, key): "is required"})
    return obj[key]


def optional_id(obj: dict, key: str, prefix: str = "") -> str | None:
    """Return an optional identifier: a non-empty string of at most 200 characters."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ValidationError(
            {name(prefix, key): f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"}
        )
    return value


def rows(obj: dict, key: str, limit: int) -> list:
    """Return a required list field of 1 to `limit` rows."""
    value = required(obj, key)
    if not isinstance(value, list):
        raise ValidationError({key: "must be an array"})
    if not 1 <= len(value) <= limit:
        raise ValidationError(
            {key: f"must hold 1 to {limit} rows; got {len(value)} (split larger batches)"}
        )
    return value


def each_row(values: list, key: str, check) -> list:
    """Check every row with `check(row, prefix)`; report the errors of all rows, not only the first.

    Nothing is written unless every row passes, so a batch is all or nothing.
    """
    checked, errors = [], {}
    for i, row in enumerate(values):
        prefix = f"{key}[{i}]"
        try:
            if not isinstance(row, dict):
                raise ValidationError({prefix: "must be an object"})
            checked.append(check(row, prefix))
        except ValidationError as exc:
            errors.update(exc.errors)
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        first, message = next(iter(errors.items()))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(errors, detail=f"{first}: {message}{more}; nothing was written.")
    return checked
