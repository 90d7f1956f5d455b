"""Security headers on every response, and the session and remember-me cookie flags.

The Content-Security-Policy allows scripts and styles from this site only, plus the page's own
inline blocks by a per-response nonce; no page may be framed (the runs page's Retrain button
must not load in a foreign iframe). Cookies are HttpOnly and SameSite=Lax, and Secure when
CORRIGO_SECURE_COOKIES is on (serve behind TLS).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

from flask import Flask, request

SECURE_VALUES = ("1", "true", "yes", "on")


def csp_nonce() -> str:
    """This response's nonce for inline `<script>`/`<style>` blocks (templates call it)."""
    # Kept in the request's environ: `g` can outlive a request where an app context spans many.
    return request.environ.setdefault("corrigo.csp_nonce", secrets.token_urlsafe(16))


def policy(nonce: str) -> str:
    """The Content-Security-Policy for a response whose inline blocks carry `nonce`."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            f"style-src 'self' 'nonce-{nonce}'",
            # Bar widths are set by a style attribute (a CSS variable); attributes cannot run code.
            "style-src-attr 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


# Pages drawn by a package's own template (the interactive API docs) may carry inline
# bootstrap code without a nonce; they show no stored user content. Nothing else is relaxed.
PACKAGE_PAGES = ("/api/docs",)


def policy_for(path: str) -> str:
    """The policy for a request path: the strict one, or the docs pages' inline-tolerant one."""
    if path.startswith(PACKAGE_PAGES):
        # A nonce would make browsers ignore 'unsafe-inline', so these pages get none.
        return policy("").replace(" 'nonce-'", " 'unsafe-inline'")
    return policy(csp_nonce())


def init_app(app: Flask) -> None:
    """Set the cookie flags and add the security headers to every response."""
    secure = os.environ.get("CORRIGO_SECURE_COOKIES", "").lower() in SECURE_VALUES
    app.config.setdefault("SECURE_COOKIES", secure)
    secure = bool(app.config["SECURE_COOKIES"])
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
    )
    app.config.update(SESSION_COOKIE_SECURE=secure, REMEMBER_COOKIE_SECURE=secure)
    days = int(os.environ.get("CORRIGO_REMEMBER_DAYS", "14"))
    app.config.setdefault("REMEMBER_COOKIE_DURATION", timedelta(days=days))
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def add_headers(response):
        """Add CSP, anti-framing, nosniff and referrer headers (kept if a view set its own)."""
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy_for(request.path))
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
