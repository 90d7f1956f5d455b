"""`corrigo worker`: the RQ worker, attached to the CLI through the `flask.commands` entry point."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop once the queue is empty instead of waiting.")
@with_appcontext
def worker(burst: bool) -> None:
    """Work the Corrigo job queue (retrains, rescoring) until stopped."""
    from .main import run

    run(burst=burst, app=current_app._get_current_object())
