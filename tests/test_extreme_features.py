"""One tabular item with extreme features must not stop a project from learning."""

import math
import random

import pytest
from sqlalchemy import func, select

from labeling.training import FEATURE_BOUND
from tests.api.helpers import ALL_SCOPES, Api, assert_problem
from tests.factories import make_key, make_project, queue_retrain
from webapp.extensions import db
from webapp.models import Annotation, Item, RetrainRun, Task


def _tabular_project(template="tabular-logreg"):
    """A two-class tabular project with 120 separable labeled items."""
    project = make_project(
        slug="tab", kind="tabular", template=template, settings={"gate": {"min_heldout": 5}}
    )
    rng = random.Random(0)
    for i in range(120):
        label = "a" if i % 2 else "b"
        shift = 3.0 if label == "a" else -3.0
        data = {"features": {"x1": rng.gauss(shift, 1.0), "x2": rng.gauss(0.0, 1.0)}}
        db.session.add(Item(project_id=project.id, data=data, label=label, source="import"))
    db.session.commit()
    return project


@pytest.mark.parametrize(
    "template,value",
    [("tabular-logreg", 1.7e308), ("tabular-logreg", -1.7e308), ("tabular-hgb", 1.7e308)],
)
def test_a_labeled_item_with_huge_features_does_not_break_the_retrain(
    app, run_jobs, template, value
):
    project = _tabular_project(template)
    # Stored before ingest refused such values (or by any other path that skipped the checks).
    # Five of them, so some land in training and some in the held-out set.
    for _ in range(5):
        item = Item(
            project_id=project.id,
            data={"features": {"x1": value, "x2": 0.5}},
            label="a",
            source="import",
        )
        db.session.add(item)
        db.session.flush()
        db.session.add(
            Annotation(project_id=project.id, item_id=item.id, annotator="user:1", label="a")
        )
    unlabeled = Item(project_id=project.id, data={"features": {"x1": value, "x2": 1.0}})
    db.session.add(unlabeled)
    db.session.commit()
    run = queue_retrain(project)
    run_jobs()  # the retrain, then the rescore its promotion queues
    db.session.expire_all()
    run = db.session.get(RetrainRun, run.id)
    assert run.status == "succeeded", run.error
    assert run.train_size + run.heldout_size == 125
    assert run.decision == "promoted", run.reasons
    assert run.metrics["candidate"]["macro_f1"] > 0.9, "the ordinary rows are still learned"
    task = db.session.scalar(select(Task))
    assert task.status == "succeeded", task.error
    score = db.session.get(Item, unlabeled.id).score
    assert score is not None and math.isfinite(score)


@pytest.mark.parametrize(
    "raw", ["1.7e308", "-1.7e308", "1e16", "1" + "0" * 400, "-" + "9" * 400, "1e999"]
)
def test_the_api_refuses_features_beyond_the_bound(client, app, raw):
    project = make_project(slug="tab", kind="tabular")
    api = Api(client, make_key(project, ALL_SCOPES))
    # Sent as raw JSON: Python would write 1e999 as `Infinity`, and a client need not.
    body = '{"items": [{"data": {"features": {"x1": RAW, "x2": 1}}}]}'.replace("RAW", raw)
    resp = api.post("/projects/tab/items", data=body, content_type="application/json")
    assert_problem(resp, 422, "items[0].data.features.x1")
    assert db.session.scalar(select(func.count(Item.id))) == 0


def test_the_bound_is_named_in_the_error(client, app):
    project = make_project(slug="tab", kind="tabular")
    api = Api(client, make_key(project, ALL_SCOPES))
    rows = [{"data": {"features": {"x1": 2e15, "x2": 1}}}]
    doc = assert_problem(api.post("/projects/tab/items", {"items": rows}), 422)
    assert doc["errors"] == {
        "items[0].data.features.x1": "must be a number between -1e+15 and 1e+15"
    }


def test_values_at_the_bound_are_accepted(client, app):
    project = make_project(slug="tab", kind="tabular")
    api = Api(client, make_key(project, ALL_SCOPES))
    rows = [{"data": {"features": {"x1": FEATURE_BOUND, "x2": -FEATURE_BOUND}}}]
    assert api.post("/projects/tab/items", {"items": rows}).status_code == 201


def test_the_cli_import_refuses_them_too_and_names_the_line(runner, app, tmp_path):
    make_project(slug="tab", kind="tabular")
    path = tmp_path / "rows.csv"
    path.write_text("x1,x2\n1.5,2\n3e20,1\n")
    result = runner.invoke(args=["import", "tab", str(path)])
    assert result.exit_code == 2, result.output
    assert "line 3" in result.stderr and "x1" in result.stderr, result.stderr
    assert db.session.scalar(select(func.count(Item.id))) == 0
