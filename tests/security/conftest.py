"""Security fixtures: people of every role in and out of a project, and a child's environment."""

from __future__ import annotations

import os
import sys

import pytest
from werkzeug.security import generate_password_hash

from tests.factories import make_project
from webapp.extensions import db
from webapp.models import Membership, User

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
    news = make_project("news", name="Newsroom Alpha", members=[])
    other = make_project("other", name="Secret Bravo", members=[])
    # One hash for all (each costs 0.3 s here); the users are otherwise what make_user makes.
    hashed = generate_password_hash(PASSWORD)
    people = {}
    for role in ROLES:
        for where in ("news", "none"):
            user = User(email=f"{role}@{where}.example", role=role, password_hash=hashed)
            db.session.add(user)
            db.session.flush()
            if where == "news":
                db.session.add(Membership(user_id=user.id, project_id=news.id))
            people[f"{role}@{where}"] = user
    db.session.commit()
    return {"news": news, "other": other, "people": people}
