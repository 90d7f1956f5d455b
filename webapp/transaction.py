"""The transaction rule: services flush, the entry point commits.

A unit of work is one HTTP request, one CLI command, or one step of a background job. The
functions a unit of work calls (pool, serving, settings, training's triggers) add, flush and
read rows, and never commit or roll back: the view, the command or the job that called them
commits once, when its unit of work is whole, so a request is written entirely or not at all
and a caller can combine two services in one transaction.

The entry points are the views (`webapp/*/routes.py`, `webapp/api/*.py`), the CLI commands
(`webapp/cli.py`, `webapp/*/cli.py`, `webapp/demo.py`) and the jobs (`run_retrain`,
`run_rescore` and the sweeps in `webapp/training.py`, which `worker/` calls). A job commits
each step it must not lose (the claim of its run, the result), each step its own unit.

- **A service that must commit says so, with `@unit_of_work`.** A few services are units of
  work of their own, because what they promise needs a commit in the middle: `next_item`
  (a lease is visible to racing experts the moment it is taken, and on SQLite a read lock must
  end before the write lock is asked for), `annotate` (the automatic retrain is claimed from
  the committed label counts, after the label's commit, or two concurrent labels could both
  miss a crossing) and the streaming writers below. The decorator refuses to start while the
  caller has writes that are not committed, so such a service never commits half of somebody
  else's unit of work; the caller commits first (`tests/test_transaction_rule.py` checks that
  every function that commits is an entry point, a `@unit_of_work`, or a private helper of
  one).

- **Jobs are enqueued after the commit that records them.** A service that needs background
  work records the intent as a row (a `Task`, a `RetrainRun`) and registers the enqueue with
  `after_commit`: a worker never looks for a row that is not committed yet, and a rolled-back
  unit of work enqueues nothing. The row keeps the intent when Redis is unreachable;
  `training.requeue_pending` enqueues it later.
- **Races on a unique index are settled inside the transaction** (`INSERT … ON CONFLICT DO
  NOTHING`, then read the winner), never by a rollback that would discard the caller's work.
- **Streaming bulk writers are units of work per batch**: `pool.import_items` (and the CLI
  import that drives it), `pool.label_unlabeled`, and the retrain and rescore jobs commit each
  batch or step themselves, so a 1M-row import or rescore never holds one huge transaction.
  Each says so in its docstring.
- **No transaction is held while waiting**: a process that goes idle (the worker between
  jobs, a CLI waiting on input) ends its session first (`db.session.remove()`), or PostgreSQL
  keeps every row version since its snapshot and VACUUM removes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from .extensions import db

_KEY = "corrigo.after_commit"
_WROTE = "corrigo.wrote"

P = ParamSpec("P")
R = TypeVar("R")


class PendingWrites(RuntimeError):
    """A `@unit_of_work` was called while its caller had writes that are not committed."""


def unit_of_work(fn: Callable[P, R]) -> Callable[P, R]:
    """Mark a service that commits itself; refuse to run over a caller's uncommitted writes."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if has_pending_writes(db.session()):
            raise PendingWrites(
                f"{fn.__qualname__} commits its own unit of work: commit (or roll back) the "
                "caller's writes before calling it"
            )
        return fn(*args, **kwargs)

    wrapper.unit_of_work = True  # type: ignore[attr-defined]
    return wrapper


def has_pending_writes(session: Session) -> bool:
    """Whether the session holds writes, flushed or not, that its transaction has not committed."""
    if session.new or session.deleted or session.info.get(_WROTE):
        return True
    return any(session.is_modified(obj) for obj in session.dirty)  # net changes only


def note_write() -> None:
    """Record a write the session cannot see (a driver-level executemany on its connection)."""
    db.session.info[_WROTE] = True


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, flush_context) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


def after_commit(callback: Callable[[], object], key: str | None = None) -> None:
    """Run `callback` once the current session's transaction commits; drop it on rollback.

    `key` names what the callback does (a job id), so `will_run_after_commit` can tell.
    """
    db.session.info.setdefault(_KEY, []).append((key, callback))


def will_run_after_commit(key: str | None) -> bool:
    """Whether a callback registered under `key` waits for the current transaction's commit."""
    return key is not None and any(k == key for k, _ in db.session.info.get(_KEY, ()))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    """Run the callbacks registered for the transaction that just committed, in order."""
    session.info.pop(_WROTE, None)
    callbacks = session.info.pop(_KEY, [])
    for _key, callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    """A rolled-back unit of work enqueues nothing."""
    session.info.pop(_WROTE, None)
    session.info.pop(_KEY, None)
