"""POST /projects/{slug}/items, and how every endpoint parses a request body."""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.api.helpers import ALL_SCOPES, Api, assert_problem, item_count
from tests.factories import make_items, make_key, make_project
from webapp import serving
from webapp.extensions import db
from webapp.models import Item


def test_import_returns_ids_in_order_and_stores_the_data(api, project):
    rows = [
        {"external_id": "a-1", "data": {"text": "the striker scored twice"}},
        {"data": {"text": "parliament passed the budget", "source": "wire"}},
    ]
    resp = api.post("/projects/news/items", {"items": rows})
    assert resp.status_code == 201
    ids = resp.get_json()["ids"]
    assert len(ids) == 2
    stored = [db.session.get(Item, i) for i in ids]
    assert [s.external_id for s in stored] == ["a-1", None]
    assert [s.data for s in stored] == [r["data"] for r in rows]


def test_a_known_external_id_returns_the_existing_item(api, project):
    first = api.post(
        "/projects/news/items", {"items": [{"external_id": "x", "data": {"text": "a"}}]}
    )
    again = api.post(
        "/projects/news/items",
        {
            "items": [
                {"external_id": "y", "data": {"text": "b"}},
                {"external_id": "x", "data": {"text": "a, sent again"}},
                {"external_id": "y", "data": {"text": "b, twice in one request"}},
            ]
        },
    )
    assert again.status_code == 201
    x_id = first.get_json()["ids"][0]
    y_id, x_again, y_again = again.get_json()["ids"]
    assert x_again == x_id and y_again == y_id
    assert item_count(project) == 2


def test_tabular_rows_are_checked_against_the_declared_features(client, app):
    project = make_project(slug="credit", kind="tabular", features=["income", "age"])
    api = Api(client, make_key(project, ALL_SCOPES))
    ok = api.post(
        "/projects/credit/items", {"items": [{"data": {"features": {"income": 3.5, "age": 40}}}]}
    )
    assert ok.status_code == 201
    missing = api.post("/projects/credit/items", {"items": [{"data": {"features": {"income": 1}}}]})
    assert_problem(missing, 422, "items[0].data.features.age")
    extra = {"income": 1, "age": 2, "height": 3}
    unknown = api.post("/projects/credit/items", {"items": [{"data": {"features": extra}}]})
    assert_problem(unknown, 422, "items[0].data.features.height")
    text = api.post(
        "/projects/credit/items", {"items": [{"data": {"features": {"income": "x", "age": 1}}}]}
    )
    assert_problem(text, 422, "items[0].data.features.income")


INVALID_IMPORTS = [
    ({}, "items"),
    ({"items": None}, "items"),
    ({"items": {"data": {"text": "a"}}}, "items"),
    ({"items": []}, "items"),
    ({"items": [{"data": {"text": "a"}}], "extra": 1}, "extra"),
    ({"items": ["just a string"]}, "items[0]"),
    ({"items": [{"external_id": "e"}]}, "items[0].data"),
    ({"items": [{"data": "text"}]}, "items[0].data"),
    ({"items": [{"data": {"text": ""}}]}, "items[0].data.text"),
    ({"items": [{"data": {"txt": "typo"}}]}, "items[0].data.text"),
    ({"items": [{"data": {"text": "a"}, "external_id": 7}]}, "items[0].external_id"),
    ({"items": [{"data": {"text": "a"}, "external_id": ""}]}, "items[0].external_id"),
    ({"items": [{"data": {"text": "a"}, "external_id": "x" * 201}]}, "items[0].external_id"),
    ({"items": [{"data": {"text": "a"}, "label": "sport"}]}, "items[0].label"),
    ({"items": [{"data": {"text": "nul\u0000byte"}}]}, "items[0].data.text"),
    ({"items": [{"data": {"text": "a", "n": 10**30}}]}, "items[0].data.n"),
]


def test_invalid_imports_name_the_field_and_write_nothing(api, project):
    for payload, field in INVALID_IMPORTS:
        assert_problem(api.post("/projects/news/items", payload), 422, field, case=payload)
    assert item_count(project) == 0


def test_one_bad_row_rejects_the_whole_batch_and_every_bad_row_is_named(api, project):
    rows = [{"external_id": f"r{i}", "data": {"text": f"row {i}"}} for i in range(6)]
    rows[3]["data"] = {"text": 42}
    rows[5]["data"] = {}
    doc = assert_problem(api.post("/projects/news/items", {"items": rows}), 422)
    assert set(doc["errors"]) == {"items[3].data.text", "items[5].data.text"}
    assert "nothing was written" in doc["detail"]
    assert item_count(project) == 0


def test_too_many_rows_in_one_request_is_refused(api, project):
    rows = [{"data": {"text": f"row {i}"}} for i in range(1001)]
    doc = assert_problem(api.post("/projects/news/items", {"items": rows}), 422, "items")
    assert "1000" in doc["errors"]["items"]
    assert item_count(project) == 0


def test_an_oversized_body_is_413_and_writes_nothing(app, api, project):
    app.config["MAX_CONTENT_LENGTH"] = 2000
    rows = [{"data": {"text": "word " * 100}} for _ in range(10)]
    doc = assert_problem(api.post("/projects/news/items", {"items": rows}), 413)
    assert "2000" in doc["detail"]
    assert item_count(project) == 0


NOT_JSON = [
    b'{"items": [',
    b"{'items': []}",
    b"",
    b"   ",
    b'{"items": [{"data": {"text": "a", "x": NaN}}]}',
    b"\xff\xfe\x00garbage",
    b"[" * 100_000 + b"]" * 100_000,
]


def test_a_body_that_is_not_json_is_400(api, project):
    for raw in NOT_JSON:
        resp = api.post("/projects/news/items", data=raw, content_type="application/json")
        doc = assert_problem(resp, 400, case=raw[:20])
        assert doc["title"] == "Malformed JSON"
    assert item_count(project) == 0


def test_a_json_body_that_is_not_an_object_is_422(api):
    for raw in [b"[]", b'"items"', b"42", b"null", b"true"]:
        resp = api.post("/projects/news/items", data=raw, content_type="application/json")
        assert_problem(resp, 422, "body", case=raw)


def test_values_no_column_can_store_are_refused(api, project):
    cases = {
        b'{"items": [{"data": {"text": "a", "x": 1e999}}]}': "items[0].data.x",
        b'{"items": [{"data": {"text": "\\ud800"}}]}': "items[0].data.text",
        b'{"items": [{"data": {"text": "a", "n": ' + b"[" * 40 + b"]" * 40 + b"}}]}": "items[0]",
    }
    for raw, field in cases.items():
        resp = api.post("/projects/news/items", data=raw, content_type="application/json")
        doc = assert_problem(resp, 422, case=raw[:40])
        assert any(name.startswith(field) for name in doc["errors"]), doc
    assert item_count(project) == 0


def test_a_json_body_is_read_whatever_the_content_type(api, project):
    raw = json.dumps({"items": [{"data": {"text": "sent by curl -d without a header"}}]})
    resp = api.post(
        "/projects/news/items", data=raw, content_type="application/x-www-form-urlencoded"
    )
    assert resp.status_code == 201
    assert db.session.scalar(select(Item.data)) == {"text": "sent by curl -d without a header"}


def test_every_endpoint_with_a_body_answers_bad_bodies_alike(app, api, project):
    (item_id,) = make_items(project, 1)
    (prediction_id,) = serving.log_predictions(project, [{"data": {"text": "x"}, "label": "tech"}])
    paths = [
        "/projects/news/items",
        "/projects/news/predict",
        "/projects/news/predictions",
        f"/predictions/{prediction_id}/feedback",
        f"/items/{item_id}/annotations",
    ]
    before = item_count(project)
    app.config["MAX_CONTENT_LENGTH"] = 500
    big = json.dumps({"data": {"text": "x" * 600}}).encode()
    for path in paths:
        for raw, status, field in [
            (b'{"label": ', 400, None),
            (b"[1]", 422, "body"),
            (big, 413, None),
        ]:
            resp = api.post(path, data=raw, content_type="application/json")
            assert_problem(resp, status, field, case=(path, raw[:10]))
    assert item_count(project) == before
    assert db.session.get(Item, item_id).label is None


def test_a_value_no_column_can_store_is_found_deep_in_a_large_batch(api, project):
    """Row 700 of 1,000 still gets its path named, whatever the raw-body shortcut skips."""
    nested: dict = {"text": "deep"}
    for _ in range(40):
        nested = {"n": nested}
    for bad, field in [
        ({"text": "nul\u0000byte"}, "items[700].data.text"),
        ({"text": "half \ud800 pair"}, "items[700].data.text"),
        ({"text": "a", "n": 2**63}, "items[700].data.n"),
        ({"text": "a", "deep": nested}, "items[700].data.deep"),
    ]:
        rows = [{"data": {"text": f"row {i}"}} for i in range(1000)]
        rows[700]["data"] = bad
        doc = assert_problem(api.post("/projects/news/items", {"items": rows}), 422, case=field)
        assert any(key.startswith(field) for key in doc["errors"]), (field, doc["errors"])
    assert item_count(project) == 0
