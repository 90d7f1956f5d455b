"""Readiness checks: the database answers `SELECT 1` and Redis a PING, each within a deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Late

from sqlalchemy import text

from .state import OpsState

log = logging.getLogger(__name__)


def _database(state: OpsState) -> None:
    """Open a connection of its own to the app's database and run `SELECT 1`."""
    with state.engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _redis(state: OpsState, timeout: float) -> None:
    """PING the app's Redis through a client that gives up after `timeout` s."""
    state.redis(timeout).ping()


def _timed(check: Callable[[], None]) -> float:
    """Run `check`; return how long it took, in milliseconds."""
    started = time.monotonic()
    check()
    return round((time.monotonic() - started) * 1000, 1)


def run(state: OpsState) -> dict[str, dict]:
    """Run the checks side by side: `{"status": "ok", "ms": …}` for each that passed,
    `{"status": "failed", "error": …}` (the exception's class, or the deadline) otherwise.

    The deadline holds even when a driver's own timeout is longer (PostgreSQL's connect
    timeout is at least 2 s): a late check is reported failed and left to end on its own.
    """
    timeout = float(state.app.config["READY_TIMEOUT"])
    checks: dict[str, Callable[[], None]] = {
        "database": lambda: _database(state),
        "redis": lambda: _redis(state, timeout),
    }
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    futures = {name: pool.submit(_timed, check) for name, check in checks.items()}
    results: dict[str, dict] = {}
    try:
        for name, future in futures.items():
            try:
                ms = future.result(timeout=max(0.0, deadline - time.monotonic()))
                result = {"status": "ok", "ms": ms}
            except Late:
                result = {"status": "failed", "error": f"no answer within {timeout:g} s"}
            # Whatever a check raises means not ready; the details (hosts, ports) stay in the
            # log, since the probe answers anyone.
            except Exception as exc:
                log.warning("readiness check %s failed: %s", name, exc)
                result = {"status": "failed", "error": type(exc).__name__}
            results[name] = result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results
