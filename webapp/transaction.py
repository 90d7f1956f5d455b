"""The transaction rule: services flush, the entry point commits.

A unit of work is one HTTP request, one CLI command, or one step of a background job. The
functions a unit of work calls (pool, serving, settings, training's triggers) add, flush and
read rows, and never commit or roll back: the view, the command or the job that called them
commits once, when its unit of work is whole, so a request is written entirely or not at all
and a caller can combine two services in one transaction.

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

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

from .extensions import db

_KEY = "corrigo.after_commit"


def after_commit(callback: Callable[[], object]) -> None:
    """Run `callback` once the current session's transaction commits; drop it on rollback."""
    db.session.info.setdefault(_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    """Run the callbacks registered for the transaction that just committed, in order."""
    callbacks = session.info.pop(_KEY, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    """A rolled-back unit of work enqueues nothing."""
    session.info.pop(_KEY, None)
