"""Shared bench helpers: command line, a freshly migrated database per backend, timing, tables."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from sqlalchemy import create_engine, event, text

BACKENDS = ("sqlite", "postgresql")
PG_URL = os.environ.get(
    "CORRIGO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/corrigo_bench"
)
REDIS_URL = os.environ.get("CORRIGO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
QUEUE = "corrigo-bench"


def parse_args(doc: str | None, sizes: str | None = None, **extra) -> argparse.Namespace:
    """`--db sqlite,postgresql` (default both) and, when `sizes` is given, `--sizes 10000,...`."""
    parser = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--db",
        default=",".join(BACKENDS),
        help="comma-separated backends to run: sqlite, postgresql (default: both)",
    )
    if sizes is not None:
        parser.add_argument("--sizes", default=sizes, help=f"comma-separated (default {sizes})")
    for name, (default, help_text) in extra.items():
        parser.add_argument(f"--{name}", type=type(default), default=default, help=help_text)
    args = parser.parse_args()
    args.db = [b.strip() for b in args.db.split(",") if b.strip()]
    for backend in args.db:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}; expected sqlite or postgresql")
    if sizes is not None:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    return args


def header(title: str) -> None:
    """Print what runs where, so a pasted output says on which machine it was measured."""
    print(f"# {title}")
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    load()


def load() -> None:
    """Print the load average: other processes on a 2-core machine skew every figure."""
    one, five, _fifteen = os.getloadavg()
    print(f"# load average: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores")


# ---------------------------------------------------------------------------------------------
# Databases


def _reset_pg() -> None:
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@contextlib.contextmanager
def bench_app(backend: str, redis: bool = False) -> Iterator:
    """Yield a Flask app (its context pushed) on a fresh database built by the migrations.

    SQLite gets a temporary file; PostgreSQL gets `corrigo_bench` with its public schema dropped
    and recreated. Redis is db 6 of the local server when `redis` is true, else unset.
    """
    from flask_migrate import upgrade

    from webapp import create_app, serving
    from webapp.extensions import db

    with tempfile.TemporaryDirectory(prefix="corrigo-bench-") as tmp:
        # The instance folder (secret key, embedded Redis) must not land in the checkout.
        os.environ["CORRIGO_INSTANCE"] = tmp
        if backend == "sqlite":
            url = f"sqlite:///{os.path.join(tmp, 'bench.sqlite')}"
        else:
            _reset_pg()
            url = PG_URL
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "bench",
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": REDIS_URL if redis else "redis://127.0.0.1:1/0",
                "RQ_QUEUE": QUEUE,
            }
        )
        if redis:
            _flush_redis()
        # serving caches champions by project id, which repeats across fresh databases.
        serving._cache.clear()
        with app.app_context():
            upgrade()
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()
                serving._cache.clear()
                if redis:
                    _flush_redis()


def _flush_redis() -> None:
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    conn.close()


def analyze() -> None:
    """Refresh planner statistics on PostgreSQL, as autovacuum would after a large import.

    SQLite is left alone: Corrigo never runs ANALYZE there, so its plans use no statistics.
    """
    from webapp.extensions import db

    if db.engine.dialect.name != "postgresql":
        return
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def explain(run: Callable[[], object]) -> list[str]:
    """Return the plan of every statement `run()` executes, exactly as SQLAlchemy sends it.

    The hook runs `EXPLAIN QUERY PLAN` (SQLite) or `EXPLAIN (ANALYZE, BUFFERS)` (PostgreSQL)
    on the same cursor with the same bound parameters, then lets the statement run as usual.
    """
    from webapp.extensions import db

    sqlite = db.engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    lines: list[str] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if executemany or not statement.lstrip().upper().startswith("SELECT"):
            return
        lines.append(f"-- {' '.join(statement.split())}")
        cursor.execute(prefix + statement, parameters)
        rows = cursor.fetchall()
        if sqlite:
            depth = {0: 0}
            for node, parent, _unused, detail in rows:
                depth[node] = depth.get(parent, 0) + 1
                lines.append("  " * depth[node] + detail)
        else:
            lines.extend(row[0] for row in rows)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", hook)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", hook)
        db.session.rollback()
    return lines


# ---------------------------------------------------------------------------------------------
# Timing


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Run fn once; return (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def repeat(
    fn: Callable[[], object],
    n: int,
    warmup: int = 5,
    between: Callable[[object], None] | None = None,
) -> list[float]:
    """Time `n` calls of fn (after `warmup` untimed ones); `between(result)` runs untimed."""
    samples = []
    for i in range(warmup + n):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed)
        if between is not None:
            between(result)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(0.95 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.1f}x" if baseline > 0 else "n/a"


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table, ready to paste into docs/benchmarks.md."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(out)


def add_champion(project, artifact: bytes, train_size: int):
    """Put a fitted model in place as the project's champion (version 1), as a promotion would."""
    from webapp.extensions import db
    from webapp.models import ModelVersion, utcnow

    champion = ModelVersion(
        project_id=project.id,
        version=1,
        status="champion",
        template=project.template,
        labels=list(project.labels),
        artifact=artifact,
        snapshot_digest="0" * 64,
        train_size=train_size,
        metrics={},
        promoted_at=utcnow(),
    )
    db.session.add(champion)
    return champion
