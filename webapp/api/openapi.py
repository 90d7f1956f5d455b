"""The OpenAPI 3.1 document of the REST API, served at `GET /api/v1/openapi.json`.

Written out by hand so it reads as the contract it is; the tests check it against the views:
every route is documented with the same methods, each operation's `x-required-scope` is the
scope its view enforces, and real responses validate against the documented schemas.
"""

from __future__ import annotations

from .body import MAX_ROWS


def _ref(kind: str, name: str) -> dict:
    """A reference to a named component."""
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict:
    """A reference to a named schema."""
    return _ref("schemas", name)


def _nullable(schema: dict) -> dict:
    """The schema, or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], properties: dict, **extra) -> dict:
    """A closed object schema: unknown fields are refused, as the views refuse them."""
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _json(schema: dict, description: str, **extra) -> dict:
    """A response with a JSON body."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _body(name: str, description: str) -> dict:
    """A required JSON request body."""
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": _schema(name)}},
    }


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    tag: str,
    scope: str | None,
    responses: dict,
    errors: tuple[str, ...] = (),
    parameters: tuple[str, ...] = (),
    request_body: dict | None = None,
) -> dict:
    """One operation; a scope adds bearer security, `x-required-scope`, and the 401/403 answers."""
    op: dict = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if scope is None:
        op["description"] = description + "\n\nPublic: no API key is needed."
        op["security"] = []
    else:
        op["description"] = description + f"\n\nRequires an API key with the `{scope}` scope."
        op["security"] = [{"bearerAuth": []}]
        op["x-required-scope"] = scope
        errors = ("Unauthorized", "Forbidden", *errors)
    if parameters:
        op["parameters"] = [_ref("parameters", p) for p in parameters]
    if request_body:
        op["requestBody"] = request_body
    op["responses"] = dict(responses)
    for name in errors:
        op["responses"][ERROR_STATUS[name]] = _ref("responses", name)
    op["responses"] = dict(sorted(op["responses"].items()))
    return op


ERROR_STATUS = {
    "MalformedJson": "400",
    "Unauthorized": "401",
    "Forbidden": "403",
    "NotFound": "404",
    "Conflict": "409",
    "TooLarge": "413",
    "Invalid": "422",
}
BODY_ERRORS = ("MalformedJson", "TooLarge", "Invalid")

SCHEMAS: dict = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem document; every error answer has this shape.",
        "required": ["type", "status", "title", "detail"],
        "properties": {
            "type": {"type": "string", "examples": ["about:blank"]},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "title": {"type": "string", "examples": ["Invalid input"]},
            "detail": {"type": "string"},
            "errors": {
                "type": "object",
                "description": (
                    "Per-field messages, keyed by the field's path in the request "
                    "(e.g. `items[3].data.text`, `label`, `format`, `Idempotency-Key`)."
                ),
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "TextData": {
        "type": "object",
        "description": "An item of a `text` project. Extra keys are kept as imported.",
        "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1}},
    },
    "TabularData": {
        "type": "object",
        "description": (
            "An item of a `tabular` project: a finite number for every declared feature, "
            "and no other feature."
        ),
        "required": ["features"],
        "properties": {
            "features": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "ItemData": {
        "description": "The model input, shaped by the project's kind.",
        "anyOf": [_schema("TextData"), _schema("TabularData")],
    },
    "ExternalId": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "description": "Your own id for the item; an id seen before maps to the same item.",
    },
    "Label": {"type": "string", "description": "One of the project's labels."},
    "Probabilities": {
        "type": "object",
        "description": "Probability per label.",
        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "IdList": _obj(["ids"], {"ids": {"type": "array", "items": {"type": "integer"}}}),
    "ImportRequest": _obj(
        ["items"],
        {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ROWS,
                "items": _obj(
                    ["data"],
                    {"external_id": _schema("ExternalId"), "data": _schema("ItemData")},
                ),
            }
        },
    ),
    "PredictRequest": _obj(
        ["data"],
        {
            "data": _schema("ItemData"),
            "external_id": _schema("ExternalId"),
            "unit": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "The end user or session the prediction serves.",
            },
        },
    ),
    "PredictResponse": _obj(
        ["prediction_id", "item_id", "label", "probabilities", "model_version"],
        {
            "prediction_id": {"type": "integer"},
            "item_id": {"type": "integer"},
            "label": _schema("Label"),
            "probabilities": _schema("Probabilities"),
            "model_version": {"type": "integer", "minimum": 1},
        },
    ),
    "PredictionLogRequest": _obj(
        ["predictions"],
        {
            "predictions": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ROWS,
                "items": _obj(
                    ["data", "label"],
                    {
                        "data": _schema("ItemData"),
                        "label": _schema("Label"),
                        "probabilities": _schema("Probabilities"),
                        "external_id": _schema("ExternalId"),
                        "model": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "description": "Name of your model that made the prediction.",
                        },
                        "unit": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                ),
            }
        },
    ),
    "FeedbackRequest": _obj(
        [],
        {
            "correct": {"type": "boolean", "description": "Whether the prediction was right."},
            "label": _schema("Label"),
            "comment": {"type": "string"},
        },
        description=(
            "Give `correct`, a suggested `label`, or both. Feedback saying the prediction was "
            "wrong marks the item disputed, which puts it first in the experts' queue."
        ),
        anyOf=[{"required": ["correct"]}, {"required": ["label"]}],
    ),
    "FeedbackCreated": _obj(["feedback_id"], {"feedback_id": {"type": "integer"}}),
    "Suggestion": _obj(
        ["label", "probabilities"],
        {"label": _schema("Label"), "probabilities": _schema("Probabilities")},
        description="The champion's prediction for the item.",
    ),
    "QueueItem": _obj(
        ["item_id", "data", "reason", "suggestion"],
        {
            "item_id": {"type": "integer"},
            "data": {"type": "object", "description": "The item's data as imported."},
            "reason": {
                "type": "string",
                "enum": ["disputed", "uncertain", "audit", "cold-start"],
                "description": "Why the queue chose this item.",
            },
            "suggestion": _nullable(_schema("Suggestion")),
        },
    ),
    "AnnotationRequest": _obj(["label"], {"label": _schema("Label")}),
    "Annotation": _obj(
        ["annotation_id", "item_id", "label"],
        {
            "annotation_id": {"type": "integer"},
            "item_id": {"type": "integer"},
            "label": _schema("Label"),
        },
    ),
    "ExclusionRequest": _obj(
        ["reason"], {"reason": {"type": "string", "minLength": 1, "maxLength": 500}}
    ),
    "Exclusion": _obj(
        ["item_id", "excluded_at", "excluded_by", "reason"],
        {
            "item_id": {"type": "integer"},
            "excluded_at": {"type": "string", "format": "date-time"},
            "excluded_by": {"type": "string", "description": "The key (`key:<id>`) or user."},
            "reason": {"type": "string"},
        },
    ),
    "RunAccepted": _obj(["run_id"], {"run_id": {"type": "integer"}}),
    "GateReason": _obj(
        ["rule", "passed", "detail"],
        {
            "rule": {"type": "string", "examples": ["heldout_size", "beats_baseline"]},
            "passed": {"type": "boolean"},
            "detail": {"type": "string"},
        },
    ),
    "Run": _obj(
        [
            "run_id",
            "status",
            "trigger",
            "decision",
            "reasons",
            "metrics",
            "model_version",
            "error",
            "created_at",
            "finished_at",
        ],
        {
            "run_id": {"type": "integer"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
            "trigger": {
                "type": "string",
                "description": "What started the run: `manual` (API, CLI, UI) or `auto`.",
            },
            "decision": {"enum": ["promoted", "rejected", None]},
            "reasons": {
                "type": "array",
                "items": _schema("GateReason"),
                "description": "The gate's verdict on each rule, passed or failed.",
            },
            "metrics": {
                "type": "object",
                "description": (
                    "Held-out metrics of the `candidate`, the `champion` it was compared with "
                    "(null for the first model) and the majority `baseline`."
                ),
            },
            "model_version": _nullable({"type": "integer"}),
            "error": _nullable({"type": "string"}),
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": _nullable({"type": "string", "format": "date-time"}),
        },
    ),
    "ModelVersion": _obj(
        [
            "version",
            "status",
            "metrics",
            "created_at",
            "promoted_at",
            "snapshot_digest",
            "train_size",
        ],
        {
            "version": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": ["candidate", "champion", "retired", "rejected"]},
            "metrics": {"type": "object", "description": "Held-out metrics when it was trained."},
            "created_at": {"type": "string", "format": "date-time"},
            "promoted_at": _nullable({"type": "string", "format": "date-time"}),
            "snapshot_digest": {
                "type": "string",
                "description": "SHA-256 of the (item id, label) pairs it was trained on.",
            },
            "train_size": {"type": "integer", "minimum": 0},
        },
    ),
    "ModelList": _obj(
        ["models"],
        {
            "models": {
                "type": "array",
                "items": _schema("ModelVersion"),
                "description": "Newest first.",
            }
        },
    ),
    "LabelRow": _obj(
        ["item_id", "external_id", "data", "label", "split"],
        {
            "item_id": {"type": "integer"},
            "external_id": _nullable({"type": "string"}),
            "data": {"type": "object"},
            "label": _schema("Label"),
            "split": {"type": "string", "enum": ["train", "heldout"]},
        },
    ),
}

PARAMETERS: dict = {
    "slug": {
        "name": "slug",
        "in": "path",
        "required": True,
        "description": "The project's slug; it must be the API key's own project.",
        "schema": {"type": "string"},
    },
    "item_id": {
        "name": "item_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "prediction_id": {
        "name": "prediction_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "run_id": {
        "name": "run_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "format": {
        "name": "format",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
    },
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": (
            "Any unique string (1 to 200 characters). A retry with the same key and body returns "
            "the first answer and creates nothing; the same key with another body is a 422."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    },
}


def _problem_response(description: str, **extra) -> dict:
    """An error response carrying a problem document."""
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _schema("Problem")}},
        **extra,
    }


RESPONSES: dict = {
    "MalformedJson": _problem_response("The body is not valid JSON."),
    "Unauthorized": _problem_response(
        "No API key, a malformed Authorization header, or an unknown or revoked key.",
        headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "Forbidden": _problem_response("The API key lacks the scope this operation needs."),
    "NotFound": _problem_response(
        "No such resource in the API key's project (another project's resources are never shown)."
    ),
    "Conflict": _problem_response("The request conflicts with the project's current state."),
    "TooLarge": _problem_response("The body is larger than the server's limit."),
    "Invalid": _problem_response(
        "The body (or a parameter) is well-formed but invalid; `errors` names each field."
    ),
}

PATHS: dict = {
    "/projects/{slug}/items": {
        "post": _operation(
            "importItems",
            "Import items",
            f"Add up to {MAX_ROWS} items to the pool. Every row is validated before any is "
            "written, so a request is imported whole or not at all. A known `external_id` "
            "returns the existing item's id instead of creating a duplicate.",
            "items",
            "admin",
            {"201": _json(_schema("IdList"), "The item ids, in the order of the rows.")},
            ("NotFound", *BODY_ERRORS),
            ("slug",),
            _body("ImportRequest", "The items to import."),
        )
    },
    "/projects/{slug}/predict": {
        "post": _operation(
            "predict",
            "Predict with the champion",
            "Predict with the project's current champion and log the prediction, so that "
            "feedback can refer to it.",
            "predictions",
            "predict",
            {"200": _json(_schema("PredictResponse"), "The prediction.")},
            ("NotFound", "Conflict", *BODY_ERRORS),
            ("slug",),
            _body("PredictRequest", "The input to classify."),
        )
    },
    "/projects/{slug}/predictions": {
        "post": _operation(
            "logPredictions",
            "Log your own model's predictions",
            f"Record up to {MAX_ROWS} predictions made by the app's own model, so that "
            "feedback can refer to them. All rows are validated before any is written.",
            "predictions",
            "predict",
            {"201": _json(_schema("IdList"), "The prediction ids, in the order of the rows.")},
            ("NotFound", *BODY_ERRORS),
            ("slug",),
            _body("PredictionLogRequest", "The predictions to log."),
        )
    },
    "/predictions/{prediction_id}/feedback": {
        "post": _operation(
            "addFeedback",
            "Give feedback on a prediction",
            "Record an end user's verdict on a prediction. Send an `Idempotency-Key` to make "
            "retries safe.",
            "predictions",
            "feedback",
            {
                "201": _json(
                    _schema("FeedbackCreated"),
                    "The feedback (also the answer to a replayed Idempotency-Key).",
                    headers={
                        "Idempotent-Replayed": {
                            "description": "`true` when this answers a retry.",
                            "schema": {"type": "string"},
                        }
                    },
                )
            },
            ("NotFound", *BODY_ERRORS),
            ("prediction_id", "Idempotency-Key"),
            _body("FeedbackRequest", "The verdict."),
        )
    },
    "/projects/{slug}/queue/next": {
        "get": _operation(
            "nextItem",
            "Next item to label",
            "Lease the next item to this key's annotator for 10 minutes: disputed items "
            "first, then (with a champion) the most uncertain, with a share of random audits; "
            "before any model, random order. Asking again returns the same leased item.",
            "labeling",
            "label",
            {
                "200": _json(_schema("QueueItem"), "The item, why it was chosen, a suggestion."),
                "204": {"description": "Nothing is left to label for this annotator."},
            },
            ("NotFound",),
            ("slug",),
        )
    },
    "/items/{item_id}/annotations": {
        "post": _operation(
            "annotate",
            "Label an item",
            "Record this key's annotator's label; it becomes the item's resolved label, and "
            "every `retrain_every` label changes queue an automatic retrain.",
            "labeling",
            "label",
            {"201": _json(_schema("Annotation"), "The annotation.")},
            ("NotFound", "Conflict", *BODY_ERRORS),
            ("item_id",),
            _body("AnnotationRequest", "The label."),
        )
    },
    "/items/{item_id}/skip": {
        "post": _operation(
            "skip",
            "Skip an item",
            "Hide the item from this key's annotator and release their lease on it.",
            "labeling",
            "label",
            {"204": {"description": "Skipped."}},
            ("NotFound",),
            ("item_id",),
        )
    },
    "/items/{item_id}/exclusion": {
        "post": _operation(
            "excludeItem",
            "Exclude an item",
            "Take an item out of the queue, training and held-out evaluation (a bad row that "
            "stops the project from learning, say); it and its annotations are kept. An item "
            "already excluded keeps its first exclusion (200).",
            "items",
            "admin",
            {
                "200": _json(_schema("Exclusion"), "It was already excluded."),
                "201": _json(_schema("Exclusion"), "Excluded."),
            },
            ("NotFound", *BODY_ERRORS),
            ("item_id",),
            _body("ExclusionRequest", "Why the item is excluded."),
        ),
        "delete": _operation(
            "restoreItem",
            "Restore an excluded item",
            "Put the item back in the queue and the training data (also answered for an item "
            "that was not excluded).",
            "items",
            "admin",
            {"204": {"description": "Restored."}},
            ("NotFound",),
            ("item_id",),
        ),
    },
    "/projects/{slug}/retrain": {
        "post": _operation(
            "retrain",
            "Queue a retrain",
            "Queue a retrain; while one is already queued, its run is returned instead "
            "(triggers coalesce). 409 when the project cannot be trained yet (its training "
            "split needs labeled items of at least two labels); `detail` says why.",
            "models",
            "admin",
            {
                "202": _json(
                    _schema("RunAccepted"),
                    "The queued run.",
                    headers={
                        "Location": {
                            "description": "Where to poll the run.",
                            "schema": {"type": "string"},
                        }
                    },
                )
            },
            ("NotFound", "Conflict"),
            ("slug",),
        )
    },
    "/projects/{slug}/runs/{run_id}": {
        "get": _operation(
            "showRun",
            "A retrain run",
            "The run's status and, once finished, the gate's decision with a reason per rule.",
            "models",
            "admin",
            {"200": _json(_schema("Run"), "The run.")},
            ("NotFound",),
            ("slug", "run_id"),
        )
    },
    "/projects/{slug}/models": {
        "get": _operation(
            "listModels",
            "Model versions",
            "Every model version of the project, newest first.",
            "models",
            "admin",
            {"200": _json(_schema("ModelList"), "The versions.")},
            ("NotFound",),
            ("slug",),
        )
    },
    "/projects/{slug}/labels": {
        "get": _operation(
            "exportLabels",
            "Export resolved labels",
            "Stream one row per resolved label with its `train`/`heldout` split. JSON Lines "
            "gives one LabelRow object per line; CSV has the columns item_id, external_id, "
            "data (a JSON string), label, split.",
            "export",
            "admin",
            {
                "200": {
                    "description": "The labels, streamed.",
                    "content": {
                        "application/x-ndjson": {"schema": _schema("LabelRow")},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                }
            },
            ("NotFound", "Invalid"),
            ("slug", "format"),
        )
    },
    "/openapi.json": {
        "get": _operation(
            "openapi",
            "This document",
            "The OpenAPI 3.1 description of this API.",
            "meta",
            None,
            {"200": _json({"type": "object"}, "The OpenAPI document.")},
        )
    },
}

SPEC: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "Corrigo API",
        "version": "1",
        "description": (
            "Post predictions and feedback, label the items experts should see next, retrain, "
            "and export labels.\n\n"
            "Authenticate with `Authorization: Bearer <key>`. A key belongs to one project and "
            "carries scopes: `predict`, `feedback`, `label` (the key labels as one annotator, "
            "with its own leases) and `admin`; each operation names the scope it needs in "
            "`x-required-scope`. Errors are `application/problem+json` documents; a missing or "
            "unknown key is 401, a key without the scope 403, and another project's resource "
            "404."
        ),
    },
    "servers": [{"url": "/api/v1"}],
    "tags": [
        {"name": "items", "description": "The pool of inputs."},
        {"name": "predictions", "description": "Predictions and end-user feedback."},
        {"name": "labeling", "description": "The experts' queue and their labels."},
        {"name": "models", "description": "Retrains, the gate's decisions, model versions."},
        {"name": "export", "description": "Resolved labels for use elsewhere."},
        {"name": "meta", "description": "This document."},
    ],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "parameters": PARAMETERS,
        "responses": RESPONSES,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key created with `corrigo apikey create`.",
            }
        },
    },
}
