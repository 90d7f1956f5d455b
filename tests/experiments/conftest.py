"""A text project with a champion (v1) and a challenger (v2), and an admin API client."""

from __future__ import annotations

import pytest

from tests.api.helpers import ALL_SCOPES, Api
from tests.factories import make_champion, make_key, make_project, make_version
from webapp.extensions import db

# Labels never queue a retrain here: the experiment, not the loop, is under test.
SETTINGS = {"gate": {"min_heldout": 5}, "retrain_every": 0, "audit_share": 0.1}


@pytest.fixture
def project(app):
    project = make_project(slug="news", settings=dict(SETTINGS))
    champion = make_champion(project, n_labeled=90, n_pool=10)
    # The challenger is the champion's model under another version: the two arms answer
    # alike, so what separates them in a test is only the labels and feedback it sends.
    make_version(
        project,
        champion.version + 1,
        status="challenger",
        artifact=champion.artifact,
        metrics=champion.metrics,
    )
    db.session.refresh(project)
    return project


@pytest.fixture
def api(app, client, project):
    # 2,000 units predicting three times each send more than the default per-key limit
    # (6,000 a minute) within a minute here; an app with that traffic raises it likewise.
    app.config["RATELIMIT_API"] = "100000 per minute"
    return Api(client, make_key(project, ALL_SCOPES))
