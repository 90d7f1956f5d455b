"""Fixtures for the REST API tests: a project, bearer keys, and a champion when one is needed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.api.helpers import ALL_SCOPES, FUZZ_SENT, SETTINGS, Api, label_all
from tests.factories import make_items, make_key, make_project, queue_retrain
from webapp.extensions import db
from webapp.models import ModelVersion


@pytest.fixture
def project(app):
    """The `news` text project (labels sport, politics, tech)."""
    return make_project(slug="news", settings=SETTINGS)


@pytest.fixture
def api(client, project):
    """A client with a key of `news` holding every scope."""
    return Api(client, make_key(project, ALL_SCOPES))


@pytest.fixture
def api_for(client, project):
    """Build a client for a new key of `news` with the given scopes."""
    return lambda *scopes: Api(client, make_key(project, scopes))


@pytest.fixture
def other(client, app):
    """A client with an all-scope key of another project, `sports`."""
    project = make_project(slug="sports", settings=SETTINGS)
    make_items(project, 1)
    return Api(client, make_key(project, ALL_SCOPES))


@pytest.fixture
def champion(project, run_jobs):
    """Train and promote a first model on 60 labeled items; 20 more stay unlabeled."""
    project.settings = dict(SETTINGS, retrain_every=0)
    db.session.commit()
    labeled = make_items(project, 60)
    make_items(project, 20, start=60)
    label_all(project, labeled)
    queue_retrain(project)
    run_jobs()
    db.session.expire_all()
    version = db.session.scalar(select(ModelVersion).where(ModelVersion.status == "champion"))
    assert version is not None, "the fixture's model should pass the gate"
    return version


def pytest_terminal_summary(terminalreporter):
    """Say how many generated requests the schemathesis fuzzing sent."""
    if FUZZ_SENT["requests"]:
        terminalreporter.write_line(
            f"schemathesis: {FUZZ_SENT['requests']} generated requests sent and checked"
        )
