"""`corrigo project settings`: show, change with validation, and what the loop then does."""

from tests.factories import label_all, make_items, make_project
from webapp import pool
from webapp.extensions import db
from webapp.models import RetrainRun


def test_settings_show_the_defaults(corrigo, app):
    make_project()
    result = corrigo("project", "settings", "news")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "query_strategy=margin" in lines
    assert "heldout_share=0.2" in lines
    assert "retrain_every=25" in lines
    assert "gate.min_heldout=20" in lines


def test_changed_settings_drive_the_loop(corrigo, app):
    project = make_project()
    result = corrigo(
        "project",
        "settings",
        "news",
        "retrain_every=3",
        "query_strategy=entropy",
        "gate.min_delta=0.02",
    )
    assert result.exit_code == 0, result.output
    assert "query_strategy=entropy" in result.output.splitlines()
    db.session.refresh(project)
    assert project.gate_config.min_delta == 0.02
    make_items(project, 5)
    for label in ("sport", "tech", "sport"):
        item, _ = pool.next_item(project, "user:1")
        pool.annotate(project, item, "user:1", label)
    assert db.session.query(RetrainRun).count() == 1, "retrain_every=3 triggered a run"


def test_bad_settings_are_refused_and_nothing_changes(corrigo, app):
    project = make_project()
    for change, named in [
        ("query_strategy=random", "query_strategy"),
        ("retrain_every=-1", "retrain_every"),
        ("audit_share=1.5", "audit_share"),
        ("gate.min_delta=nan", "gate.min_delta"),
        ("colour=blue", "colour"),
        ("retrain_every", "CHANGES"),
    ]:
        result = corrigo("project", "settings", "news", "audit_share=0.3", change)
        assert result.exit_code == 2, (change, result.output)
        assert named in result.output
        db.session.refresh(project)
        assert project.settings == {}, "no partial update"


def test_heldout_share_is_fixed_once_labels_exist(corrigo, app):
    project = make_project()
    assert corrigo("project", "settings", "news", "heldout_share=0.3").exit_code == 0
    label_all(project, make_items(project, 3))
    result = corrigo("project", "settings", "news", "heldout_share=0.1")
    assert result.exit_code == 2
    assert "heldout_share" in result.output and "leak" in result.output
