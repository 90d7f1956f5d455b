"""Monitoring over the API: the stored windows, the alerts, and the alert rules."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from flask import g
from marshmallow import Schema, fields, missing, validate
from sqlalchemy import select

from labeling import alerting

from .. import alerts, monitoring
from ..enums import AlertState, values
from ..errors import ValidationError
from ..extensions import db
from ..models import Alert, AlertRule, Project
from .common import (
    BODY_ERRORS,
    DATE_TIME,
    Blueprint,
    created,
    row,
    scoped,
    timestamp,
    with_project,
)

blp = Blueprint("monitor", __name__, description="Monitoring windows, alerts and alert rules.")

MAX_WINDOWS = 1000
ALERTS_SHOWN = 200


# --- windows ----------------------------------------------------------------------------------


class MonitorQuery(Schema):
    """Which windows to return."""

    since = fields.AwareDateTime(
        load_default=None,
        default_timezone=UTC,
        metadata={"description": "Windows from (ISO 8601)."},
    )
    until = fields.AwareDateTime(
        load_default=None,
        default_timezone=UTC,
        metadata={"description": "Windows starting before (ISO 8601)."},
    )
    model = fields.String(
        load_default=None,
        validate=validate.Length(1, 120),
        metadata={"description": "A model key: `v3` for version 3, `app:<name>` for your own."},
    )
    model_version = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "Same as `model=v<n>`."},
    )
    limit = fields.Integer(
        load_default=90,
        validate=validate.Range(1, MAX_WINDOWS),
        metadata={"description": f"The newest this many windows (1 to {MAX_WINDOWS})."},
    )


class FeatureDrift(Schema):
    """One drift statistic of one feature in one window."""

    feature = fields.String(required=True)
    method = fields.String(required=True, metadata={"examples": ["psi", "ks", "wasserstein"]})
    statistic = fields.Float(required=True, allow_none=True)
    threshold = fields.Float(required=True, allow_none=True, metadata={"description": "Drift."})
    severity = fields.String(required=True, validate=validate.OneOf(("none", "watch", "drift")))


class WindowDrift(Schema):
    """The window against its model's reference."""

    severity = fields.String(required=True, validate=validate.OneOf(("none", "watch", "drift")))
    features = fields.List(fields.Nested(FeatureDrift), required=True)


class Window(Schema):
    """One window of one model: every figure with its 95% interval."""

    start = fields.String(required=True, metadata=DATE_TIME)
    end = fields.String(required=True, metadata=DATE_TIME)
    model = fields.String(required=True, metadata={"description": "`v<n>` or `app:<name>`."})
    model_version = fields.Integer(required=True, allow_none=True)
    volume = fields.Integer(required=True)
    predicted = fields.Dict(required=True, metadata={"description": "Count and share per label."})
    confidence = fields.Dict(required=True, metadata={"description": "Mean and histogram."})
    feedback = fields.Dict(
        required=True, metadata={"description": "Acceptance and correction rates (Wilson)."}
    )
    labeled = fields.Dict(
        required=True,
        metadata={
            "description": (
                "Realised figures from expert labels, two estimates: `audit` (the uniform "
                "random audit sample: unbiased) and `all` (every label: biased toward disputed "
                "items). Each: accuracy, macro-F1, per-class precision/recall/F1 as "
                "`{value, lo, hi, method}`, the confusion matrix and calibration (Brier, ECE, "
                "reliability bins)."
            )
        },
    )
    estimate = fields.Dict(
        required=True,
        allow_none=True,
        metadata={"description": "CBPE: accuracy and per-class figures expected without labels."},
    )
    drift = fields.Nested(WindowDrift, required=True, allow_none=True)
    computed_at = fields.String(required=True, metadata=DATE_TIME)


class MonitorOut(Schema):
    """The windows, oldest first."""

    window_seconds = fields.Integer(required=True)
    models = fields.List(fields.String(), required=True, metadata={"description": "Newest first."})
    windows = fields.List(fields.Nested(Window), required=True)


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _window(w) -> dict:
    figures = w.stats or {}
    drift = None
    if w.drift:
        drift = {
            "severity": w.drift.get("severity", "none"),
            "features": [
                {k: r.get(k) for k in ("feature", "method", "statistic", "threshold", "severity")}
                for r in w.drift.get("results", [])
            ],
        }
    estimate = None
    if w.estimate:
        estimate = {k: v for k, v in w.estimate.items() if k != "stats"}
    return {
        "start": timestamp(w.start),
        "end": timestamp(w.end),
        "model": w.model_key,
        "model_version": int(w.model_key[1:]) if w.model_key.startswith("v") else None,
        "volume": int(figures.get("volume", 0)),
        "predicted": figures.get("predicted", {}),
        "confidence": figures.get("confidence", {}),
        "feedback": figures.get("feedback", {}),
        "labeled": figures.get("labeled", {}),
        "estimate": estimate,
        "drift": drift,
        "computed_at": timestamp(w.computed_at),
    }


@blp.route("/projects/<slug>/monitor")
@scoped(
    "admin",
    "Monitoring windows, oldest first: per window and model, the prediction volume and label "
    "distribution, confidence, feedback rates, realised metrics from expert labels (audits "
    "and all labels) with 95% intervals, calibration, the CBPE estimate, and drift per "
    "feature. Stored by the monitoring job: reading scans no predictions.",
    errors=(404, 422),
)
@with_project
@blp.arguments(MonitorQuery, location="query", arg_name="query")
@blp.response(200, MonitorOut, description="The windows.")
def show_monitor(project: Project, query: dict):
    """Monitoring windows."""
    model = query["model"]
    if query["model_version"] is not None:
        if model is not None and model != f"v{query['model_version']}":
            raise ValidationError({"model_version": "contradicts `model`; give one of them"})
        model = f"v{query['model_version']}"
    rows = monitoring.read_windows(
        project, _naive(query["since"]), _naive(query["until"]), model, query["limit"]
    )
    return {
        "window_seconds": int(project.setting("monitor_window")),
        "models": monitoring.model_keys(project),
        "windows": [_window(w) for w in rows],
    }


class ReferenceRequest(Schema):
    """The predictions an app's own model is compared with (default: its first 1,000)."""

    model = fields.String(
        required=True,
        validate=validate.Length(1, 120),
        metadata={"description": "`app` or `app:<name>`: a model your app logs."},
    )
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)


class ReferenceOut(Schema):
    """The reference now in use."""

    model = fields.String(required=True)
    source = fields.String(required=True)
    predictions = fields.Integer(required=True)


@blp.route("/projects/<slug>/monitor/reference", methods=["PUT"])
@scoped(
    "admin",
    "Choose the reference window of a model your app logs: its predictions in [since, until) "
    "become what drift is measured against, and its windows are recomputed. Corrigo's own "
    "versions are compared with their training pool, summarised when they were trained.",
    errors=(404, *BODY_ERRORS),
)
@with_project
@blp.arguments(ReferenceRequest, arg_name="payload", description="The reference window.")
@blp.response(200, ReferenceOut, description="The reference.")
def set_reference(project: Project, payload: dict):
    """Choose an app model's drift reference."""
    try:
        reference = monitoring.set_app_reference(
            project, payload["model"], _naive(payload["since"]), _naive(payload["until"])
        )
    except ValueError as exc:
        field = "model" if "app" in str(exc) else "since"
        raise ValidationError({field: str(exc)}) from None
    db.session.commit()
    label_sketch = (reference.get("predictions") or {}).get("label") or {}
    return {
        "model": payload["model"],
        "source": reference["source"],
        "predictions": int(label_sketch.get("n", 0)),
    }


# --- alerts -----------------------------------------------------------------------------------


class AlertQuery(Schema):
    """Which alerts to return."""

    state = fields.String(load_default=None, validate=validate.OneOf(values(AlertState)))


class AlertOut(Schema):
    """One firing of a rule."""

    id = fields.Integer(required=True)
    rule_id = fields.Integer(required=True, allow_none=True)
    rule = fields.String(required=True, allow_none=True)
    state = fields.String(required=True, validate=validate.OneOf(values(AlertState)))
    metric = fields.String(required=True)
    message = fields.String(required=True)
    value = fields.Float(required=True, allow_none=True)
    threshold = fields.Float(required=True, allow_none=True)
    window_start = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    window_end = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    fired_at = fields.String(required=True, metadata=DATE_TIME)
    acknowledged_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    acknowledged_by = fields.String(required=True, allow_none=True)
    resolved_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)


class AlertList(Schema):
    """Alerts, newest first."""

    alerts = fields.List(fields.Nested(AlertOut), required=True)


def _alert(a: Alert, names: dict[int, str]) -> dict:
    return {
        "id": a.id,
        "rule_id": a.rule_id,
        "rule": names.get(a.rule_id),
        "state": a.state,
        "metric": a.metric,
        "message": a.message,
        "value": a.value,
        "threshold": a.threshold,
        "window_start": timestamp(a.window_start),
        "window_end": timestamp(a.window_end),
        "fired_at": timestamp(a.fired_at),
        "acknowledged_at": timestamp(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
        "resolved_at": timestamp(a.resolved_at),
    }


def _rule_names(project: Project) -> dict[int, str]:
    return dict(
        db.session.execute(
            select(AlertRule.id, AlertRule.name).where(AlertRule.project_id == project.id)
        ).all()
    )


@blp.route("/projects/<slug>/alerts")
@scoped("admin", f"The project's latest {ALERTS_SHOWN} alerts, newest first.", errors=(404, 422))
@with_project
@blp.arguments(AlertQuery, location="query", arg_name="query")
@blp.response(200, AlertList, description="The alerts.")
def list_alerts(project: Project, query: dict):
    """List alerts."""
    stmt = select(Alert).where(Alert.project_id == project.id)
    if query["state"]:
        stmt = stmt.where(Alert.state == query["state"])
    rows = db.session.scalars(stmt.order_by(Alert.id.desc()).limit(ALERTS_SHOWN))
    names = _rule_names(project)
    return {"alerts": [_alert(a, names) for a in rows]}


@blp.route("/projects/<slug>/alerts/<id32:alert_id>/acknowledge", methods=["POST"])
@scoped(
    "admin",
    "Acknowledge a firing alert: it stays open until its rule's condition clears, marked as "
    "seen. Acknowledging an alert that is not firing changes nothing.",
    errors=(404,),
)
@with_project
@blp.response(200, AlertOut, description="The alert.")
def acknowledge_alert(project: Project, alert_id: int):
    """Acknowledge an alert."""
    alert = row(Alert, alert_id, "alert")
    alerts.acknowledge(alert, g.api_key.annotator)
    db.session.commit()
    return _alert(alert, _rule_names(project))


# --- alert rules ------------------------------------------------------------------------------


class Actions(Schema):
    """What the rule does when it fires, besides the alert and its webhook event."""

    retrain = fields.Boolean(load_default=False, metadata={"description": "Queue a retrain."})
    audit_share = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 1),
        metadata={"description": "Raise the queue's audit share to at least this."},
    )
    audit_hours = fields.Float(
        load_default=24,
        validate=validate.Range(min=0.1, max=24 * 90),
        metadata={"description": "For this many hours."},
    )


_RULE_DOC = {
    "metric": (
        "`accuracy`, `macro_f1`, `precision[<label>]`, `recall[<label>]`, `f1[<label>]` "
        "(realised on the audits; prefix `all.` for every label), `cbpe.accuracy`, "
        "`cbpe.macro_f1` (estimated), `drift.severity`, `feedback.correction_rate`, "
        "`feedback.acceptance_rate`, `confidence.mean`, `calibration.ece`, `calibration.brier`, "
        "`volume`."
    ),
    "threshold": (
        "A number; for `==` on `drift.severity` one of `none`, `watch`, `drift`. Leave it out "
        "and give `tolerance` for a rule relative to the champion's held-out value."
    ),
}


class RuleIn(Schema):
    """An alert rule."""

    name = fields.String(required=True, validate=validate.Length(1, 100))
    metric = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": _RULE_DOC["metric"]},
    )
    comparison = fields.String(required=True, validate=validate.OneOf(("<", "<=", ">", ">=", "==")))
    threshold = fields.Raw(
        load_default=None,
        metadata={"description": _RULE_DOC["threshold"], "type": ["number", "string"]},
    )
    tolerance = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 1),
        metadata={"description": "Champion's held-out value minus (for `<`) this."},
    )
    bound = fields.String(
        load_default="value",
        validate=validate.OneOf(tuple(alerting.BOUNDS)),
        metadata={
            "description": (
                "Compare the point estimate (`value`) or an end of its 95% interval: `upper` "
                "for a `<` rule fires only on a significant drop."
            )
        },
    )
    window = fields.Integer(load_default=1, validate=validate.Range(1, 365))
    persistence = fields.Integer(load_default=1, validate=validate.Range(1, 100))
    cooldown_seconds = fields.Integer(load_default=3600, validate=validate.Range(0, 90 * 86400))
    hysteresis = fields.Float(load_default=0.0, validate=validate.Range(0, 1))
    min_n = fields.Integer(load_default=0, validate=validate.Range(0, 10**9))
    severity = fields.String(load_default="warning", validate=validate.OneOf(alerting.SEVERITIES))
    actions = fields.Nested(Actions, load_default=dict)
    enabled = fields.Boolean(load_default=True)


def _optional(field: fields.Field) -> fields.Field:
    """The field, neither required nor defaulted (a PATCH changes only what it names)."""
    field = copy.copy(field)
    field.required, field.load_default = False, missing
    return field


RuleChange = Schema.from_dict(
    {name: _optional(field) for name, field in RuleIn._declared_fields.items()}, name="RuleChange"
)
RuleChange.__doc__ = "The fields to change (any of them); the others keep their values."


class RuleOut(Schema):
    """An alert rule and where its evaluation stands."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    metric = fields.String(required=True)
    comparison = fields.String(required=True)
    threshold = fields.Raw(required=True, allow_none=True, metadata={"type": ["number", "string"]})
    tolerance = fields.Float(required=True, allow_none=True)
    bound = fields.String(required=True)
    window = fields.Integer(required=True)
    persistence = fields.Integer(required=True)
    cooldown_seconds = fields.Integer(required=True)
    hysteresis = fields.Float(required=True)
    min_n = fields.Integer(required=True)
    severity = fields.String(required=True)
    actions = fields.Dict(required=True)
    enabled = fields.Boolean(required=True)
    status = fields.String(
        required=True, metadata={"description": "`ok`, `firing`, `acknowledged`, `resolved`."}
    )


class RuleList(Schema):
    """The project's alert rules."""

    rules = fields.List(fields.Nested(RuleOut), required=True)


def _rule_out(rule: AlertRule) -> dict:
    canonical = alerting.validate_rule(alerts.rule_dict(rule) | {"threshold": _threshold(rule)})
    return {
        "id": rule.id,
        "name": rule.name,
        "metric": canonical["metric"],
        "comparison": rule.comparison,
        "threshold": _threshold(rule),
        "tolerance": canonical["tolerance"],
        "bound": canonical["bound"],
        "window": rule.window,
        "persistence": rule.persistence,
        "cooldown_seconds": rule.cooldown_seconds,
        "hysteresis": rule.hysteresis,
        "min_n": canonical["min_n"],
        "severity": canonical["severity"],
        "actions": rule.actions or {},
        "enabled": rule.enabled,
        "status": (rule.state or {}).get("status", "ok"),
    }


def _threshold(rule: AlertRule):
    return rule.threshold if rule.comparison != "==" else (rule.params or {}).get("value")


def _apply(rule: AlertRule, fields_: dict) -> None:
    """Set a rule's fields from the API's, then check the whole rule as the evaluator will."""
    params = dict(rule.params or {})
    for key in ("name", "comparison", "window", "persistence", "cooldown_seconds", "hysteresis"):
        if key in fields_:
            setattr(rule, key, fields_[key])
    if "metric" in fields_:
        rule.metric = fields_["metric"]
        params.pop("class", None)
    if "enabled" in fields_:
        rule.enabled = fields_["enabled"]
    if "actions" in fields_:
        rule.actions = {k: v for k, v in fields_["actions"].items() if v is not None}
    for key in ("tolerance", "bound", "min_n", "severity"):
        if key in fields_:
            params[key] = fields_[key]
    if "threshold" in fields_:
        value = fields_["threshold"]
        if rule.comparison == "==":
            params["value"], rule.threshold = value, None
        elif value is None or isinstance(value, int | float) and not isinstance(value, bool):
            rule.threshold = None if value is None else float(value)
        else:
            raise ValidationError({"threshold": "must be a number for this comparison"})
    rule.params = {k: v for k, v in params.items() if v is not None}
    try:
        canonical = alerting.validate_rule(alerts.rule_dict(rule) | {"threshold": _threshold(rule)})
        alerting.metric_value({}, canonical["metric"])
    except ValueError as exc:
        message = str(exc)
        field = message.split(" ", 1)[0]
        known = {"op": "comparison", "cooldown": "cooldown_seconds", "unknown": "metric"}
        field = known.get(field, field if field in RuleIn._declared_fields else "metric")
        raise ValidationError({field: message}) from None
    if canonical["tolerance"] is None and canonical["threshold"] is None:
        raise ValidationError({"threshold": "give a threshold, or a tolerance"})


@blp.route("/projects/<slug>/alert-rules")
@scoped("admin", "The project's alert rules (every project starts with defaults).", errors=(404,))
@with_project
@blp.response(200, RuleList, description="The rules.")
def list_alert_rules(project: Project):
    """List alert rules."""
    rows = db.session.scalars(
        select(AlertRule).where(AlertRule.project_id == project.id).order_by(AlertRule.id)
    )
    return {"rules": [_rule_out(r) for r in rows]}


@blp.route("/projects/<slug>/alert-rules", methods=["POST"])
@scoped(
    "admin",
    "Add an alert rule. It is evaluated on every closed monitoring window of the monitored "
    "model, over its last `window` windows; it fires after `persistence` breaching windows, "
    "not again within `cooldown_seconds`, and resolves once the value is `hysteresis` past "
    "its threshold.",
    errors=(404, *BODY_ERRORS),
)
@with_project
@blp.arguments(RuleIn, arg_name="payload", description="The rule.")
@blp.response(201, RuleOut, description="The rule.")
def create_alert_rule(project: Project, payload: dict):
    """Add an alert rule."""
    rule = AlertRule(project_id=project.id, params={}, actions={}, state={})
    _apply(rule, payload)
    db.session.add(rule)
    db.session.commit()
    return created(_rule_out(rule))


@blp.route("/projects/<slug>/alert-rules/<id32:rule_id>", methods=["PATCH"])
@scoped(
    "admin", "Change an alert rule; invalid changes change nothing.", errors=(404, *BODY_ERRORS)
)
@with_project
@blp.arguments(RuleChange, arg_name="payload", description="The fields to change.")
@blp.response(200, RuleOut, description="The rule.")
def change_alert_rule(project: Project, payload: dict, rule_id: int):
    """Change an alert rule."""
    rule = row(AlertRule, rule_id, "alert rule")
    _apply(rule, payload)
    db.session.commit()
    return _rule_out(rule)


@blp.route("/projects/<slug>/alert-rules/<id32:rule_id>", methods=["DELETE"])
@scoped("admin", "Delete an alert rule; its alerts stay, without their rule.", errors=(404,))
@with_project
@blp.response(204, description="Deleted.")
def delete_alert_rule(project: Project, rule_id: int):
    """Delete an alert rule."""
    db.session.delete(row(AlertRule, rule_id, "alert rule"))
    db.session.commit()
    return "", 204
