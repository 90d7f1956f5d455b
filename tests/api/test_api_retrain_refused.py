"""A retrain the project cannot train is refused with a 409 that says why, not queued to fail."""

from __future__ import annotations

from sqlalchemy import func, select

from labeling.split import heldout_mask
from tests.api.helpers import assert_problem
from tests.factories import label_all, make_items
from webapp import pool, training
from webapp.extensions import db
from webapp.models import Item, ModelVersion, RetrainRun


def test_a_retrain_with_no_labels_is_a_409_in_words(api, project):
    doc = assert_problem(api.post("/projects/news/retrain"), 409)
    assert doc["detail"] == (
        "Nothing to train on: the project has no labeled items yet. Label items of at least "
        "two labels, then retrain."
    )
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 0


def test_a_retrain_with_one_label_only_is_a_409_naming_it(api, project):
    label_all(project, make_items(project, 8), label="politics")
    doc = assert_problem(api.post("/projects/news/retrain"), 409)
    assert "at least two labels" in doc["detail"] and "all carry 'politics'" in doc["detail"]
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 0
    label_all(project, make_items(project, 8, start=8), label="sport")
    assert api.post("/projects/news/retrain").status_code == 202


def test_labels_gone_after_the_trigger_fail_the_run_in_words(api, project, run_jobs):
    ids = make_items(project, 12)
    label_all(project, ids)
    run_id = api.post("/projects/news/retrain").get_json()["run_id"]
    # The labels are undone before a worker takes the run (e.g. the items were excluded).
    for item in db.session.scalars(select(Item).where(Item.id.in_(ids))):
        item.label = None
    db.session.commit()
    run_jobs()
    db.session.expire_all()
    run = api.get(f"/projects/news/runs/{run_id}").get_json()
    assert run["status"] == "failed"
    assert "Nothing to train on: the project has no labeled items yet" in run["error"]
    assert "ValueError" not in run["error"]
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0


def test_the_check_counts_only_the_training_split(project):
    # Two labels, but every item of the second label is held out: training would see one.
    # (Imported labels are split by the stable hash; the queue's own labels always train.)
    ids = make_items(project, 60)
    held = [i for i in ids if heldout_mask([i], project.setting("heldout_share"))[0]]
    kept = [i for i in ids if i not in held]
    label_all(project, kept[:6], label="sport")
    pool.label_unlabeled(project, [(i, "tech") for i in held[:3]], "import")
    try:
        training.check_trainable(project)
    except training.NotTrainable as exc:
        assert "the 6 labeled items it trains on all carry 'sport'" in str(exc)
    else:
        raise AssertionError("a project whose training split holds one label is not trainable")
