"""The `corrigo` command line."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup


def register(app: Flask) -> None:
    """Attach Corrigo's commands to the app's CLI."""


def main() -> None:
    """Entry point of the `corrigo` console script."""
    from . import create_app

    FlaskGroup(create_app=create_app, help="Corrigo: keep production classifiers improving.")()


_ = click
