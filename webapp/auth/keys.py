"""Bearer API keys: lookup, scope checks, and the project a key belongs to."""

from __future__ import annotations

import functools
import hashlib
import hmac

from flask import g, request
from sqlalchemy import select

from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import ApiKey, Project


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def current_key() -> ApiKey:
    """Return the API key in the Authorization header, or raise 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send an API key as `Authorization: Bearer <key>`.")
    token = token.strip()
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "cg":
        raise _unauthorized("Unknown API key.")
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    digest = hashlib.sha256(token.encode()).hexdigest()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(digest, key.key_hash):
        raise _unauthorized("Unknown API key.")
    return key


def require_scope(scope: str):
    """Decorate a view: a valid key with `scope` is required; it is put in `g.api_key`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            key = current_key()
            if scope not in key.scopes:
                raise ApiError(403, "Forbidden", f"This API key lacks the `{scope}` scope.")
            g.api_key = key
            return view(*args, **kwargs)

        wrapped.required_scope = scope
        return wrapped

    return decorator


def project_for_key(slug: str) -> Project:
    """The project named by `slug`, which must be the key's own (another's is a 404)."""
    project = db.session.get(Project, g.api_key.project_id)
    if project is None or project.slug != slug:
        raise NotFound(f"No project {slug!r} for this API key.")
    return project


def owned(row, what: str, row_id: int):
    """Return `row` if it belongs to the key's project; otherwise 404 (never reveal others')."""
    if row is None or row.project_id != g.api_key.project_id:
        raise NotFound(f"No {what} {row_id} in this API key's project.")
    return row
