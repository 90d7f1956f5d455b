"""Corrigo's web application: the app factory."""

from __future__ import annotations

import logging
import os

from flask import Flask, redirect, url_for

from . import config, errors, jobs
from .extensions import db, login_manager, migrate


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure the app: environment settings, or `test_config` when testing."""
    app = Flask(__name__, instance_path=os.environ.get("CORRIGO_INSTANCE") or None)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(config.from_environment(app.instance_path))
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    db.init_app(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    login_manager.init_app(app)
    jobs.init_app(app)
    errors.init_app(app)

    from .auth import headers, ratelimit
    from .auth.routes import load_user

    login_manager.user_loader(load_user)
    headers.init_app(app)

    from .admin import bp as admin_bp
    from .annotate import bp as annotate_bp
    from .api import init_app as init_api
    from .auth import bp as auth_bp
    from .experiments import bp as experiments_bp
    from .monitor import bp as monitor_bp
    from .ops import init_app as init_ops
    from .review import bp as review_bp
    from .runs import bp as runs_bp

    app.register_blueprint(auth_bp)
    init_api(app)
    app.register_blueprint(monitor_bp)
    app.register_blueprint(annotate_bp)
    app.register_blueprint(runs_bp)
    app.register_blueprint(experiments_bp)
    app.register_blueprint(review_bp)
    app.register_blueprint(admin_bp)
    ratelimit.init_app(app)
    init_ops(app)

    @app.get("/")
    def index():
        """Send visitors to the project list."""
        return redirect(url_for("monitor.projects"))

    from .cli import register

    register(app)
    return app


def _migrations_dir() -> str:
    """The migrations folder, found beside the package (works from a checkout and installed)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(here), "migrations")
