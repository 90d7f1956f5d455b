"""The contract's edges: media types, methods, size limits, the docs page and CSV exports."""

from __future__ import annotations

import csv
import io
import json
import re

from sqlalchemy import select

from tests.api.helpers import assert_problem, item_count, label_all
from tests.factories import make_items, make_project
from webapp.extensions import db
from webapp.fields import MAX_COMMENT_LENGTH, MAX_TEXT_LENGTH
from webapp.models import Feedback, Item


def test_a_body_that_is_not_json_by_its_content_type_is_415(api, project):
    raw = json.dumps({"items": [{"data": {"text": "a"}}]})
    for content_type in ["text/plain", "multipart/form-data; boundary=x", "application/xml"]:
        resp = api.post("/projects/news/items", data=raw, content_type=content_type)
        assert_problem(resp, 415, case=content_type)
    assert item_count(project) == 0
    ok = api.post("/projects/news/items", data=raw, content_type="application/merge-patch+json")
    assert ok.status_code == 201
    assert item_count(project) == 1


def test_a_wrong_method_is_405_with_allow(api, project):
    resp = api.client.delete("/api/v1/projects/news/items")
    assert_problem(resp, 405)
    assert "POST" in resp.headers["Allow"].split(", ")
    resp = api.client.put("/api/v1/projects/news/models")
    assert_problem(resp, 405)
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_item_text_and_feedback_comments_are_bounded(api, project):
    long_text = {"items": [{"data": {"text": "x" * (MAX_TEXT_LENGTH + 1)}}]}
    doc = assert_problem(api.post("/projects/news/items", long_text), 422, "items[0].data.text")
    assert f"{MAX_TEXT_LENGTH:,}" in doc["errors"]["items[0].data.text"]
    assert item_count(project) == 0
    at_limit = {"items": [{"data": {"text": "x" * MAX_TEXT_LENGTH}}]}
    assert api.post("/projects/news/items", at_limit).status_code == 201

    row = {"data": {"text": "chip"}, "label": "tech"}
    logged = api.post("/projects/news/predictions", {"predictions": [row]})
    path = f"/predictions/{logged.get_json()['ids'][0]}/feedback"
    too_long = {"correct": False, "comment": "y" * (MAX_COMMENT_LENGTH + 1)}
    assert_problem(api.post(path, too_long), 422, "comment")
    assert db.session.scalar(select(Feedback.id)) is None
    fits = {"correct": False, "comment": "y" * MAX_COMMENT_LENGTH}
    assert api.post(path, fits).status_code == 201


def test_path_ids_beyond_their_column_are_404(api, project):
    for run_id in [2**31, 2**31 + 5, 2**63]:
        assert_problem(api.get(f"/projects/news/runs/{run_id}"), 404, case=run_id)
    for item_id in [2**63, 2**64]:
        assert_problem(api.post(f"/items/{item_id}/skip"), 404, case=item_id)


def test_a_nul_byte_in_a_slug_is_404(api, project):
    assert_problem(api.get("/projects/ne%00ws/models"), 404)
    assert_problem(api.post("/projects/%00/items", {"items": [{"data": {"text": "a"}}]}), 404)


def test_the_docs_page_loads_only_what_this_server_serves(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(refs) == 5 and not [r for r in refs if "//" in r], refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.get_data(), ref
        asset.close()
    spec_url = re.search(r'data-spec-url="([^"]+)"', html).group(1)
    assert client.get(spec_url).get_json()["openapi"] == "3.1.0"
    assert client.get("/api/docs/assets/swagger-editor.js").status_code == 404


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx", "'=quoted"]


def test_the_csv_export_escapes_formulas_and_names_its_charset_once(api, project):
    rows = [{"external_id": ext, "data": {"text": f"text {i}"}} for i, ext in enumerate(FORMULAS)]
    rows.append({"external_id": "plain", "data": {"text": "text"}})
    ids = api.post("/projects/news/items", {"items": rows}).get_json()["ids"]
    db.session.query(Item).filter(Item.id.in_(ids)).update({"label": "tech"})
    db.session.commit()
    resp = api.get("/projects/news/labels?format=csv")
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    cells = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True), newline="")))
    assert sorted(r["external_id"] for r in cells) == sorted(
        ["plain", *("'" + f for f in FORMULAS)]
    )
    for r in cells:
        for value in r.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), r


def test_the_csv_export_imports_back_with_corrigo_import(api, project, runner, tmp_path):
    rows = [{"external_id": ext, "data": {"text": f"text {i}"}} for i, ext in enumerate(FORMULAS)]
    rows.append({"data": {"text": "-no id, and a leading dash", "source": "=wire"}})
    ids = api.post("/projects/news/items", {"items": rows}).get_json()["ids"]
    ids += make_items(project, 12, start=100)
    db.session.query(Item).filter(Item.id.in_(ids[: len(rows)])).update({"label": "tech"})
    db.session.commit()
    label_all(project, ids[len(rows) :])
    path = tmp_path / "news-labels.csv"
    resp = api.get("/projects/news/labels?format=csv")
    path.write_bytes(resp.get_data())

    copy = make_project(slug="copy")
    result = runner.invoke(args=["import", "copy", str(path)])
    assert result.exit_code == 0, result.output

    def contents(p) -> set:
        """(external id, data, label) of every labeled item of a project."""
        found = db.session.execute(
            select(Item.external_id, Item.data, Item.label).where(
                Item.project_id == p.id, Item.label.is_not(None)
            )
        )
        return {(e, json.dumps(d, sort_keys=True), lab) for e, d, lab in found}

    assert contents(copy) == contents(project)
    assert len(contents(copy)) == len(ids) == 20


def test_a_page_answers_a_wrong_method_with_allow_too(client):
    resp = client.delete("/login")
    assert resp.status_code == 405 and resp.mimetype == "text/html"
    assert "GET" in resp.headers["Allow"].split(", ")
