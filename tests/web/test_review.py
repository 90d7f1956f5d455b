"""The engineers' review on the run page (the candidate beside the champion it was judged
against, the items it fixed and broke, what changed since the champion's snapshot, the gate's
numbers, the registry's buttons) and the read-only item page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.factories import (
    REVIEW_SETTINGS,
    make_items,
    make_project,
    make_reviewed_candidate,
    make_user,
)
from tests.web.conftest import PASSWORD
from tests.web.html import table, text
from webapp.extensions import db
from webapp.models import Item, ModelVersion, RetrainRun


@pytest.fixture
def reviewed(app):
    """`news` with champion v1 and the rejected v2 that fixed the tech audits and broke the
    politics ones (see `make_reviewed_candidate`)."""
    project = make_project(settings=REVIEW_SETTINGS)
    return make_reviewed_candidate(project)


def run_page(client, made) -> str:
    """The page of the run that made v2."""
    response = client.get(f"/projects/news/runs/{made.runs[1].id}")
    assert response.status_code == 200
    return response.text


def score(value: float) -> str:
    return f"{value:.3f}"


def with_interval(value: float, bounds: dict) -> str:
    return f"{value:.3f} [{bounds['lo']:.3f}, {bounds['hi']:.3f}]"


def test_the_run_page_lists_the_items_the_candidate_fixed_and_broke(client, login, reviewed):
    login("reviewer")
    page = run_page(client, reviewed)
    fixed = table(page, "fixed-items")
    assert fixed[0] == ["Item", "Label", "Champion said", "Candidate says"]
    assert fixed[1:] == [[f"#{i}", "tech", "sport", "tech"] for i in reviewed.fixed]
    broken = table(page, "broken-items")
    assert broken[1:] == [[f"#{i}", "politics", "politics", "sport"] for i in reviewed.broken]
    for item_id in reviewed.fixed + reviewed.broken:
        assert f'href="/projects/news/items/{item_id}"' in page
    seen = text(page)
    assert "5 fixed: the champion was wrong, the candidate is right" in seen
    assert "5 broken: the champion was right, the candidate is wrong" in seen
    assert "5 right by both 0 wrong by both" in seen
    assert (
        "Judged on the 15 held-out audits v1 was not judged on, paired: both models "
        "predicted the same items" in seen
    )
    # A reviewer reads; only engineers and admins get the registry's buttons.
    assert 'id="registry-actions"' not in page and "Promote to champion" not in seen


def test_the_run_page_counts_the_labels_added_and_corrected_since_the_champions_snapshot(
    client, login, reviewed
):
    login("reviewer")
    page = run_page(client, reviewed)
    seen = text(page)
    assert "The candidate's training labels against those v1 trained on." in seen
    assert "6 labels added 40 labels corrected 2 items removed from training" in seen
    corrected = table(page, "corrected-labels")
    tech = set(reviewed.relabeled_tech)
    expected = [
        [f"#{i}", "sport", "tech"] if i in tech else [f"#{i}", "politics", "sport"]
        for i in reviewed.corrected
    ]
    assert corrected[0] == ["Item", "Was", "Now"] and corrected[1:] == expected
    added = table(page, "added-labels")
    assert [row[0] for row in added[1:]] == [f"#{i}" for i in reviewed.added]
    removed = table(page, "removed-labels")
    assert removed[1:] == [[f"#{i}", "sport"] for i in reviewed.removed]


def test_the_side_by_side_and_per_class_delta_numbers_are_the_runs_metrics(client, login, reviewed):
    login("reviewer")
    page = run_page(client, reviewed)
    run = reviewed.runs[1]
    cand, champ = run.metrics["candidate"], run.metrics["champion"]
    side = table(page, "side-by-side")
    assert side[0] == ["", "Candidate v2", "Champion v1", "Δ", "Majority baseline"]
    rows = {row[0]: row for row in side[1:]}
    for key, name in [("macro_f1", "Macro-F1"), ("accuracy", "Accuracy")]:
        assert rows[name][1] == with_interval(cand[key], cand["intervals"][key])
        assert rows[name][2] == with_interval(champ[key], champ["intervals"][key])
        assert rows[name][3] == f"{cand[key] - champ[key]:+.3f}"
    brier = rows["Brier score lower is better"]
    assert brier[1:3] == [score(cand["calibration"]["brier"]), score(champ["calibration"]["brier"])]

    deltas = table(page, "class-deltas")
    assert deltas[0] == ["Class", "Support", "Recall", "Precision", "F1", "Class rule"]
    assert deltas[1] == ["v1", "v2", "Δ"] * 3
    deltas = deltas[1:]  # the data rows from deltas[1] on
    assert [row[0] for row in deltas[1:]] == ["sport", "politics", "tech"]
    for row in deltas[1:]:
        label = row[0]
        new, old = cand["per_class"][label], champ["per_class"][label]
        assert row[1] == str(new["support"])
        assert row[2] == with_interval(old["recall"], champ["intervals"]["recall"][label])
        assert row[3] == with_interval(new["recall"], cand["intervals"]["recall"][label])
        assert row[4] == f"{new['recall'] - old['recall']:+.3f}"
        assert row[5:8] == [
            score(old["precision"]),
            score(new["precision"]),
            f"{new['precision'] - old['precision']:+.3f}",
        ]
        assert row[8:11] == [score(old["f1"]), score(new["f1"]), f"{new['f1'] - old['f1']:+.3f}"]
    verdicts = {row[0]: row[11] for row in deltas[1:]}
    # Politics lost all 5 items (recall 1 -> 0), significant by McNemar (p = 0.5^5): flagged.
    assert verdicts == {"sport": "pass", "politics": "fails (McNemar p = 0.0312)", "tech": "pass"}
    flagged = re.findall(r'<tr class="flagged">\s*<th scope="row">(\w+)</th>', page)
    assert flagged == ["politics"]

    matrices = [t for t in re.findall(r'<table class="confusion".*?</table>', page, re.S)]
    assert len(matrices) == 2
    for html, metrics in zip(matrices, (cand, champ), strict=True):
        cells = [row[1:] for row in table(html, "confusion")[1:]]
        assert cells == [[str(c) for c in row] for row in metrics["confusion"]["matrix"]]


def test_every_gate_rule_shows_its_verdict_and_numbers(client, login, reviewed):
    login("reviewer")
    page = run_page(client, reviewed)
    run = reviewed.runs[1]
    assert [r["rule"] for r in run.reasons] == [
        "heldout_size",
        "observed_gain",
        "paired_test",
        "no_class_regression",
    ]
    seen = text(page)
    for reason in run.reasons:
        verdict = "pass" if reason["passed"] else "fail"
        assert f"{verdict} {reason['rule']} {reason['detail']} Numbers" in seen
    numbers = {r["rule"]: r["numbers"] for r in run.reasons}
    assert "size 15 minimum 5" in seen
    paired = numbers["paired_test"]
    assert f"p_better {paired['p_better']:.4g}" in seen and f"n_boot {paired['n_boot']}" in seen
    assert "failed politics" in seen and "max_class_drop 0.1" in seen


def test_engineers_promote_and_roll_back_from_the_run_page_and_come_back(
    client, login, auth, reviewed
):
    login("engineer")
    page = run_page(client, reviewed)
    seen = text(page)
    # v2 was rejected: it may be promoted (overruling the gate) or made the challenger.
    assert "Change v2" in seen and "Promote to champion" in seen and "Make challenger" in seen
    assert 'name="back" value="run"' in page
    run_url = f"/projects/news/runs/{reviewed.runs[1].id}"
    form = {"csrf_token": auth.csrf(), "reason": "fixes tech", "back": "run"}
    response = client.post("/projects/news/models/2/promote", data=form)
    assert response.headers["Location"] == run_url
    seen = text(client.get(run_url).text)
    assert "v2 is the champion now" in seen and "Model version v2 champion" in seen
    # Now the champion, its run page offers the way back to v1.
    assert "Roll back to v1" in seen
    form = {**form, "reason": "politics broke", "to_version": "1"}
    response = client.post("/projects/news/models/rollback", data=form)
    assert response.headers["Location"] == f"/projects/news/runs/{reviewed.runs[0].id}"
    assert "Rolled back: v1 is the champion again." in text(
        client.get(response.headers["Location"]).text
    )
    db.session.expire_all()
    statuses = dict(db.session.execute(select(ModelVersion.version, ModelVersion.status)).all())
    assert statuses == {1: "champion", 2: "retired"}


def test_a_run_recorded_before_per_item_predictions_says_so(client, login, reviewed):
    run = db.session.get(RetrainRun, reviewed.runs[1].id)
    run.metrics = {k: v for k, v in run.metrics.items() if k != "items"}
    db.session.commit()
    login("reviewer")
    seen = text(run_page(client, reviewed))
    assert "This run did not record its per-item predictions" in seen
    assert "40 labels corrected" in seen  # the snapshots still compare


def test_the_item_page_shows_the_text_the_label_the_split_and_the_history(client, login, reviewed):
    login("reviewer")
    corrected = reviewed.relabeled_tech[0]
    page = client.get(f"/projects/news/items/{corrected}")
    assert page.status_code == 200
    item = db.session.get(Item, corrected)
    seen = text(page.text)
    assert f"Item #{corrected}" in seen and item.data["text"] in seen
    assert "Label tech since" in seen and "Split training" in seen
    history = table(page.text, "item-labels")
    assert [row[1:] for row in history[1:]] == [
        ["tech", "user:fixer", "outside the queue"],
        ["sport", "import:first.csv", "outside the queue"],
    ]
    audit = reviewed.fixed[0]
    seen = text(client.get(f"/projects/news/items/{audit}").text)
    assert "Split held-out: models are measured on it, none trains on it" in seen
    assert table(client.get(f"/projects/news/items/{audit}").text, "item-labels")[1][3] == "audit"
    removed = text(client.get(f"/projects/news/items/{reviewed.removed[0]}").text)
    assert "excluded from training and evaluation" in removed and "duplicate text" in removed
    assert client.get("/projects/news/items/999999").status_code == 404


def test_annotators_and_other_projects_cannot_open_an_item(client, auth, login, app):
    project = make_project()
    (mine,) = make_items(project, 1)
    login("annotator")
    assert client.get(f"/projects/news/items/{mine}").status_code == 403
    reviewer = make_user("r@example.com", PASSWORD, "reviewer")  # a member of `news` only
    other = make_project(slug="other", members=[])
    (theirs,) = make_items(other, 1)
    assert auth.login(reviewer.email, PASSWORD).status_code == 302
    assert client.get(f"/projects/news/items/{mine}").status_code == 200
    assert client.get(f"/projects/news/items/{theirs}").status_code == 404
    assert client.get(f"/projects/other/items/{theirs}").status_code == 404
