"""`corrigo import`: JSONL and CSV, labels as annotations, all-or-nothing validation."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Annotation, Item, Project


def write_jsonl(path, rows) -> str:
    """Write rows as JSON Lines; return the path as a string."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def item_count() -> int:
    """How many items exist in all projects."""
    return db.session.scalar(select(func.count(Item.id)))


def items_by_external_id() -> dict[str, Item]:
    """Every item, keyed by its external id."""
    return {item.external_id: item for item in db.session.scalars(select(Item))}


def test_jsonl_with_shorthand_labels_and_no_external_id(corrigo, make, tmp_path):
    make.make_project("news")
    path = write_jsonl(
        tmp_path / "batch.jsonl",
        [
            {"external_id": "a", "data": {"text": "the coach praised the team"}, "label": "sport"},
            {"external_id": "b", "text": "parliament passed the law"},
            {"text": "a new phone chip"},
        ],
    )
    result = corrigo("import", "news", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Imported 3 rows into news: 3 new items, 0 already known.")
    assert "Recorded 1 labels as import:batch.jsonl" in result.stdout
    items = items_by_external_id()
    assert items["a"].data == {"text": "the coach praised the team"}
    assert items["a"].label == "sport"
    assert items["b"].data == {"text": "parliament passed the law"} and items["b"].label is None
    assert items[None].data == {"text": "a new phone chip"}
    annotation = db.session.scalar(select(Annotation))
    assert (annotation.item_id, annotation.annotator, annotation.label) == (
        items["a"].id,
        "import:batch.jsonl",
        "sport",
    )
    assert db.session.get(Project, items["a"].project_id).labeled_count == 1


def test_csv_for_a_text_project(corrigo, make, tmp_path):
    make.make_project("news")
    path = tmp_path / "news.csv"
    path.write_text(
        "\ufeffexternal_id,text,label\n"
        'n1,"Goal, then another goal",sport\n'
        'n2,"The vote\nwent late",\n'
    )
    result = corrigo("import", "news", str(path))
    assert result.exit_code == 0, result.output
    items = items_by_external_id()
    assert items["n1"].data == {"text": "Goal, then another goal"} and items["n1"].label == "sport"
    assert items["n2"].data == {"text": "The vote\nwent late"} and items["n2"].label is None


def test_csv_for_a_tabular_project(corrigo, make, tmp_path):
    make.make_project("churn", kind="tabular", labels=["stays", "leaves"], features=["x1", "x2"])
    path = tmp_path / "customers.csv"
    path.write_text("x2,x1,label\n2.5,1,leaves\n-4,3e2,\n")
    result = corrigo("import", "churn", str(path))
    assert result.exit_code == 0, result.output
    items = db.session.scalars(select(Item).order_by(Item.id)).all()
    assert [i.data for i in items] == [
        {"features": {"x1": 1.0, "x2": 2.5}},
        {"features": {"x1": 300.0, "x2": -4.0}},
    ]
    assert [i.label for i in items] == ["leaves", None]


def test_reimport_creates_no_duplicates_and_keeps_expert_labels(corrigo, make, tmp_path):
    project = make.make_project("news")
    rows = [{"external_id": f"e{i}", "text": f"story {i}", "label": "tech"} for i in range(5)]
    path = write_jsonl(tmp_path / "stories.jsonl", rows)
    assert corrigo("import", "news", path).exit_code == 0
    # An expert corrects one label; importing the same file again must not undo that.
    from webapp import pool

    item = items_by_external_id()["e0"]
    pool.annotate(project, item, "user:1", "sport")
    result = corrigo("import", "news", path)
    assert result.exit_code == 0, result.output
    assert "0 new items, 5 already known" in result.stdout
    assert "Recorded 0 labels" in result.stdout and "5 items kept the label" in result.stdout
    assert item_count() == 5
    assert items_by_external_id()["e0"].label == "sport"
    assert db.session.scalar(select(func.count(Annotation.id))) == 6


def test_large_import_streams_in_batches_and_keeps_labels_aligned(corrigo, make, tmp_path):
    make.make_project("news")
    rows = [
        {"external_id": f"e{i}", "text": f"story {i}", "label": ["sport", "tech"][i % 2]}
        if i % 500 == 7
        else {"external_id": f"e{i}", "text": f"story {i}"}
        for i in range(2600)
    ]
    result = corrigo("import", "news", write_jsonl(tmp_path / "big.jsonl", rows))
    assert result.exit_code == 0, result.output
    assert "2600 new items" in result.stdout and "Recorded 6 labels" in result.stdout
    items = items_by_external_id()
    assert len(items) == 2600
    labeled = {ext: item.label for ext, item in items.items() if item.label}
    assert labeled == {f"e{i}": ["sport", "tech"][i % 2] for i in range(7, 2600, 500)}
    assert all(item.data == {"text": f"story {ext[1:]}"} for ext, item in items.items())


def test_a_bad_row_names_its_line_and_nothing_is_written(corrigo, make, tmp_path):
    make.make_project("news")
    path = tmp_path / "mixed.jsonl"
    good = json.dumps({"text": "fine"})
    path.write_text(
        "\n".join(
            [
                good,
                "",
                "{broken",
                json.dumps({"data": {"text": ""}}),
                json.dumps({"text": "x", "label": "cooking"}),
                json.dumps({"text": "x", "lable": "tech"}),
                json.dumps({"text": "y", "external_id": 7}),
                json.dumps({"text": "y", "external_id": "d"}),
                json.dumps({"text": "z", "external_id": "d"}),
                json.dumps({"data": {"text": "x"}, "text": "x"}),
                json.dumps(["text"]),
                good,
            ]
        )
        + "\n"
    )
    result = corrigo("import", "news", str(path))
    assert result.exit_code == 2
    assert "8 bad rows, so nothing was imported" in result.stderr
    for expected in [
        "line 3: not valid JSON",
        "line 4: data.text: must be a non-empty string",
        "line 5: label: unknown label 'cooking'",
        "line 6: unknown field 'lable'",
        "line 7: external_id: must be a non-empty string",
        "line 9: external_id 'd' is already on line 8",
        "line 10: give either",
        "line 11: each line must be a JSON object",
    ]:
        assert expected in result.stderr
    assert item_count() == 0
    assert db.session.scalar(select(func.count(Annotation.id))) == 0


def test_only_the_first_errors_are_listed(corrigo, make, tmp_path):
    make.make_project("news")
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": ""}] * 25)
    result = corrigo("import", "news", path)
    assert result.exit_code == 2
    assert "25 bad rows" in result.stderr and "and 15 more" in result.stderr
    assert "line 10:" in result.stderr and "line 11:" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x1,x2,colour\n1,2,red\n", "line 1: unknown column 'colour'"),
        ("x1,label\n1,a\n", "line 1: missing column 'x2'"),
        ("x1,x2,x1\n1,2,3\n", "line 1: column 'x1' appears twice"),
        ("x1,x2\n1,abc\n", "line 2: column 'x2': 'abc' is not a number"),
        ("x1,x2\n1,\n", "line 2: column 'x2': is empty"),
        ("x1,x2\n1,inf\n", "line 2: column 'x2': must be a finite number"),
        ("x1,x2\n1,2,3\n", "line 2: expected 2 fields, found 3"),
        ("x1,x2,label\n1,2,c\n", "line 2: label: unknown label 'c'"),
        ("x1,x2\n", "has no rows to import"),
    ],
)
def test_bad_csv_is_refused_whole(corrigo, make, tmp_path, content, message):
    make.make_project("t", kind="tabular", labels=["a", "b"], features=["x1", "x2"])
    path = tmp_path / "rows.csv"
    path.write_text(content)
    result = corrigo("import", "t", str(path))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert item_count() == 0


def test_text_shorthand_is_refused_for_tabular_projects(corrigo, make, tmp_path):
    make.make_project("t", kind="tabular", labels=["a", "b"], features=["x1", "x2"])
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "hello"}])
    result = corrigo("import", "t", path)
    assert result.exit_code == 2
    assert "line 1: unknown field 'text'" in result.stderr


def test_format_comes_from_the_extension_or_the_option(corrigo, make, tmp_path):
    make.make_project("news")
    path = tmp_path / "rows.txt"
    path.write_text(json.dumps({"text": "hello"}) + "\n")
    result = corrigo("import", "news", str(path))
    assert result.exit_code == 2
    assert "cannot tell the format" in result.stderr and "--format" in result.stderr
    assert item_count() == 0
    result = corrigo("import", "news", str(path), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert item_count() == 1


def test_unknown_project_and_missing_file(corrigo, make, tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "hello"}])
    result = corrigo("import", "nope", path)
    assert result.exit_code == 2 and "no project 'nope'" in result.stderr
    make.make_project("news")
    result = corrigo("import", "news", str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_non_utf8_file_is_refused(corrigo, make, tmp_path):
    make.make_project("news")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps({"text": "ok"}).encode() + b"\n" + b'{"text": "caf\xe9"}\n')
    result = corrigo("import", "news", str(path))
    assert result.exit_code == 2
    assert "is not UTF-8 text" in result.stderr
    assert item_count() == 0


def test_a_labels_export_imports_into_another_project(corrigo, make, client, tmp_path):
    source = make.make_project("news")
    key = make.make_key(source)
    ids = make.make_items(source, 4)
    make.label_all(source, ids[:3])
    export = client.get(
        "/api/v1/projects/news/labels?format=jsonl", headers={"Authorization": f"Bearer {key}"}
    )
    assert export.status_code == 200
    path = tmp_path / "news-labels.jsonl"
    path.write_bytes(export.data)
    make.make_project("news-copy")
    result = corrigo("import", "news-copy", str(path))
    assert result.exit_code == 0, result.output
    assert "3 new items" in result.stdout and "Recorded 3 labels" in result.stdout
    copied = db.session.scalars(
        select(Item).join(Project).where(Project.slug == "news-copy").order_by(Item.id)
    ).all()
    originals = [db.session.get(Item, i) for i in ids[:3]]
    assert [(i.external_id, i.data, i.label) for i in copied] == [
        (o.external_id, o.data, o.label) for o in originals
    ]


def test_new_items_are_scored_by_the_champion(corrigo, make, tmp_path, run_jobs):
    project = make.make_project("news")
    make.make_champion(project)
    run_jobs()  # the promotion's rescore
    rows = [{"external_id": f"fresh-{i}", "text": "match goal team"} for i in range(3)]
    assert corrigo("import", "news", write_jsonl(tmp_path / "fresh.jsonl", rows)).exit_code == 0
    run_jobs()
    fresh = db.session.scalars(select(Item).where(Item.external_id.like("fresh-%"))).all()
    assert [item.score is not None for item in fresh] == [True] * 3
