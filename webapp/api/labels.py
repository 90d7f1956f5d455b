"""The labels export: every resolved label with its train/held-out split, streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from itertools import islice

from flask import Response, stream_with_context
from marshmallow import Schema, fields, validate

from .. import fields as f
from .. import pool, training
from ..importfile import CSV_EXPORT_COLUMNS, escape_cell
from ..models import Project
from .common import Blueprint, scoped, with_project

blp = Blueprint("export", __name__, description="Resolved labels for use elsewhere.")

EXPORT_CHUNK = 1000
# `charset` is added by Flask to text/* types; naming it here too sent it twice.
EXPORT_FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


class ExportQuery(Schema):
    """The export's format."""

    format = fields.String(
        load_default="jsonl",
        validate=validate.OneOf(list(EXPORT_FORMATS)),
        metadata={"description": "JSON Lines (one LabelRow per line) or CSV."},
    )


class LabelRow(Schema):
    """One resolved label."""

    item_id = fields.Integer(required=True)
    external_id = fields.String(required=True, allow_none=True)
    data = fields.Dict(required=True)
    label = f.label(required=True)
    split = fields.String(required=True, validate=validate.OneOf(["train", "heldout"]))


@blp.route("/projects/<slug>/labels")
@scoped(
    "admin",
    "Stream one row per resolved label with its `train`/`heldout` split. JSON Lines gives one "
    "LabelRow object per line; CSV has the columns item_id, external_id, data (a JSON string), "
    "label, split, and a cell that a spreadsheet would run as a formula (starting with =, +, -, "
    "@, a tab or a carriage return) is written with a leading apostrophe. Both formats import "
    "back with `corrigo import`.",
    errors=(404, 422),
)
@with_project
@blp.arguments(ExportQuery, location="query", arg_name="query")
@blp.response(200, LabelRow, content_type="application/x-ndjson", description="The labels.")
@blp.alt_response(
    200,
    schema={"type": "string"},
    content_type="text/csv",
    description="The labels.",
    success=True,
)
def export_labels(project: Project, query: dict):
    """Export resolved labels."""
    fmt = query["format"]
    rows = _label_rows(project)
    chunks = _jsonl(rows) if fmt == "jsonl" else _csv(rows)
    return Response(
        stream_with_context(chunks),
        mimetype=EXPORT_FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{project.slug}-labels.{fmt}"'},
    )


def _label_rows(project: Project) -> Iterator[list[dict]]:
    """Yield resolved labels in chunks, each row with its train/held-out split."""
    items = pool.labeled_items(project, chunk=EXPORT_CHUNK)
    while chunk := list(islice(items, EXPORT_CHUNK)):
        held = training.heldout_of(project, [r[0] for r in chunk], [r[4] for r in chunk])
        yield [
            {
                "item_id": item_id,
                "external_id": external_id,
                "data": data,
                "label": label,
                "split": "heldout" if is_held else "train",
            }
            for (item_id, external_id, data, label, _lane), is_held in zip(chunk, held, strict=True)
        ]


def _jsonl(chunks: Iterator[list[dict]]) -> Iterator[str]:
    """One JSON object per line."""
    for chunk in chunks:
        yield "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk)


def _csv(chunks: Iterator[list[dict]]) -> Iterator[str]:
    """A header, then one CSV row per label; `data` is a JSON string column."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_EXPORT_COLUMNS)
    for chunk in chunks:
        for row in chunk:
            writer.writerow(
                [
                    row["item_id"],
                    escape_cell(row["external_id"] or ""),
                    escape_cell(json.dumps(row["data"], ensure_ascii=False)),
                    escape_cell(row["label"]),
                    row["split"],
                ]
            )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.getvalue():
        yield buf.getvalue()
