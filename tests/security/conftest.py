"""Security fixtures: people of every role in and out of a project, and a child's environment."""

from __future__ import annotations

import os
import sys

import pytest

from tests.factories import make_project, make_user

PASSWORD = "secret-pass"
ROLES = ("annotator", "reviewer", "engineer", "admin")


@pytest.fixture
def child_env(app):
    """The environment a subprocess (gunicorn) needs to share the test's database and Redis."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        CORRIGO_INSTANCE=app.instance_path,
        SECRET_KEY="test",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )
    return env


@pytest.fixture
def team(app):
    """Two projects, `news` and `other`; for each role a member of `news` only (`<role>@news`)
    and a user of no project (`<role>@none`). Admins see every project whatever they belong to.
    """
    news = make_project("news", members=[])
    other = make_project("other", members=[])
    people = {}
    for role in ROLES:
        people[f"{role}@news"] = make_user(f"{role}@news.example", PASSWORD, role, member_of=[news])
        people[f"{role}@none"] = make_user(f"{role}@none.example", PASSWORD, role, member_of=[])
    return {"news": news, "other": other, "people": people}
