"""The experiments pages: who sees what, the form that starts one (bad input re-renders with
the message and writes nothing), an experiment's figures, and the stop and override forms."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.experiments import conftest as experiments_conftest
from tests.web.html import text
from tests.web.test_experiments_browser import serve_and_label
from webapp import abtests
from webapp.extensions import db
from webapp.models import Experiment, ModelVersion

project = experiments_conftest.project  # news: champion v1, challenger v2 (a fixture)


def status_of(number: int) -> str:
    db.session.expire_all()
    return db.session.scalar(select(ModelVersion.status).where(ModelVersion.version == number))


def test_annotators_get_403_and_reviewers_read_without_forms(client, login, auth, project):
    experiment = abtests.start(project, "user:1")
    db.session.commit()
    login("annotator")
    assert client.get("/projects/news/experiments").status_code == 403
    assert client.get(f"/projects/news/experiments/{experiment.id}").status_code == 403
    form = {"csrf_token": auth.csrf(), "decision": "promote", "reason": "x"}
    assert client.post(f"/projects/news/experiments/{experiment.id}/stop", data=form).status_code
    assert status_of(2) == "challenger"

    login("reviewer")
    listing = text(client.get("/projects/news/experiments").text)
    assert "v1 vs v2" in listing and "running" in listing
    assert "Start an experiment" not in listing
    page = text(client.get(f"/projects/news/experiments/{experiment.id}").text)
    assert "against challenger v2" in page and "No look yet" in page
    assert "Stop" not in page.split("Design")[1]


def test_the_form_reports_each_bad_field_and_writes_nothing(client, login, auth, project):
    login("engineer")
    page = client.get("/projects/news/experiments")
    assert "Start an experiment" in page.text
    bad = {
        "csrf_token": auth.csrf(),
        "challenger_version": "2",
        "share": "1.5",
        "mode": "ab",
        "primary_metric": "accuracy",
        "guardrails": ["accuracy"],
        "alpha": "0.05",
        "mde": "three",
        "min_units": "100",
    }
    resp = client.post("/projects/news/experiments", data=bad)
    assert resp.status_code == 422
    shown = text(resp.text)
    assert "mde must be a number" in shown
    bad["mde"] = "0.03"
    resp = client.post("/projects/news/experiments", data=bad)
    shown = text(resp.text)
    assert resp.status_code == 422 and "share must be between 0 and 1" in shown
    assert "guardrails must not repeat the primary metric" in shown
    assert 'value="1.5"' in resp.text  # what was typed comes back
    assert db.session.scalar(select(func.count(Experiment.id))) == 0

    good = dict(bad, share="0.2", guardrails=["correction_rate"], max_days="7")
    resp = client.post("/projects/news/experiments", data=good)
    assert resp.status_code == 302
    experiment = db.session.scalar(select(Experiment))
    assert (experiment.share, experiment.max_seconds) == (0.2, 7 * 86400)
    assert resp.headers["Location"].endswith(f"/projects/news/experiments/{experiment.id}")
    # A second one is refused while it runs, with the reason on the form.
    again = client.get("/projects/news/experiments")
    assert f"#{experiment.id} is running" in text(again.text)


def test_the_page_shows_the_arms_the_comparison_and_the_split_check(client, login, project):
    experiment = abtests.start(project, "user:1", min_units=10)
    db.session.commit()
    serve_and_label(project, range(0, 150))
    assert abtests.step(experiment.id) == "continue"
    serve_and_label(project, range(150, 300))  # new evidence: a second look on the curve
    assert abtests.step(experiment.id) == "continue"
    login("engineer")
    page = client.get(f"/projects/news/experiments/{experiment.id}").text
    shown = text(page)
    assert "Split check passed" in shown
    assert "Challenger minus champion, in points" in shown and "always-valid p" in shown.lower()
    assert 'data-arm="champion"' in page and 'data-arm="challenger"' in page
    assert 'id="lift-chart"' in page and page.count('class="band"') >= 2
    # While it runs, htmx polls the figures, and the partial comes alone.
    assert 'hx-trigger="every 10s"' in page
    partial = client.get(
        f"/projects/news/experiments/{experiment.id}", headers={"HX-Request": "true"}
    ).text
    assert partial.lstrip().startswith("<div") and "Design" not in partial


def test_engineers_stop_and_override_through_the_registry(client, login, auth, project):
    experiment = abtests.start(project, "user:1")
    db.session.commit()
    login("engineer")
    url = f"/projects/news/experiments/{experiment.id}"
    form = {"csrf_token": auth.csrf(), "decision": "promote", "reason": ""}
    client.post(url + "/stop", data=form)
    assert status_of(2) == "challenger"  # no reason, nothing changed
    assert "Nothing changed" in client.get(url).text
    form["reason"] = "reads better in review"
    assert client.post(url + "/stop", data=form).status_code == 302
    assert status_of(2) == "champion"
    page = text(client.get(url).text)
    assert "Decision: promote" in page and "Override the decision" in page
    form.update(decision="rollback", reason="support tickets doubled")
    client.post(url + "/override", data=form)
    assert (status_of(1), status_of(2)) == ("champion", "retired")
    assert "Decision: rollback" in text(client.get(url).text)
