"""Queue and project-page latency at 100k and 1M unlabeled items, on tables never analyzed.

Per backend, one database holds a project per size N: N scored unlabeled items (as a rescore
leaves them), N/10 labeled ones, 20 disputed ones other experts hold leases on, a champion, and
the five top-scored items leased to other experts (so the uncertain lane steps over live
leases). One expert, `user:skipper`, has skipped the 20,000 top-scored items of the pool.

The database is loaded once with raw bulk writes (SQLite: executemany; PostgreSQL: COPY), and
kept for the next run (`--fresh` reloads). PostgreSQL gets the tables from the migrations, then
autovacuum is turned off for them before the load, and nothing ever runs ANALYZE: the planner
has no statistics, as right after a bulk import. The script prints `pg_stat_user_tables` to
show it.

Each round makes every call below once per size, the sizes one after the other, so that all
share whatever load the machine has; 5 untimed warm-up rounds come first:
  * `pool.next_item` for an expert with no skips (uncertain lane; the item is then annotated,
    untimed, as a real session does), and for `user:skipper` (its 20k skips are at the head of
    the lane; it then skips the item, untimed, so its skips grow by one per call);
  * `GET /api/v1/projects/<slug>/queue/next` with a `label` key (includes the held-lease check
    and the champion's suggestion), and the held-lease reload of it;
  * `GET /projects/<slug>` and `GET /projects` through the Flask test client, logged in;
  * baselines in the same process: the bare indexed lane SELECT, and the full count of a
    project's items that every project page ran before migration 0003 (`pool.recount`);
  * the skipper's skip cursor walked again from the top (what the first call after a rescore,
    or after the cursor's 2-minute TTL, pays), every 10th round.
Ratios: each median against the same measure at the smallest size (the issue asks <= 1.5x from
100k to 1M), and the skipper against the expert with no skips.

    .venv/bin/python -m bench.queue_next [--db sqlite,postgresql] [--sizes 100000,1000000]
        [--calls 60] [--fresh]
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.engine import make_url

from bench.common import (
    QUEUE,
    REDIS_URL,
    add_champion,
    header,
    load,
    median,
    ms,
    p95,
    parse_args,
    table,
    timed,
)
from labeling import artifacts, evaluation, training
from tests.factories import TEXT_LABELS, WORDS, make_key, make_project, make_user
from webapp import pool
from webapp.extensions import db
from webapp.models import ApiKey, Item, Project, Skip, User, utcnow
from webapp.pool import cursor as skip_cursor

RAW_NEXT = (
    "SELECT id FROM item WHERE project_id=:p AND label IS NULL AND scored_by = "
    "(SELECT id FROM model_version WHERE project_id=:p AND status='champion') "
    "AND score_strategy = 'margin' ORDER BY score DESC LIMIT 1"
)
SKIPS = 20_000
DISPUTED = 20
LEASED_TOP = 5
SCHEMA = "bench_queue"
PG_URL = os.environ.get("CORRIGO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/corrigo_b")
SQLITE_PATH = os.environ.get(
    "CORRIGO_BENCH_SQLITE", os.path.join(tempfile.gettempdir(), "corrigo-bench-queue.sqlite")
)
COLUMNS = (
    "project_id",
    "external_id",
    "data",
    "source",
    "created_at",
    "rand",
    "score",
    "scored_by",
    "score_strategy",
    "label",
    "labeled_at",
)


class FixedRng:
    """An rng whose draws are fixed: 0.99 always picks the uncertain lane."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


# ---------------------------------------------------------------------------------------------
# The database, loaded once


def _pg_url() -> str:
    """The bench's PostgreSQL URL, with its own schema first on the search path."""
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return url.render_as_string(hide_password=False)


def _reset(backend: str) -> None:
    if backend == "sqlite":
        with contextlib.suppress(FileNotFoundError):
            os.remove(SQLITE_PATH)
        return
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()


@contextlib.contextmanager
def queue_app(backend: str, fresh: bool) -> Iterator:
    """Yield an app (context pushed) on the bench's kept database, migrated, with a user."""
    from flask_migrate import upgrade

    from webapp import create_app, serving

    if fresh:
        _reset(backend)
    if backend == "postgresql":
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        engine.dispose()
    url = f"sqlite:///{SQLITE_PATH}" if backend == "sqlite" else _pg_url()
    with tempfile.TemporaryDirectory(prefix="corrigo-bench-") as tmp:
        os.environ["CORRIGO_INSTANCE"] = tmp
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "bench",
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": REDIS_URL,
                "RQ_QUEUE": QUEUE,
            }
        )
        serving._cache.clear()
        with app.app_context():
            upgrade()
            if backend == "postgresql":
                # Before any row goes in: no autovacuum, hence no auto-analyze, ever.
                for name in ("item", "skip", "annotation", "project_counter"):
                    db.session.execute(text(f"ALTER TABLE {name} SET (autovacuum_enabled = false)"))
                db.session.commit()
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()
                serving._cache.clear()


def _item_rows(
    project_id: int, n: int, labeled: int, seed: int, champion_id: int
) -> Iterator[tuple]:
    rng = random.Random(seed)
    words = " ".join(WORDS.values()).split()
    now = utcnow()
    for i in range(n + labeled):
        label = TEXT_LABELS[i % 3] if i >= n else None
        yield (
            project_id,
            f"x-{i}",
            json.dumps({"text": " ".join(rng.choices(words, k=16)) + f" #{i}"}),
            "import",
            now,
            rng.random(),
            # Margin scores as a rescore leaves them: in [-1, 0], higher = label first.
            None if label else -rng.random(),
            None if label else champion_id,
            None if label else "margin",
            label,
            now if label else None,
        )


def _bulk_load(project_id: int, n: int, labeled: int, seed: int, champion_id: int) -> None:
    """Raw bulk insert of the items: executemany on SQLite, COPY on PostgreSQL."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        rows = _item_rows(project_id, n, labeled, seed, champion_id)
        if db.engine.dialect.name == "sqlite":
            sql = (
                f"INSERT INTO item ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
            )
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) == 10_000:
                    cur.executemany(sql, batch)
                    batch = []
            if batch:
                cur.executemany(sql, batch)
        else:
            with cur.copy(f"COPY item ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
        cur.close()
    finally:
        raw.close()


def _build(n: int) -> Project:
    """Load the project of size n (once; the next run finds it)."""
    slug = f"q-{n}"
    project = db.session.scalar(select(Project).where(Project.slug == slug))
    if project is not None and pool.counts(project)["items"] >= n:
        return project
    if project is not None:
        raise SystemExit(f"{slug} is half-loaded: run again with --fresh")
    print(f"# loading {slug}: {n:,} unlabeled + {n // 10:,} labeled items …", flush=True)
    project = make_project(slug=slug, settings={"retrain_every": 0})
    texts = [f"{WORDS[label]} seed {k}" for k in range(10) for label in TEXT_LABELS]
    model = training.fit_model(
        project.template, texts, [lab for _k in range(10) for lab in TEXT_LABELS]
    )
    champion = add_champion(project, artifacts.dumps(model), len(texts))
    # Held-out metrics as a promotion records them (the project page shows them).
    champion.metrics = evaluation.evaluate(
        [lab for _k in range(10) for lab in TEXT_LABELS],
        list(model.predict(texts)),
        TEXT_LABELS,
    )
    db.session.commit()
    # Scores carry the champion's (version id, strategy) key, as a rescore leaves them.
    load_s, _ = timed(lambda: _bulk_load(project.id, n, n // 10, seed=n, champion_id=champion.id))
    now = utcnow()
    labeled = db.session.scalars(
        select(Item.id)
        .where(Item.project_id == project.id, Item.label.is_not(None))
        .order_by(Item.id)
        .limit(DISPUTED)
    ).all()
    db.session.execute(update(Item).where(Item.id.in_(labeled)).values(disputed_at=now))
    db.session.commit()
    print(f"# loaded in {load_s:.1f} s", flush=True)
    return project


def _prepare_round(project: Project, skips: int) -> None:
    """Leases that must be live now, and the skipper's 20k skips at the head of the lane."""
    hour = utcnow() + timedelta(hours=1)
    disputed = db.session.scalars(
        select(Item.id).where(Item.project_id == project.id, Item.disputed_at.is_not(None))
    ).all()
    for k, item_id in enumerate(disputed):
        db.session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(lease_owner=f"user:other-{k}", lease_until=hour, lease_reason="disputed")
        )
    top = db.session.scalars(
        select(Item.id)
        .where(Item.project_id == project.id, Item.label.is_(None))
        .order_by(Item.score.desc(), Item.id)
        .limit(skips + LEASED_TOP)
    ).all()
    db.session.execute(
        update(Item)
        .where(Item.id.in_(top[:LEASED_TOP]))
        .values(lease_owner="user:busy", lease_until=hour, lease_reason="uncertain")
    )
    have = set(
        db.session.scalars(
            select(Skip.item_id).where(Skip.annotator == "user:skipper", Skip.item_id.in_(top))
        )
    )
    missing = [i for i in top[LEASED_TOP:] if i not in have]
    if missing:
        db.session.execute(
            Skip.__table__.insert(),
            [{"annotator": "user:skipper", "item_id": i, "created_at": utcnow()} for i in missing],
        )
    db.session.commit()


# ---------------------------------------------------------------------------------------------
# Plans of the statements next_item really sends


def explain_next(run) -> list[str]:
    """Plans of every item statement `run()` sends, with the same parameters: PostgreSQL
    EXPLAIN (ANALYZE, BUFFERS), SQLite EXPLAIN QUERY PLAN."""
    sqlite = db.engine.dialect.name == "sqlite"
    lines: list[str] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        head = statement.lstrip().upper()
        if executemany or " item" not in statement or not head.startswith(("SELECT", "UPDATE")):
            return
        lines.append(f"-- {' '.join(statement.split())[:160]} …")
        if sqlite:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            lines.extend("   " + str(row[-1]) for row in cursor.fetchall())
            return
        # An UPDATE runs for real under EXPLAIN ANALYZE: inside a savepoint rolled back after.
        cursor.execute("SAVEPOINT bench_explain")
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters)
        lines.extend("   " + str(row[-1]) for row in cursor.fetchall())
        cursor.execute("ROLLBACK TO SAVEPOINT bench_explain")

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)
    return lines


# ---------------------------------------------------------------------------------------------
# One size


def _login(client, email: str) -> None:
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    resp = client.post(
        "/login", data={"email": email, "password": "bench-pass", "csrf_token": token}
    )
    if resp.status_code != 302:
        raise RuntimeError(f"login failed: {resp.status_code}")


def prepare_size(app, project: Project, skips: int, plans: dict):
    """Set up one size; return (one_round, summary) callables."""
    _prepare_round(project, skips)
    n = project.slug
    client = app.test_client()
    _login(client, "bench@example.com")
    key = make_key(project, scopes=("label",))
    key_row = db.session.scalar(
        select(ApiKey).where(ApiKey.project_id == project.id).order_by(ApiKey.id.desc())
    )
    headers = {"Authorization": f"Bearer {key}"}
    api_next = f"/api/v1/projects/{project.slug}/queue/next"
    uncertain = FixedRng(0.99)

    def plain():
        return pool.next_item(project, "user:plain", rng=uncertain)

    def skipper():
        return pool.next_item(project, "user:skipper", rng=uncertain)

    def annotate(result, who="user:plain"):
        item, _reason = result
        pool.annotate(project, item, who, TEXT_LABELS[item.id % 3])

    def skip(result):
        item, _reason = result
        pool.skip(project, item, "user:skipper")
        db.session.commit()

    def http_next():
        resp = client.get(api_next, headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(f"queue/next: {resp.status_code} {resp.get_data(as_text=True)}")
        return resp.get_json()

    def get(url):
        def call():
            resp = client.get(url)
            if resp.status_code != 200:
                raise RuntimeError(f"{url}: {resp.status_code}")
            return resp

        return call

    def raw_next():
        value = db.session.execute(text(RAW_NEXT), {"p": project.id}).scalar()
        db.session.rollback()
        return value

    plans[n] = {
        "held-lease check + uncertain lane, expert without skips": explain_next(plain),
        "uncertain lane, expert with 20k skips at the head": explain_next(skipper),
    }
    annotate((db.session.scalar(select(Item).where(Item.lease_owner == "user:plain")), ""))
    skip((db.session.scalar(select(Item).where(Item.lease_owner == "user:skipper")), ""))
    plans[n]["held-lease reload"] = explain_next(http_next)
    body = http_next()
    annotate((db.session.get(Item, body["item_id"]), ""), key_row.annotator)

    served: dict[str, set] = {"plain": set(), "skipper": set()}

    def one_round(i: int) -> list[tuple[str, float]]:
        """One call of each kind, in a fixed order; returns (what, seconds) pairs."""
        timings = []
        seconds, result = timed(plain)
        timings.append(("next_item, no skips", seconds))
        served["plain"].add(result[1])
        annotate(result)
        seconds, result = timed(skipper)
        timings.append(("next_item, 20k skips", seconds))
        served["skipper"].add(result[1])
        skip(result)
        seconds, body = timed(http_next)
        timings.append(("GET queue/next (HTTP)", seconds))
        seconds, again = timed(http_next)
        timings.append(("GET queue/next, held lease", seconds))
        if again["item_id"] != body["item_id"]:
            raise RuntimeError("the held lease was not served again")
        annotate((db.session.get(Item, body["item_id"]), ""), key_row.annotator)
        for label, url in (
            ("GET /projects/<slug>", f"/projects/{project.slug}"),
            ("GET /projects", "/projects"),
        ):
            seconds, _ = timed(get(url))
            timings.append((label, seconds))
        seconds, _ = timed(raw_next)
        timings.append(("raw lane SELECT (baseline)", seconds))
        if i % 10 == 0:
            seconds, _ = timed(lambda: (pool.recount(project), db.session.rollback()))
            timings.append(("full count of items (baseline)", seconds))
            # What the first call after a rescore (or every 2 minutes) pays: the skip cursor
            # walked again from the top of the lane, over the 20k skipped items.
            seconds, _ = timed(
                lambda: (
                    skip_cursor.advance(project, "user:skipper", utcnow(), restart=True),
                    db.session.rollback(),
                )
            )
            timings.append(("skip cursor walked from the top", seconds))
        return timings

    def summary() -> dict:
        skips = db.session.scalar(
            select(db.func.count())
            .select_from(Skip)
            .join(Item, Item.id == Skip.item_id)
            .where(Skip.annotator == "user:skipper", Item.project_id == project.id)
        )
        db.session.rollback()
        return {"served": served, "skips": skips}

    return one_round, summary


def _pg_statistics() -> list[str]:
    rows = db.session.execute(
        text(
            "SELECT relname, n_live_tup, last_analyze, last_autoanalyze, last_autovacuum "
            "FROM pg_stat_user_tables WHERE relname IN ('item', 'skip') "
            f"AND schemaname = '{SCHEMA}' ORDER BY relname"
        )
    ).all()
    db.session.rollback()
    return [
        f"# {r[0]}: {r[1]:,} live rows; last analyze {r[2]}, autoanalyze {r[3]}, autovacuum {r[4]}"
        for r in rows
    ]


def main() -> None:
    # A flag, which parse_args's typed extras cannot express: taken off argv first.
    fresh = "--fresh" in sys.argv
    if fresh:
        sys.argv.remove("--fresh")
    args = parse_args(
        __doc__,
        sizes="100000,1000000",
        calls=(60, "timed rounds per size"),
        skips=(SKIPS, "top-scored items the skipper has skipped"),
    )
    header("queue/next and project pages at 100k and 1M items, never-analyzed tables")
    for backend in args.db:
        plans: dict = {}
        with queue_app(backend, fresh) as app:
            if db.session.scalar(select(User).where(User.email == "bench@example.com")) is None:
                make_user("bench@example.com", "bench-pass", role="engineer")
            projects = [_build(n) for n in args.sizes]
            if backend == "postgresql":
                print("\n".join(_pg_statistics()))
            sizes = [prepare_size(app, p, args.skips, plans) for p in projects]
            for n, project in zip(args.sizes, projects, strict=True):
                for lane, lines in plans[project.slug].items():
                    print(f"\n### {backend} {n:,}: {lane}")
                    print("\n".join(lines))
            print(f"\n## {backend}: {args.calls} rounds, the sizes interleaved", flush=True)
            load()
            samples: list[dict[str, list[float]]] = [{} for _ in sizes]
            for i in range(5 + args.calls):
                for k, (one_round, _summary) in enumerate(sizes):
                    timings = one_round(i)
                    if i >= 5:
                        for label, seconds in timings:
                            samples[k].setdefault(label, []).append(seconds)
            results = [dict(summary(), samples=samples[k]) for k, (_r, summary) in enumerate(sizes)]
            if backend == "postgresql":
                print("\n".join(_pg_statistics()))
        print(f"\n## {backend}: latency per call, {args.calls} rounds\n")
        base = results[0]["samples"]
        rows = []
        for n, r in zip(args.sizes, results, strict=True):
            plain = median(r["samples"]["next_item, no skips"])
            for label, samples in r["samples"].items():
                extra = ""
                if label == "next_item, 20k skips":
                    extra = f"{median(samples) / plain:.2f}x no skips"
                rows.append(
                    [
                        f"{n:,}",
                        label,
                        ms(median(samples)),
                        ms(p95(samples)),
                        f"{median(samples) / median(base[label]):.2f}x",
                        extra,
                    ]
                )
        print(
            table(
                ["unlabeled", "what", "median", "p95", f"vs {args.sizes[0]:,}", "note"],
                rows,
            )
        )
        for n, r in zip(args.sizes, results, strict=True):
            print(
                f"\n{backend} {n:,}: lanes served {r['served']}; the skipper has {r['skips']:,} "
                "skips in this project"
            )
        load()


if __name__ == "__main__":
    main()
