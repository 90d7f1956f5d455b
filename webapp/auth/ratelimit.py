"""Rate limits (Flask-Limiter) counted in the app's own Redis: logins and API requests per key.

Failed logins are limited per client address and per email, so 50 guesses in 6 seconds are
no longer all answered. API requests are limited per key. A breach answers 429 with
`Retry-After` (a problem document on `/api/`). If Redis is down the limits fall back to
memory in each process, so a Redis outage never stops the web from answering.
"""

from __future__ import annotations

import math
import os
import time

from flask import Flask, current_app, render_template, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits.storage import RedisStorage, Storage
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import jobs
from ..errors import problem

DEFAULT_LOGIN_LIMIT = "10 per minute;50 per hour"
DEFAULT_API_LIMIT = "6000 per minute"


class AppRedisStorage(RedisStorage):
    """Limits kept in the current app's Redis (`jobs.get_redis()`: REDIS_URL or the embedded one).

    Resolved on every call rather than at start-up, so the embedded Redis starts only when a
    request first needs it (as the queue's does), and every app in a process uses its own.
    """

    STORAGE_SCHEME = ["corrigo"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options) -> None:
        """Keep only the settings; the connection is looked up on each use."""
        Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions)
        self.key_prefix = "corrigo-limits"
        self.target_server = "redis"
        self.dependency = self.dependencies["redis"].module

    @property
    def storage(self):
        """The current app's Redis connection."""
        return jobs.get_redis()

    def __getattr__(self, name: str):
        """Limits' Lua scripts (`lua_incr_expire`, …), bound to the current app's Redis.

        Made afresh on each use (hashing a short script is cheap): a script cached on the
        connection would tie the connection into a reference cycle and leak its socket.
        """
        if not name.startswith("lua_"):
            raise AttributeError(name)
        source = getattr(RedisStorage, "SCRIPT_" + name[len("lua_") :].upper())
        return jobs.get_redis().register_script(source)


def client_address() -> str:
    """The client's address (behind CORRIGO_TRUSTED_PROXIES proxies, the forwarded one)."""
    return request.remote_addr or "unknown"


def login_email() -> str:
    """The email a login form names, normalized the way the login view reads it."""
    return "email:" + request.form.get("email", "").strip().lower()[:254]


def api_key_prefix() -> str:
    """The API key's public prefix (each key has its own budget); the address if there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    parts = token.strip().split("_")
    if scheme.lower() == "bearer" and len(parts) >= 3 and parts[0] == "cg" and parts[1]:
        return "key:" + parts[1][:16]
    return "addr:" + client_address()


def login_limit() -> str:
    """The failed-login limit in force (RATELIMIT_LOGIN)."""
    return current_app.config["RATELIMIT_LOGIN"]


def api_limit() -> str:
    """The per-key API limit in force (RATELIMIT_API)."""
    return current_app.config["RATELIMIT_API"]


def _failed_login(response) -> bool:
    """Only failed logins count (a success redirects)."""
    return response.status_code != 302


# One limiter for the process (its decorators are applied at import, as Flask-Limiter expects);
# each app binds it in `init_app`, and its storage always reaches the current app's Redis.
limiter = Limiter(
    key_func=client_address,
    storage_uri="corrigo://",
    strategy="fixed-window",
    headers_enabled=False,
    swallow_errors=True,
    in_memory_fallback_enabled=True,
)

# Decorators for the login view: failed POSTs counted per address and per email.
limit_login = [
    limiter.limit(
        login_limit, key_func=client_address, methods=["POST"], deduct_when=_failed_login
    ),
    limiter.limit(login_limit, key_func=login_email, methods=["POST"], deduct_when=_failed_login),
]


def _retry_after() -> int:
    """Seconds until the breached window resets (at least 1)."""
    current = limiter.current_limit
    if current is not None:
        try:
            wait = math.ceil(current.reset_at - time.time())
            return min(max(1, wait), current.limit.get_expiry())
        except Exception:  # noqa: BLE001 - a storage error only costs the precise value
            return max(1, current.limit.get_expiry())
    return 60


def init_app(app: Flask) -> None:
    """Bind the limiter, apply the per-key limit to the API, and answer breaches with 429."""
    app.config.setdefault(
        "RATELIMIT_LOGIN", os.environ.get("CORRIGO_LOGIN_RATE_LIMIT", DEFAULT_LOGIN_LIMIT)
    )
    app.config.setdefault(
        "RATELIMIT_API", os.environ.get("CORRIGO_API_RATE_LIMIT", DEFAULT_API_LIMIT)
    )
    app.config.setdefault(
        "RATELIMIT_ENABLED", os.environ.get("CORRIGO_RATE_LIMITS", "on").lower() != "off"
    )
    proxies = int(os.environ.get("CORRIGO_TRUSTED_PROXIES", "0") or 0)
    if proxies:
        # Behind nginx every request comes from the proxy; count the client it forwards.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    limiter.init_app(app)
    # A new app starts with its Redis presumed up (an earlier app's outage is not its own).
    limiter._storage_dead = False

    @app.errorhandler(RateLimitExceeded)
    def too_many(exc: RateLimitExceeded):
        """429 with Retry-After: a problem document for the API, the login form for people."""
        wait = _retry_after()
        headers = {"Retry-After": str(wait)}
        if request.path.startswith("/api/"):
            detail = f"Rate limit of {exc.limit.limit} exceeded; retry in {wait} s."
            return problem(429, "Too Many Requests", detail, headers=headers)
        error = f"Too many failed attempts. Wait {wait} seconds, then try again."
        email = request.form.get("email", "").strip().lower()[:254].replace("\x00", "")
        page = render_template("auth/login.html", error=error, email=email)
        return page, 429, headers
