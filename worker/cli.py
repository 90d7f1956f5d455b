"""`corrigo worker` and `corrigo clock`, attached to the CLI by `flask.commands` entry points."""

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


@click.command("clock")
@click.option("--once", is_flag=True, help="Run one tick and stop.")
@with_appcontext
def clock(once: bool) -> None:
    """Run the scheduler: scheduled retrains, monitoring windows and webhook retries."""
    from .clock import run

    run(current_app._get_current_object(), once=once)
