"""`corrigo model list|show|promote|reject|challenger|rollback`."""

from __future__ import annotations

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ModelEvent, ModelVersion


def statuses() -> dict[int, str]:
    db.session.expire_all()
    return dict(db.session.execute(select(ModelVersion.version, ModelVersion.status)).all())


def three_versions(make):
    """`news` with v1 retired, v2 champion, v3 a candidate."""
    project = make.make_project("news")
    make.make_version(project, 1, "retired", metrics={"macro_f1": 0.5})
    make.make_version(project, 2, "champion", metrics={"macro_f1": 0.75})
    make.make_version(project, 3, metrics={}, params={"clf__C": 10.0}, heldout_size=40)
    return project


def test_list_and_show(corrigo, make):
    three_versions(make)
    result = corrigo("model", "list", "news")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t")[:3] for line in result.stdout.splitlines()]
    assert lines == [
        ["v3", "candidate", "macro-F1 -"],
        ["v2", "champion", "macro-F1 0.750"],
        ["v1", "retired", "macro-F1 0.500"],
    ]
    shown = corrigo("model", "show", "news", "3")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("v3 candidate (text-logreg)\n")
    assert "held out 40 items" in shown.stdout and "param clf__C=10.0" in shown.stdout


def test_promote_reject_challenger_and_rollback_record_events_by_cli(corrigo, make):
    three_versions(make)
    result = corrigo("model", "promote", "news", "3", "--reason", "better on sport")
    assert result.exit_code == 0, result.output
    assert result.stdout == "promote v3: now champion\n"
    assert "champion v3, challenger -" in result.stderr
    assert statuses() == {1: "retired", 2: "retired", 3: "champion"}

    result = corrigo("model", "rollback", "news", "--to", "1", "--reason", "v1 was the good one")
    assert result.exit_code == 0, result.output
    assert statuses() == {1: "champion", 2: "retired", 3: "retired"}
    result = corrigo("model", "rollback", "news", "--reason", "undo")
    assert result.exit_code == 0, result.output
    assert statuses()[3] == "champion"

    events = db.session.scalars(select(ModelEvent).order_by(ModelEvent.id)).all()
    assert [(e.action, e.actor, e.reason) for e in events] == [
        ("promote", "cli", "better on sport"),
        ("rollback", "cli", "v1 was the good one"),
        ("rollback", "cli", "undo"),
    ]
    history = corrigo("model", "show", "news", "1").stdout
    assert "rollback v1 (from v3) by cli: v1 was the good one" in history


def test_conflicts_exit_1_with_the_reason_and_change_nothing(corrigo, make):
    three_versions(make)
    result = corrigo("model", "reject", "news", "2", "--reason", "no")
    assert result.exit_code == 1
    assert "champion and cannot be rejected" in result.stderr
    result = corrigo("model", "rollback", "news", "--to", "3", "--reason", "no")
    assert result.exit_code == 1 and "a rollback goes back to a retired" in result.stderr
    assert statuses() == {1: "retired", 2: "champion", 3: "candidate"}
    assert db.session.scalar(select(ModelEvent)) is None


def test_bad_arguments_exit_2(corrigo, make):
    three_versions(make)
    for args, hint in [
        (("model", "promote", "news", "9", "--reason", "x"), "VERSION"),
        (("model", "promote", "nope", "3", "--reason", "x"), "SLUG"),
        (("model", "promote", "news", "3", "--reason", "  "), "--reason"),
        (("model", "rollback", "news", "--to", "9", "--reason", "x"), "--to"),
        (("model", "promote", "news", "3"), "--reason"),
    ]:
        result = corrigo(*args)
        assert result.exit_code == 2, (args, result.output)
        assert hint in result.stderr, (args, result.stderr)
    assert statuses() == {1: "retired", 2: "champion", 3: "candidate"}


def test_challenger(corrigo, make):
    three_versions(make)
    result = corrigo("model", "challenger", "news", "3", "--reason", "compare on traffic")
    assert result.exit_code == 0, result.output
    assert "champion v2, challenger v3" in result.stderr
    result = corrigo("model", "challenger", "news", "3", "--reason", "again")
    assert result.exit_code == 1 and "already the challenger" in result.stderr
