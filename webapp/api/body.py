"""Reading a request body: the JSON parse step that runs before a schema sees the body.

The schemas check the shape of a body; this step makes sure there is JSON to check: a JSON
Content-Type (415 otherwise), valid JSON (400 "Malformed JSON"), an object (422 on `body`), and
only values a column can store (no NUL, no unpaired surrogates, no 64-bit overflow, bounded
depth), whatever schema reads it next.
"""

from __future__ import annotations

import json
import math
import re

from flask import request

from ..errors import ApiError, ValidationError

MAX_DEPTH = 32
# JSON integers are unbounded; the database and the float maths downstream are not.
INT_LIMIT = 2**63
# Bodies are JSON. No Content-Type and the form type are read as JSON too: that is what
# `curl -d` sends, and v1 clients rely on it. Any other type is answered 415.
FORM = "application/x-www-form-urlencoded"


# What the full walk below looks for can only come from a few spellings in the raw body: NUL and
# unpaired surrogates only as \u escapes (raw control characters and invalid UTF-8 do not
# parse), a 64-bit overflow only as 19 or more digits in a row, an infinite float only with a
# positive exponent of three digits or more. A body with none of them (looked for in C: a
# regex over the escapes, then one `translate`) skips the string and number checks.
_ESCAPES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_DIGITS = bytes.maketrans(b"0123456789E", b"0000000000e")


def _suspect(raw: bytes) -> bool:
    """Whether the body may hold a value the full walk would refuse."""
    if _ESCAPES.search(raw):
        return True
    folded = raw.translate(_DIGITS)
    return b"0" * 19 in folded or b"e000" in folded or b"e+000" in folded


def _reject_constant(name: str):
    """Refuse the NaN/Infinity literals Python's parser would otherwise accept."""
    raise ValueError(f"{name} is not valid JSON")


def is_json(mimetype: str) -> bool:
    """Whether a body of this media type is read as JSON."""
    return (
        not mimetype
        or mimetype == FORM
        or mimetype == "application/json"
        or (mimetype.startswith("application/") and mimetype.endswith("+json"))
    )


def json_object() -> dict:
    """The request body as a JSON object (parsed once per request): 415, 400 or 422 if not."""
    # Kept in the WSGI environ: `g` lives as long as the app context, which a test (or a CLI
    # command) may share between requests.
    environ = request.environ
    if "corrigo.api_body" not in environ:
        environ["corrigo.api_body"] = _parse()
    return environ["corrigo.api_body"]


def _parse() -> dict:
    """Parse the request body as a JSON object: 400 if it is not JSON, 422 if not an object."""
    if not is_json(request.mimetype):
        raise ApiError(
            415,
            "Unsupported Media Type",
            f"The body is {request.mimetype}; send JSON with Content-Type: application/json.",
        )
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
    if _suspect(raw) or _deep(value):
        _check_values(value)  # the full walk, which names the bad value's path
    return value


def _deep(root: dict) -> bool:
    """Whether a container sits at the depth limit (then the full walk decides)."""
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return True
        for child in value.values() if type(value) is dict else value:
            if type(child) is dict or type(child) is list:  # json.loads makes no subclasses
                stack.append((child, depth + 1))
    return False


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
