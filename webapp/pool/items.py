"""Items in a project's pool: bulk import, lookup by external id, counts and labeled exports."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from itertools import islice, repeat

from sqlalchemy import ARRAY, String, and_, any_, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Item, Project, ProjectCounter, utcnow
from ..transaction import note_write, unit_of_work

IMPORT_BATCH = 1000


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


@unit_of_work
def import_items(
    project: Project, rows: Iterable[dict], source: str = "import", batch_size: int = IMPORT_BATCH
) -> Iterator[list[int]]:
    """Insert items in batches, yielding the ids of each batch in input order.

    Each row is `{"data": {...}, "external_id": str | None}` and must already be validated.
    An external id seen before maps to the existing item instead of creating a duplicate.
    A streaming bulk writer: each batch is its own unit of work and is committed on its own
    (see `webapp.transaction`), so a long import streams and never holds 1M rows.
    """
    for batch in _batches(rows, batch_size):
        yield _import_batch(project, batch, source)


def _import_batch(project: Project, batch: list[dict], source: str) -> list[int]:
    """Insert one batch; return ids in input order (existing ids for known external ids)."""
    for attempt in range(3):
        try:
            ids = _try_import_batch(project, batch, source)
            db.session.commit()
            return ids
        except IntegrityError:
            # Another request inserted one of these external ids first; look again.
            db.session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _try_import_batch(project: Project, batch: list[dict], source: str) -> list[int]:
    """Write one batch (flushed, not committed): one look-up of known ids, one bulk insert."""
    return insert_items(project, [(r.get("external_id"), r["data"]) for r in batch], source)


def known_external_ids(project: Project, external_ids: Iterable[str | None]) -> dict[str, int]:
    """Map the external ids among `external_ids` that the project already has to their item ids."""
    wanted = list({e for e in external_ids if e is not None})
    if not wanted:
        return {}
    if db.session.get_bind().dialect.name == "postgresql":
        # One array parameter, not a thousand: psycopg parses a short statement (and caches it).
        match = Item.external_id == any_(bindparam("wanted", wanted, type_=ARRAY(String)))
    else:
        match = Item.external_id.in_(wanted)
    found = db.session.execute(
        select(Item.external_id, Item.id).where(Item.project_id == project.id, match)
    )
    return {ext: item_id for ext, item_id in found}


def insert_items(project: Project, rows: list[tuple[str | None, dict]], source: str) -> list[int]:
    """Insert (external id, data) rows unless their external id is known; return ids in order.

    One SELECT of the known external ids, then one bulk INSERT of the new rows (plus one id
    allocation on PostgreSQL). A known external id, or one repeated in `rows`, maps to the
    same item. Nothing is committed; a concurrent insert of one of these external ids raises
    IntegrityError, and the caller rolls back and tries again.
    """
    known = known_external_ids(project, (ext for ext, _data in rows))
    ids: list[int | None] = [None] * len(rows)
    first: dict[str, int] = {}  # new external id -> the position of its first row
    todo: list[int] = []  # positions of the rows to insert
    for pos, (ext, _data) in enumerate(rows):
        if ext is None:
            todo.append(pos)
        elif ext in known:
            ids[pos] = known[ext]
        elif ext not in first:
            first[ext] = pos
            todo.append(pos)
    if todo:
        new_ids = _bulk_insert(project.id, [rows[pos] for pos in todo], source)
        for pos, item_id in zip(todo, new_ids, strict=True):
            ids[pos] = item_id
    # A repeated new external id takes the id its first row got.
    return [ids[first[ext]] if i is None else i for i, (ext, _data) in zip(ids, rows, strict=True)]


def _bulk_insert(project_id: int, rows: list[tuple[str | None, dict]], source: str) -> list[int]:
    """INSERT the rows in one statement; return their new ids in input order."""
    now = utcnow()
    if db.session.get_bind().dialect.name == "postgresql":
        return _pg_bulk_insert(project_id, rows, source, now)
    return sqlite_bulk_insert(
        Item.__table__,
        [
            {
                "project_id": project_id,
                "external_id": ext,
                "data": data,
                "source": source,
                "created_at": now,
                "rand": random.random(),
            }
            for ext, data in rows
        ],
    )


def sqlite_bulk_insert(table, rows: list[dict]) -> list[int]:
    """SQLite: one executemany INSERT, then the ids it assigned, in input order.

    The ids are consecutive: SQLite gives a new row max(rowid) + 1, and our transaction holds
    the database's write lock from its first insert to its commit, so no other writer
    interleaves. Two statements whatever the batch size (INSERT … RETURNING would be one
    statement a row, since SQLite does not promise RETURNING's order).

    The rows go to the driver's executemany with the columns' own bind processors (JSON,
    DateTime), applied once to a value every row shares (the project, the timestamp): the ORM's
    per-row parameter building cost more than the insert itself.
    """
    conn = db.session.connection()
    names = list(rows[0])
    # The driver knows nothing of Python-side column defaults: every such column must be given.
    missing = [c.name for c in table.c if c.default is not None and c.name not in rows[0]]
    if missing:
        raise ValueError(f"{table.name} rows lack {', '.join(missing)}")
    columns: list[Iterable] = []
    for name in names:
        process = table.c[name].type._cached_bind_processor(conn.dialect)
        first = rows[0][name]
        if all(row[name] is first for row in rows):
            columns.append(repeat(process(first) if process else first, len(rows)))
        elif process is not None:
            columns.append([process(row[name]) for row in rows])
        else:
            columns.append([row[name] for row in rows])
    params = list(zip(*columns, strict=True))
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        params,
    )
    note_write()
    last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar()
    return list(range(last - len(rows) + 1, last + 1))


def allocate_ids(table: str, n: int) -> list[int]:
    """Draw `n` ids from a PostgreSQL table's id sequence in one statement."""
    return list(
        db.session.scalars(
            text(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": n},
        )
    )


def _pg_bulk_insert(project_id: int, rows, source: str, now) -> list[int]:
    """PostgreSQL: ids drawn from the sequence first, then one INSERT … SELECT FROM unnest(arrays).

    A handful of array parameters instead of 7,000 scalar ones: psycopg neither parses a huge
    statement nor adapts each value in Python, and no RETURNING has to be matched to the input
    order (the ids are known before the insert).
    """
    ids = allocate_ids("item", len(rows))
    db.session.execute(
        text(
            "INSERT INTO item (id, project_id, external_id, data, source, created_at, rand) "
            "SELECT u.id, :project_id, u.ext, CAST(u.data AS json), :source, :now, u.rand "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:exts AS text[]), CAST(:datas AS text[]), "
            "CAST(:rands AS float8[])) AS u(id, ext, data, rand)"
        ),
        {
            "project_id": project_id,
            "source": source,
            "now": now,
            "ids": ids,
            "exts": [ext for ext, _data in rows],
            "datas": [json.dumps(data) for _ext, data in rows],
            "rands": [random.random() for _ in rows],
        },
    )
    return ids


def find_or_create_item(project: Project, data: dict, external_id: str | None, source: str) -> Item:
    """Return the item with this external id, or a new one (flushed, not committed)."""
    if external_id is not None:
        item = db.session.scalar(
            select(Item).where(Item.project_id == project.id, Item.external_id == external_id)
        )
        if item is not None:
            return item
    item = Item(project_id=project.id, external_id=external_id, data=data, source=source)
    db.session.add(item)
    db.session.flush()
    return item


def counts(project: Project) -> dict[str, int]:
    """Item, labeled and disputed counts for the project page (a few counter rows, no scan)."""
    return counts_by_project([project.id])[project.id]


def counts_by_project(project_ids: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
    """Counts of the given projects (every project when None), in one grouped query."""
    query = select(
        ProjectCounter.project_id,
        func.sum(ProjectCounter.items),
        func.sum(ProjectCounter.labeled),
        func.sum(ProjectCounter.disputed),
    ).group_by(ProjectCounter.project_id)
    wanted = None if project_ids is None else list(project_ids)
    if wanted is not None:
        query = query.where(ProjectCounter.project_id.in_(wanted))
    found = {
        pid: {"items": int(total), "labeled": int(labeled), "disputed": int(disputed)}
        for pid, total, labeled, disputed in db.session.execute(query)
    }
    empty = {"items": 0, "labeled": 0, "disputed": 0}
    for pid in wanted or ():
        found.setdefault(pid, dict(empty))
    return found


def recount(project: Project) -> dict[str, int]:
    """Count the project's items by scanning them: what the counter rows must always equal."""
    total, labeled, disputed = db.session.execute(
        select(
            func.count(Item.id),
            func.count(Item.label),
            func.count(Item.disputed_at),
        ).where(Item.project_id == project.id)
    ).one()
    return {"items": total, "labeled": labeled, "disputed": disputed}


def labeled_items(
    project: Project, chunk: int = 5000
) -> Iterator[tuple[int, str | None, dict, str, str | None]]:
    """Stream (id, external_id, data, label, first lane) of resolved items in id order, in
    chunks; the lane its first expert label came through decides its split."""
    from ..training import first_lane

    last = 0
    while True:
        rows = db.session.execute(
            select(Item.id, Item.external_id, Item.data, Item.label, first_lane())
            .where(and_(Item.project_id == project.id, Item.label.is_not(None), Item.id > last))
            .order_by(Item.id)
            .limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
