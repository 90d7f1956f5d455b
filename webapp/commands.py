"""The `corrigo` command groups (`project`, `user`, `apikey`) and the look-ups their commands
share. `webapp.cli` and `webapp.admin.cli` both add commands to these groups, so neither has
to import the other's module."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup
from sqlalchemy import select

from .extensions import db
from .models import Project

project_cli = AppGroup("project", help="Create and list projects.")
user_cli = AppGroup("user", help="Create web logins.")
apikey_cli = AppGroup("apikey", help="Create API keys for apps and scripts.")


def project_arg(slug: str) -> Project:
    """The project named `slug`, or a usage error naming the argument."""
    project = db.session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        known = db.session.scalars(select(Project.slug).order_by(Project.slug)).all()
        hint = f"; known projects: {', '.join(known)}" if known else "; there are no projects yet"
        raise click.BadParameter(f"no project {slug!r}{hint}", param_hint="'SLUG'")
    return project


def stdin_is_tty() -> bool:
    """Whether a person is typing at standard input (tests patch this)."""
    return sys.stdin is not None and sys.stdin.isatty()
