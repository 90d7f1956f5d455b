"""Corrigo's background worker: RQ jobs that take ids and do the slow work."""

from __future__ import annotations

import os

from flask import Flask

_app: Flask | None = None
_app_pid: int | None = None


def get_app() -> Flask:
    """The app the jobs run in: built once by the entry point (or on first use under plain `rq`)."""
    if _app is None:
        from webapp import create_app

        set_app(create_app())
    return _app


def set_app(app: Flask) -> None:
    """Use `app` for the jobs run in this process (the entry point and the tests call this)."""
    global _app, _app_pid
    _app, _app_pid = app, os.getpid()


def in_forked_child() -> bool:
    """Whether this is a work horse forked from the process that built the app."""
    return _app_pid is not None and os.getpid() != _app_pid
