"""The runs pages: who may see them, starting a retrain, and a run's verdict as it lands."""

import pytest
from sqlalchemy import select

from tests.factories import label_all, make_items, make_project, queue_retrain
from tests.web.html import table, text
from webapp.extensions import db
from webapp.models import ModelVersion, RetrainRun

POLL = 'hx-trigger="load delay:1s"'


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/projects/news/runs"),
        ("GET", "/projects/news/runs/1"),
        ("POST", "/projects/news/runs"),
    ],
)
def test_annotators_may_not_open_runs(client, login, hx, method, path):
    project = make_project()
    db.session.add(RetrainRun(project_id=project.id))
    db.session.commit()
    login("annotator")
    response = hx(method, path) if method == "POST" else client.get(path)
    assert response.status_code == 403
    assert db.session.query(RetrainRun).count() == 1


def test_reviewers_see_runs_but_cannot_start_one(client, login, auth):
    make_project()
    login("reviewer")
    page = client.get("/projects/news/runs")
    assert page.status_code == 200
    assert "Retrain now" not in page.text
    assert "No retrains yet" in text(page.text)
    response = client.post("/projects/news/runs", data={"csrf_token": auth.csrf()})
    assert response.status_code == 403
    assert db.session.query(RetrainRun).count() == 0


def test_engineer_retrains_and_sees_the_verdict(client, login, auth, hx, run_jobs):
    project = make_project(settings={"retrain_every": 0})
    ids = make_items(project, 200)
    label_all(project, ids[:150])
    login("engineer")
    page = client.get("/projects/news/runs").text
    assert "Retrain now" in page

    response = client.post("/projects/news/runs", data={"csrf_token": auth.csrf()})
    run = db.session.scalar(select(RetrainRun))
    assert (run.status, run.trigger) == ("queued", "ui")
    assert response.headers["Location"] == f"/projects/news/runs/{run.id}"
    queued = client.get(response.headers["Location"]).text
    assert f"Retrain #{run.id} queued." in queued
    assert "Waiting for a worker" in text(queued)
    assert POLL in queued
    # A second click while it waits joins the queued run instead of adding one.
    again = client.post("/projects/news/runs", data={"csrf_token": auth.csrf()})
    assert again.headers["Location"] == f"/projects/news/runs/{run.id}"
    assert "your request joined it" in client.get(again.headers["Location"]).text
    assert db.session.query(RetrainRun).count() == 1
    listing = client.get("/projects/news/runs").text
    assert 'id="runs-table" hx-get=' in listing

    run_jobs()
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert run.status == "succeeded", run.error
    version = db.session.get(ModelVersion, run.model_version_id)

    partial = hx("GET", f"/projects/news/runs/{run.id}")
    assert partial.text.startswith('<section id="run-status">')
    assert "hx-trigger" not in partial.text
    page = client.get(f"/projects/news/runs/{run.id}").text
    seen = text(page)
    assert POLL not in page
    assert "succeeded promoted" in seen
    for reason in run.reasons:
        verdict = "pass" if reason["passed"] else "fail"
        assert f"{verdict} {reason['rule']} {reason['detail']}" in seen
    assert f"Train size {run.train_size} Held-out size {run.heldout_size}" in seen
    assert run.snapshot_digest in seen
    assert f"Model version v{version.version} champion" in seen
    metrics = run.metrics
    side = table(page, "side-by-side")
    assert side[0] == ["", f"Candidate v{version.version}", "Champion", "Δ", "Majority baseline"]
    bounds = metrics["candidate"]["intervals"]["macro_f1"]
    assert side[1] == [
        "Macro-F1",
        f"{metrics['candidate']['macro_f1']:.3f} [{bounds['lo']:.3f}, {bounds['hi']:.3f}]",
        "—",
        "—",
        f"{metrics['baseline']['macro_f1']:.3f}",  # no interval: no held-out item yet
    ]
    # The first model was judged by cross-validation: nothing to have fixed or broken.
    assert "Judged by cross-validation over its 150 training labels" in seen
    assert "There was no champion to compare with, so nothing was fixed or broken." in seen
    per_class = table(page, "per-class")
    assert [row[0] for row in per_class[1:]] == project.labels
    confusion = table(page, "confusion")
    assert [row[1:] for row in confusion[1:]] == [
        [str(cell) for cell in row] for row in metrics["candidate"]["confusion"]["matrix"]
    ]

    rows = table(client.get("/projects/news/runs").text, "list")
    assert rows[1][:5] == [
        f"#{run.id}",
        "ui",
        "succeeded",
        "promoted",
        f"{metrics['candidate']['macro_f1']:.3f}",
    ]
    assert rows[1][5] == "none"
    assert 'id="runs-table" hx-get=' not in client.get("/projects/news/runs").text


def test_retrain_without_enough_labels_is_refused_with_a_reason(client, login, auth):
    project = make_project()
    login("admin")
    response = client.post("/projects/news/runs", data={"csrf_token": auth.csrf()})
    assert response.headers["Location"] == "/projects/news/runs"
    page = text(client.get(response.headers["Location"]).text)
    assert "Not retrained: Nothing to train on: the project has no labeled items yet." in page
    label_all(project, make_items(project, 5), label="sport")
    response = client.post("/projects/news/runs", data={"csrf_token": auth.csrf()})
    page = text(client.get(response.headers["Location"]).text)
    assert "Training needs labeled items of at least two labels" in page
    assert "all carry 'sport'" in page
    assert db.session.query(RetrainRun).count() == 0


def test_a_failed_run_shows_its_error(client, login, auth, run_jobs):
    # Queued while trainable, then its labels went (here: never came) before a worker took it.
    project = make_project()
    run = queue_retrain(project)
    login("admin")
    run_jobs()
    page = client.get(f"/projects/news/runs/{run.id}").text
    db.session.refresh(run)
    assert run.status == "failed"
    assert "The run failed" in page
    assert "Nothing to train on: the project has no labeled items yet" in run.error
    assert text(run.error)[:40] in text(page)
    assert POLL not in page


def test_unknown_or_foreign_run_is_a_404(client, login):
    make_project()
    other = make_project(slug="other")
    run = RetrainRun(project_id=other.id)
    db.session.add(run)
    db.session.commit()
    login("engineer")
    assert client.get(f"/projects/news/runs/{run.id}").status_code == 404
    assert client.get(f"/projects/news/runs/{run.id + 1}").status_code == 404
    assert client.get(f"/projects/other/runs/{run.id}").status_code == 200
