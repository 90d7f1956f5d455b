"""Input limits and the field types the API's schemas share, defined once.

The CLI's import-file parser and the project checks in `webapp.validation` import the same
limits and fields, so the API, `corrigo import` and the web pages refuse the same values.
It sits below the API (it imports nothing of it), so anything may import it.
"""

from __future__ import annotations

from enum import StrEnum

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate

from .enums import values

# Rows per import or prediction-log request: one transaction, and a bounded response time.
MAX_ROWS = 1000
# External ids, model names, units and idempotency keys.
MAX_ID_LENGTH = 200
# An item's text and an end user's feedback comment.
MAX_TEXT_LENGTH = 100_000
MAX_COMMENT_LENGTH = 2_000
# Path ids: item, prediction and feedback ids are 64-bit columns, run ids 32-bit (INTEGER on
# PostgreSQL), so a larger id can match no row and is a 404 before any query is sent.
MAX_BIG_ID = 2**63 - 1
MAX_INT_ID = 2**31 - 1


class StrictBoolean(fields.Boolean):
    """JSON true or false only (marshmallow's Boolean also takes 0, 1, "yes", …)."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse anything but a JSON boolean."""
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictNumber(fields.Float):
    """A JSON number (not a string of digits, not true or false)."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse strings and booleans, which Float would convert."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


# A logged prediction's own time may run this far ahead of the server's clock (clock skew).
MAX_CLOCK_SKEW_SECONDS = 60


class Timestamp(fields.String):
    """An ISO 8601 time, stored as naive UTC; one without an offset is taken as UTC, and one
    more than `MAX_CLOCK_SKEW_SECONDS` in the future is refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        """The time as a naive UTC datetime, or an error saying what is wrong with it."""
        from datetime import UTC, datetime, timedelta

        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValidationError("must be an ISO 8601 time, e.g. 2026-12-06T10:15:00Z") from None
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        if when > datetime.now(UTC).replace(tzinfo=None) + timedelta(
            seconds=MAX_CLOCK_SKEW_SECONDS
        ):
            raise ValidationError("must not be in the future")
        return when


class JsonObject(fields.Dict):
    """Any JSON object, taken as is (its contents are checked by the project step, if at all)."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse anything but an object; JSON's keys are strings already."""
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        return value


class NumberMap(fields.Dict):
    """An object of numbers in [0, 1] keyed by strings; an error names the key itself
    (`probabilities.tech`). Checked in one pass: it is in every row of a 1,000-row batch."""

    def __init__(self, **kwargs):
        kwargs.setdefault("keys", fields.String())
        kwargs.setdefault("values", StrictNumber(validate=validate.Range(0, 1)))
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        """The mapping with float values, or the errors of each bad value by key."""
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        errors = {}
        for key, number in value.items():
            if isinstance(number, bool) or not isinstance(number, int | float):
                errors[key] = ["Not a valid number."]
            elif not 0 <= number <= 1:
                errors[key] = ["Must be greater than or equal to 0 and less than or equal to 1."]
        if errors:
            raise ValidationError(errors)
        return {key: float(number) for key, number in value.items()}


class Rows(fields.List):
    """A list of rows of one schema (a batch of up to 1,000 items or predictions).

    Documented and validated by that schema: a row is loaded field by field with the schema's
    own fields, which skips the per-row machinery of `Schema.load` (a third of a 1,000-row
    request's time). A row the fast path cannot take as is (an error, an unknown key, a schema
    with hooks) sends the whole list through `Schema.load`, so errors are marshmallow's own.
    """

    def __init__(self, schema: type[Schema], **kwargs):
        super().__init__(fields.Nested(schema), **kwargs)
        row = schema()
        simple = not any(row._hooks.values()) and row.unknown == RAISE
        self._plan = (
            [(f.data_key or name, f.attribute or name, f) for name, f in row.load_fields.items()]
            if simple
            else []
        )
        self._keys = {key for key, _attr, _field in self._plan}

    def _deserialize(self, value, attr, data, **kwargs):
        """The rows loaded by the fast path, or by the schema if any row needs it."""
        rows = self._fast(value)
        return rows if rows is not None else super()._deserialize(value, attr, data, **kwargs)

    def _fast(self, value) -> list[dict] | None:
        if not self._plan or type(value) is not list:
            return None
        out = []
        for row in value:
            if type(row) is not dict or not row.keys() <= self._keys:
                return None
            loaded = {}
            for key, name, field in self._plan:
                try:
                    result = field.deserialize(row.get(key, missing), key, row)
                except ValidationError:
                    return None
                if result is not missing:
                    loaded[name] = result
            out.append(loaded)
        return out


def enum(kind: type[StrEnum], **kwargs) -> fields.String:
    """A string field taking the values of a StrEnum (documented as an `enum`)."""
    return fields.String(validate=validate.OneOf(values(kind)), **kwargs)


def identifier(description: str, **kwargs) -> fields.String:
    """An optional identifier: a non-empty string of at most 200 characters, or null."""
    kwargs.setdefault("load_default", None)
    message = f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"
    return fields.String(
        allow_none=True,
        validate=validate.Length(1, MAX_ID_LENGTH, error=message),
        error_messages={"invalid": message},
        metadata={"description": description},
        **kwargs,
    )


def external_id(**kwargs) -> fields.String:
    """Your own id for an item; one seen before maps to the same item."""
    return identifier(
        "Your own id for the item (1 to 200 characters); an id seen before maps to the same item.",
        **kwargs,
    )


def item_data(**kwargs) -> fields.Dict:
    """An item's data: an object, checked against the project's kind after parsing."""
    return JsonObject(
        metadata={
            "description": (
                'The model input. A `text` project takes `{"text": "…"}` (1 to '
                f"{MAX_TEXT_LENGTH:,} characters; extra keys are kept as imported); a `tabular` "
                'project takes `{"features": {name: number}}` with a finite number for every '
                "declared feature and no other."
            )
        },
        **kwargs,
    )


def label(**kwargs) -> fields.String:
    """One of the project's labels (checked against the project after parsing)."""
    return fields.String(metadata={"description": "One of the project's labels."}, **kwargs)


_EXTERNAL_ID = external_id()


def check_external_id(value: object) -> str | None:
    """Return a valid external id (or None) by the API's own rule; raise ValueError otherwise."""
    try:
        return _EXTERNAL_ID.deserialize(value)
    except ValidationError as exc:
        raise ValueError(f"external_id: {' '.join(exc.messages)}") from None
