"""Helpers for the CLI tests: invoke `corrigo …` in-process, or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def corrigo(runner):
    """Run `corrigo ARGS…` against the test app; stdout and stderr stay apart in the result."""

    def invoke(*args: str, input: str | None = None):
        """Invoke the command line with these arguments and this stdin."""
        return runner.invoke(args=list(args), input=input)

    return invoke


@pytest.fixture
def child_env(app):
    """The environment a `corrigo` subprocess needs to share the test's database and Redis."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        CORRIGO_INSTANCE=app.instance_path,
        SECRET_KEY="test",
    )
    return env


def corrigo_command(*args: str) -> list[str]:
    """The `corrigo` console script, run with the test's interpreter."""
    return [sys.executable, "-m", "webapp", *args]


@pytest.fixture
def corrigo_process(child_env):
    """Start `corrigo ARGS…` as a subprocess; every one started is stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(*args: str, **kwargs) -> subprocess.Popen:
        """Start one `corrigo` subprocess, output captured."""
        proc = subprocess.Popen(
            corrigo_command(*args),
            env=kwargs.pop("env", child_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            # A worker finishes its current job on SIGTERM, so no work horse outlives the test.
            proc.terminate()
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
