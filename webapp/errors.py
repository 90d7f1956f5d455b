"""Errors as RFC 9457 problem documents for the API, HTML pages elsewhere."""

from __future__ import annotations

from flask import Flask, Response, json, render_template, request
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .extensions import db

PROBLEM = "application/problem+json"


class ApiError(Exception):
    """An error the API reports as a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail or title
        self.errors = errors or {}
        self.headers = headers or {}


class ValidationError(ApiError):
    """Bad input: each offending field is named in `errors`."""

    def __init__(self, errors: dict[str, str], detail: str | None = None):
        first = next(iter(errors.items()))
        super().__init__(422, "Invalid input", detail or f"{first[0]}: {first[1]}", errors=errors)


class Conflict(ApiError):
    def __init__(self, detail: str):
        super().__init__(409, "Conflict", detail)


class NotFound(ApiError):
    def __init__(self, detail: str = "Not found"):
        super().__init__(404, "Not found", detail)


def problem(
    status: int, title: str, detail: str, errors: dict | None = None, headers: dict | None = None
) -> Response:
    """Build a problem+json response."""
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail}
    if errors:
        body["errors"] = errors
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _wants_problem() -> bool:
    """API paths answer in JSON; pages answer in HTML."""
    return request.path.startswith("/api/")


# The database is unreachable or went away mid-request (a restart, a failover, a full pool):
# the client may retry, nothing was acknowledged, so it is a 503 and never a 500.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def _unavailable(exc: Exception) -> bool:
    """Whether `exc` says the database is out of reach rather than that the request is wrong."""
    return isinstance(exc, UNAVAILABLE) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        if _wants_problem():
            return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers)
        return render_template("error.html", status=exc.status, detail=exc.detail), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # Keep the exception's own headers (405's Allow, 401's WWW-Authenticate, …).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        if _wants_problem():
            detail = exc.description or exc.name
            if exc.code == 413:
                limit = app.config.get("MAX_CONTENT_LENGTH")
                detail = f"The request body is larger than the limit of {limit} bytes."
            return problem(exc.code or 500, exc.name, detail, headers=headers)
        page = render_template("error.html", status=exc.code, detail=exc.description)
        return page, exc.code, headers

    @app.teardown_appcontext
    def release_session(exc: BaseException | None) -> None:
        """End the request's session even if its connection died under it (Flask-SQLAlchemy's
        own teardown would raise from the rollback and turn an answered request into a 500)."""
        from .extensions import db

        for _ in range(2):
            try:
                db.session.remove()
                return
            except UNAVAILABLE as lost:
                app.logger.warning("session ended on a lost connection: %s", lost)
        db.session.registry.clear()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if _unavailable(exc):
            return database_unavailable(exc)
        app.logger.exception("unhandled error")
        # A failed statement leaves the transaction aborted; nothing of it may be committed
        # later by whatever shares the session (a test's or a CLI command's app context).
        db.session.rollback()
        if _wants_problem():
            return problem(500, "Internal Server Error", "An unexpected error occurred.")
        return render_template("error.html", status=500, detail="Unexpected error."), 500


def database_unavailable(exc: Exception) -> Response | tuple[str, int, dict]:
    """503 with Retry-After: a problem document for the API, a page that needs no database."""
    from flask import current_app

    current_app.logger.warning("database unavailable: %s", exc)
    retry_after = {"Retry-After": str(current_app.config.get("DB_RETRY_AFTER", 2))}
    detail = "The database cannot be reached right now. Try again in a few seconds."
    if _wants_problem():
        return problem(503, "Service Unavailable", detail, headers=retry_after)
    # Rendered without the context processors: they load the signed-in user from the database.
    page = current_app.jinja_env.get_template("unavailable.html").render(detail=detail)
    return page, 503, retry_after
