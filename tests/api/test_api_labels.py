"""GET /projects/{slug}/labels: every resolved label with its split, as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import update

from labeling.split import split_of
from tests.api.helpers import assert_problem
from tests.factories import make_items, true_label
from webapp import pool
from webapp.api import labels as routes
from webapp.extensions import db
from webapp.models import Item


@pytest.fixture
def labeled(project):
    """40 items, 30 of them labeled as an import labels them (outside the queue, so their
    split is the stable hash); returns {item id: (external id, data, label)}."""
    ids = make_items(project, 40)
    pairs = [(i, true_label(project, db.session.get(Item, i))) for i in ids[:30]]
    pool.label_unlabeled(project, pairs, "import")
    items = [db.session.get(Item, i) for i in ids[:30]]
    return {item.id: (item.external_id, item.data, item.label) for item in items}


def test_jsonl_export_has_one_row_per_label_with_its_split(api, project, labeled):
    resp = api.get("/projects/news/labels?format=jsonl")
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    assert "news-labels.jsonl" in resp.headers["Content-Disposition"]
    rows = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert len(rows) == 30
    assert {r["item_id"]: (r["external_id"], r["data"], r["label"]) for r in rows} == labeled
    assert all(r["split"] == split_of(r["item_id"], 0.2) for r in rows)
    assert {r["split"] for r in rows} == {"train", "heldout"}


def test_jsonl_is_the_default(api, project, labeled):
    resp = api.get("/projects/news/labels")
    assert resp.mimetype == "application/x-ndjson"
    assert len(resp.get_data(as_text=True).splitlines()) == 30


def test_csv_export_flattens_data_into_a_json_column(api, project, labeled):
    resp = api.get("/projects/news/labels?format=csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "news-labels.csv" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == 30
    assert list(rows[0]) == ["item_id", "external_id", "data", "label", "split"]
    assert {
        int(r["item_id"]): (r["external_id"], json.loads(r["data"]), r["label"]) for r in rows
    } == labeled
    assert all(r["split"] == split_of(int(r["item_id"]), 0.2) for r in rows)


def test_the_split_follows_the_projects_heldout_share(api, project, labeled):
    project.settings = dict(project.settings, heldout_share=0.5)
    db.session.commit()
    rows = [
        json.loads(line)
        for line in api.get("/projects/news/labels").get_data(as_text=True).splitlines()
    ]
    assert all(r["split"] == split_of(r["item_id"], 0.5) for r in rows)
    held = sum(r["split"] == "heldout" for r in rows)
    assert held > sum(split_of(r["item_id"], 0.2) == "heldout" for r in rows)


def test_an_export_with_no_labels_is_empty_or_just_the_header(api, project):
    make_items(project, 3)
    assert api.get("/projects/news/labels").get_data() == b""
    csv_text = api.get("/projects/news/labels?format=csv").get_data(as_text=True)
    assert csv_text.splitlines() == ["item_id,external_id,data,label,split"]


def test_the_export_streams_in_chunks(api, project, monkeypatch):
    monkeypatch.setattr(routes, "EXPORT_CHUNK", 10)
    make_items(project, 25)
    db.session.execute(update(Item).values(label="tech"))
    db.session.commit()
    resp = api.client.get(
        "/api/v1/projects/news/labels?format=csv",
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert resp.is_streamed
    # Three chunks of at most ten rows (the header rides with the first), each sent when read.
    chunks = [chunk.decode() for chunk in resp.response]
    assert [len(chunk.splitlines()) for chunk in chunks] == [11, 10, 5]


def test_an_unknown_format_is_422(api, project):
    for fmt in ["xml", "JSONL", ""]:
        assert_problem(api.get(f"/projects/news/labels?format={fmt}"), 422, "format", case=fmt)
