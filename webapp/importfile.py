"""Import files (JSONL and CSV): parse and check every row before anything is written.

Shared by `corrigo import` and any upload endpoint. Problems with the file as a whole raise
`FileError`; a bad row is reported as (line, message) so a caller can list them all.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ValidationError
from .fields import check_external_id
from .models import Project
from .validation import validate_data, validate_label

# CSV columns (and JSONL fields) that are not item data, so no feature may take their names.
RESERVED_COLUMNS = ("external_id", "label")
MAX_REPORTED_ERRORS = 10
# Fields of `GET /api/v1/projects/{slug}/labels` rows that an import ignores.
EXPORT_ONLY_FIELDS = ("item_id", "split")
# The labels export's CSV columns: `data` holds the item's data as a JSON string.
CSV_EXPORT_COLUMNS = ["item_id", "external_id", "data", "label", "split"]
# A CSV cell starting with one of these runs as a formula in a spreadsheet (OWASP's list), so
# the export writes it with a leading apostrophe; a cell starting with an apostrophe gets one
# more, so that the import can take exactly one off and restore every value as it was.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


class FileError(ValueError):
    """The file cannot be imported as a whole (wrong header, not UTF-8, bad rows listed)."""


@dataclass(frozen=True)
class ImportRow:
    """One valid row of an import file."""

    line: int
    external_id: str | None
    data: dict
    label: str | None


def validation_message(exc: ValidationError) -> str:
    """`field: message` for the first field a ValidationError names."""
    field, message = next(iter(exc.errors.items()))
    return f"{field}: {message}"


def escape_cell(value: str) -> str:
    """A CSV cell no spreadsheet runs as a formula (`=1+1` is written `'=1+1`)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def unescape_cell(value: str) -> str:
    """The value `escape_cell` wrote this cell for."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def check_label(project: Project, value: object) -> str | None:
    """Return a valid label (or None); raise ValueError with the reason otherwise."""
    if value is None:
        return None
    try:
        return validate_label(project, value)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


def check_data(project: Project, data: object) -> dict:
    """Return valid item data; raise ValueError with the reason otherwise."""
    try:
        return validate_data(project, data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


def jsonl_row(project: Project, line: int, obj: object) -> ImportRow:
    """Turn one parsed JSONL line into a row, or raise ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    allowed = {"external_id", "data", "label"} | ({"text"} if project.kind == "text" else set())
    # The labels export's own fields: an export of one project imports into another as is.
    unknown = sorted(set(obj) - allowed - set(EXPORT_ONLY_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    if "text" in obj:
        if "data" in obj:
            raise ValueError('give either "data" or the "text" shorthand, not both')
        data = {"text": obj["text"]}
    elif "data" in obj:
        data = obj["data"]
    else:
        shorthand = ' (or "text")' if project.kind == "text" else ""
        raise ValueError(f'missing "data"{shorthand}')
    return ImportRow(
        line,
        check_external_id(obj.get("external_id")),
        check_data(project, data),
        check_label(project, obj.get("label")),
    )


def parse_jsonl(project: Project, fh) -> Iterator[tuple[int, ImportRow | str]]:
    """Yield (line number, row or error) for each non-blank line of a JSONL file."""
    for line, raw in enumerate(fh, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        try:
            yield line, jsonl_row(project, line, obj)
        except ValueError as exc:
            yield line, str(exc)


def csv_number(column: str, cell: str) -> float:
    """Parse a numeric CSV cell, or raise ValueError naming the column."""
    if not cell.strip():
        raise ValueError(f"column {column!r}: is empty")
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"column {column!r}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"column {column!r}: must be a finite number")
    return value


def _json_cell(column: str, cell: str) -> object:
    """Parse a JSON CSV cell, or raise ValueError naming the column."""
    try:
        return json.loads(cell)
    except json.JSONDecodeError as exc:
        raise ValueError(f"column {column!r}: not valid JSON ({exc.msg})") from None


def parse_csv(project: Project, fh) -> Iterator[tuple[int, ImportRow | str]]:
    """Yield (line number, row or error) for each record of a CSV file with a header line."""
    reader = csv.reader(fh)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    data_columns = ["text"] if project.kind == "text" else list(project.features)
    if "data" in header:
        # The labels export: the item's data as one JSON column, beside columns to ignore.
        data_columns = ["data"]
        allowed = [*CSV_EXPORT_COLUMNS]
    else:
        allowed = [*data_columns, *RESERVED_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise FileError(f"line 1: column {repeated[0]!r} appears twice")
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise FileError(f"line 1: unknown column {unknown[0]!r}; expected {', '.join(allowed)}")
    missing = [c for c in data_columns if c not in header]
    if missing:
        raise FileError(
            f"line 1: missing column {missing[0]!r} (columns: {', '.join(allowed)}; "
            "external_id and label are optional)"
        )
    for cells in reader:
        line = reader.line_num
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != len(header):
            yield line, f"expected {len(header)} fields, found {len(cells)}"
            continue
        record = {k: unescape_cell(v) for k, v in zip(header, cells, strict=True)}
        try:
            if data_columns == ["data"]:
                data = _json_cell("data", record["data"])
            elif project.kind == "text":
                data: dict = {"text": record["text"]}
            else:
                data = {"features": {f: csv_number(f, record[f]) for f in project.features}}
            yield (
                line,
                ImportRow(
                    line,
                    check_external_id(record.get("external_id") or None),
                    check_data(project, data),
                    check_label(project, record.get("label") or None),
                ),
            )
        except ValueError as exc:
            yield line, str(exc)


def read_rows(project: Project, path: str, fmt: str) -> Iterator[tuple[int, ImportRow | str]]:
    """Yield (line, row or error) from an import file; unreadable files are usage errors."""
    parse = parse_csv if fmt == "csv" else parse_jsonl
    line = 0
    try:
        # utf-8-sig: spreadsheets often start a CSV with a byte-order mark.
        with open(path, encoding="utf-8-sig", newline="" if fmt == "csv" else None) as fh:
            for line, parsed in parse(project, fh):
                yield line, parsed
    except UnicodeDecodeError:
        where = f" (somewhere after line {line})" if line else ""
        raise FileError(f"is not UTF-8 text{where}") from None
    except csv.Error as exc:
        raise FileError(f"after line {line}: {exc}") from None


def validate_file(project: Project, path: str, fmt: str) -> tuple[int, int]:
    """Check every row of the file; return (rows, rows with a label) or raise listing bad rows."""
    errors: list[str] = []
    bad = rows = with_label = 0
    first_line: dict[str, int] = {}
    for line, parsed in read_rows(project, path, fmt):
        if isinstance(parsed, ImportRow) and parsed.external_id is not None:
            earlier = first_line.setdefault(parsed.external_id, line)
            if earlier != line:
                parsed = f"external_id {parsed.external_id!r} is already on line {earlier}"
        if isinstance(parsed, str):
            bad += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(f"line {line}: {parsed}")
        else:
            rows += 1
            with_label += parsed.label is not None
    if bad:
        more = f"\n  … and {bad - len(errors)} more" if bad > len(errors) else ""
        listing = "\n  ".join(errors)
        raise FileError(
            f"{bad} bad row{'s' if bad > 1 else ''}, so nothing was imported:\n  {listing}{more}"
        )
    if rows == 0:
        raise FileError("has no rows to import")
    return rows, with_label


def format_of(path: str, fmt: str | None) -> str:
    """The import format: --format, else the file's extension."""
    if fmt:
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    if ext == ".csv":
        return "csv"
    raise FileError(
        f"cannot tell the format from the extension {ext or '(none)'!r}; "
        "name the file .jsonl or .csv, or pass --format"
    )
