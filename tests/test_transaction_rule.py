"""The transaction rule of `webapp/transaction.py`, checked on the code and on the session.

Services flush and the entry point commits; a service that must commit is a `@unit_of_work`,
which refuses to run over its caller's uncommitted writes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.factories import make_champion, make_items, make_project
from webapp import jobs, pool, serving, training
from webapp.extensions import db
from webapp.models import Item, Prediction, Project, RetrainRun
from webapp.transaction import PendingWrites, has_pending_writes, unit_of_work

ROOT = Path(__file__).resolve().parent.parent


def _entry_point(path: Path) -> bool:
    """Views, CLI commands and the worker: the modules that own their units of work."""
    rel = path.relative_to(ROOT).as_posix()
    return (
        rel.startswith("worker/")
        or rel.startswith("webapp/api/")
        or path.name in ("routes.py", "cli.py", "commands.py", "demo.py")
        or rel == "webapp/errors.py"  # the request's error handlers end its unit of work
        or rel == "webapp/annotate/exclusion.py"  # the exclusion views of the labeling page
    )


def _commits(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("commit", "rollback")
        and ast.unparse(n.func.value).endswith("session")
        for n in ast.walk(node)
    )


def _references(node: ast.AST) -> set[str]:
    """The names a function calls or passes on (`pool.submit(_write_chunk, …)` counts)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _sources() -> dict[Path, str]:
    paths = sorted((ROOT / "webapp").rglob("*.py")) + sorted((ROOT / "worker").rglob("*.py"))
    return {p: p.read_text() for p in paths}


def _violations(everything: dict[Path, str]) -> list[str]:
    found = []
    for path, text in everything.items():
        if _entry_point(path):
            continue
        funcs = {
            n.name: n
            for n in ast.parse(text).body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        marked = {
            name
            for name, fn in funcs.items()
            if any(ast.unparse(d).endswith("unit_of_work") for d in fn.decorator_list)
        }
        callers = {
            name: {c for c, fn in funcs.items() if name in _references(fn)} for name in funcs
        }
        # A private helper that commits is fine when only units of work (or such helpers) call it.
        ok = set(marked)
        changed = True
        while changed:
            changed = False
            for name in funcs:
                if name in ok or not name.startswith("_"):
                    continue
                if callers[name] and callers[name] - {name} <= ok:
                    ok.add(name)
                    changed = True
        for name, fn in funcs.items():
            if not _commits(fn) or name in marked:
                continue
            if name in ok and not _used_elsewhere(name, path, everything):
                continue
            found.append(f"{path.relative_to(ROOT)}:{fn.lineno} {name}")
    return found


def _used_elsewhere(name: str, path: Path, everything: dict[Path, str]) -> bool:
    word = re.compile(rf"\b{re.escape(name)}\b")
    return any(word.search(text) for other, text in everything.items() if other != path)


def test_only_entry_points_and_units_of_work_commit():
    assert _violations(_sources()) == [], (
        "these functions commit or roll back but are neither an entry point nor a "
        "@unit_of_work (see webapp/transaction.py)"
    )


def test_the_rule_check_sees_a_service_that_commits():
    """The check above is not vacuous: committing services and their helpers are caught."""
    probe = ROOT / "webapp" / "pool" / "probe.py"
    text = (
        "from ..extensions import db\n"
        "from ..transaction import unit_of_work\n\n"
        "def save():\n    db.session.commit()\n\n"  # a public service that commits
        "def _helper():\n    db.session.commit()\n\n"
        "def calls_helper():\n    _helper()\n\n"  # its helper is reached from a service
        "def _fine():\n    db.session.commit()\n\n"
        "@unit_of_work\ndef unit():\n    _fine()\n    db.session.commit()\n"
    )
    assert _violations({**_sources(), probe: text}) == [
        "webapp/pool/probe.py:4 save",
        "webapp/pool/probe.py:7 _helper",
    ]


def test_a_unit_of_work_refuses_to_commit_its_callers_writes(app):
    project = make_project()
    (item_id,) = make_items(project, 1)
    db.session.get(Item, item_id).data = {"text": "changed, not committed"}
    with pytest.raises(PendingWrites, match="next_item"):
        pool.next_item(project, "ann")
    db.session.rollback()
    # Flushed but not committed counts too, and so does a bulk UPDATE.
    db.session.execute(update(Item).where(Item.id == item_id).values(score=0.5))
    assert has_pending_writes(db.session())
    with pytest.raises(PendingWrites):
        pool.next_item(project, "ann")
    db.session.rollback()
    assert not has_pending_writes(db.session())
    assert pool.next_item(project, "ann") is not None


def test_a_unit_of_work_runs_after_reads(app):
    project = make_project()
    make_items(project, 1)
    db.session.scalars(select(Project)).all()

    @unit_of_work
    def touch() -> str:
        return "ran"

    assert touch() == "ran"


def test_trigger_retrain_writes_nothing_until_its_caller_commits(app):
    project = make_project()
    make_items(project, 3)
    run = training.trigger_retrain(project, trigger="manual")
    assert run.job_id is not None
    assert jobs.fetch_job(run.job_id) is None, "enqueued before the commit"
    db.session.rollback()
    assert db.session.scalar(select(RetrainRun.id)) is None, "a rolled back trigger stays"
    run = training.trigger_retrain(project, trigger="manual")
    db.session.commit()
    assert jobs.fetch_job(run.job_id).args == [run.id]


def test_a_trigger_racing_a_committed_one_reads_the_winner(app, monkeypatch):
    """A look that missed the queued run (not committed yet when it looked) does not fail."""
    project = make_project()
    first = training.trigger_retrain(project, trigger="manual")
    db.session.commit()
    first_id, looks, real = first.id, [], training._queued_run

    def stale_first_look(project_id):
        looks.append(project_id)
        return None if len(looks) == 1 else real(project_id)

    monkeypatch.setattr(training, "_queued_run", stale_first_look)
    second = training.trigger_retrain(project, trigger="auto")
    db.session.commit()
    assert second.id == first_id and len(looks) == 2
    assert db.session.scalars(select(RetrainRun.id)).all() == [first_id]


def test_feedback_is_flushed_for_the_view_to_commit(app):
    project = make_project()
    make_champion(project)
    (prediction_id,) = serving.log_predictions(project, [{"data": {"text": "a"}, "label": "sport"}])
    db.session.commit()
    prediction = db.session.get(Prediction, prediction_id)
    feedback, created = serving.add_feedback(prediction, correct=False, idempotency_key="k1")
    assert created and has_pending_writes(db.session())
    db.session.rollback()
    feedback, created = serving.add_feedback(prediction, correct=False, idempotency_key="k1")
    assert created, "the rolled back feedback left nothing behind"
    db.session.commit()
    again, created = serving.add_feedback(prediction, correct=False, idempotency_key="k1")
    assert (again.id, created) == (feedback.id, False)
    assert db.session.get(Item, prediction.item_id).disputed_at is not None
