"""Batch rows load by their schema's own fields, and bodies skip the value walk only when safe."""

from __future__ import annotations

import json

import pytest
from marshmallow import Schema, ValidationError, fields

from webapp.api.body import _suspect
from webapp.api.predictions import LoggedPrediction, PredictionLogRequest

ROW = {"data": {"text": "a"}, "label": "sport", "probabilities": {"sport": 0.75}}


class _ByList(Schema):
    """The same request with a plain List(Nested), as marshmallow alone loads it."""

    predictions = fields.List(fields.Nested(LoggedPrediction), required=True)


def test_the_fast_path_loads_exactly_what_the_schema_loads():
    rows = [ROW, {**ROW, "external_id": "e1", "model": "m", "unit": "u", "probabilities": None}]
    fast = PredictionLogRequest().load({"predictions": rows})
    assert fast == _ByList().load({"predictions": rows})
    assert fast["predictions"][0]["external_id"] is None  # load_default applied


@pytest.mark.parametrize(
    "bad",
    [
        {**ROW, "colour": "red"},  # an unknown key
        {**ROW, "external_id": ""},  # a validator
        {**ROW, "probabilities": {"sport": 2}},  # a nested field's own error
        {"label": "sport"},  # a required field
        "not an object",
    ],
)
def test_a_bad_row_gets_the_schemas_own_error_at_its_index(bad):
    rows = [ROW, ROW, bad]
    with pytest.raises(ValidationError) as fast:
        PredictionLogRequest().load({"predictions": rows})
    with pytest.raises(ValidationError) as plain:
        _ByList().load({"predictions": rows})
    assert fast.value.messages == plain.value.messages
    assert list(fast.value.messages["predictions"]) == [2]


@pytest.mark.parametrize(
    ("value", "suspect"),
    [
        ("x\u0000y", True),  # NUL arrives as an escape
        ("\ud800", True),  # an unpaired surrogate too
        (2**63, True),
        ("caf\u00e9 \u2014 ok", False),
        (123456789012345678, False),  # 18 digits fit
        (1.5e-300, False),
    ],
)
def test_the_raw_body_says_when_the_value_walk_is_needed(value, suspect):
    raw = json.dumps({"v": value}).encode()
    assert _suspect(raw) is suspect


def test_an_overflowing_exponent_is_suspect():
    assert _suspect(b'{"v": 1e400}') and _suspect(b'{"v": 2E+309}')
