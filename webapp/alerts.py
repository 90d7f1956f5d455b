"""Alert rules on the stored monitoring windows: evaluation, alerts, and their actions.

Rules are rows (`AlertRule`); the arithmetic is `labeling.alerting`'s (persistence, cooldown,
hysteresis, champion-relative thresholds). Each rule is stepped once per closed window of
the project's monitored model, on the merge of its last `window` windows, so persistence
counts windows, not clock ticks; a window without predictions counts as volume 0. A rule
never stepped starts `persistence` windows before the newest closed one.

When a rule fires, an `Alert` row is written, `alert.firing` goes to the webhooks, and the
rule's actions run in the same transaction: a retrain whose run names the alert (trigger
`alert`), and a raised audit share for some hours (`Project.audit_boost_*`), so fresh
unbiased labels arrive where the model fails. When it resolves, the alert is closed and
`alert.resolved` sent. Acknowledging keeps an alert open but marks that a person has it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from labeling import alerting
from labeling import monitoring as stats

from . import monitoring, webhooks
from .enums import AlertState, Trigger
from .extensions import db
from .models import Alert, AlertRule, MonitorWindow, Project, utcnow
from .training import champion_version, trigger_retrain
from .transaction import unit_of_work

log = logging.getLogger(__name__)

# Closed windows stepped per rule and pass at most (a long outage catches up over passes).
MAX_STEPS = 200
# Stored fields of a rule beyond its columns, kept in `params`.
EXTRA = ("tolerance", "min_n", "severity", "description", "bound")


def rule_dict(rule: AlertRule) -> dict:
    """The rule in `labeling.alerting`'s terms (its columns, plus the extras in params)."""
    params = dict(rule.params or {})
    out = {
        "id": str(rule.id),
        "metric": rule.metric,
        "op": rule.comparison,
        "threshold": rule.threshold,
        "window": rule.window,
        "persistence": rule.persistence,
        "cooldown": rule.cooldown_seconds,
        "hysteresis": rule.hysteresis,
        "params": params,
    }
    for key in EXTRA:
        if key in params:
            out[key] = params[key]
    return out


def add_default_rules(project: Project) -> list[AlertRule]:
    """Give a new project the default rules (flushed; the caller commits).

    Champion-relative thresholds follow whichever version is champion when they are evaluated.
    """
    rows = []
    for rule in alerting.default_rules(None, labels=list(project.labels)):
        params = {key: rule[key] for key in EXTRA if rule.get(key) not in (None, "")}
        label = rule["metric"].partition("[")[2].rstrip("]")
        if label:
            params["class"] = label
        metric = rule["metric"].partition("[")[0]
        actions = {"retrain": True} if rule["id"] == "accuracy_below_champion" else {}
        if rule["id"] in ("accuracy_below_champion", "cbpe_accuracy_below_champion", "drift"):
            actions["audit_share"], actions["audit_hours"] = 0.3, 24
        rows.append(
            AlertRule(
                project_id=project.id,
                name=rule["id"],
                metric=metric,
                params=params,
                comparison=rule["op"],
                threshold=rule["threshold"] if rule["op"] in alerting.ORDERED_OPS else None,
                window=rule["window"],
                persistence=rule["persistence"],
                cooldown_seconds=int(rule["cooldown"]),
                hysteresis=rule["hysteresis"],
                actions=actions,
                enabled=True,
                state={},
            )
        )
        if rule["op"] not in alerting.ORDERED_OPS:
            rows[-1].params = {**params, "value": rule["threshold"]}
    db.session.add_all(rows)
    db.session.flush()
    return rows


def _threshold_of(rule: AlertRule):
    """A categorical rule keeps its value (e.g. the severity `drift`) in params."""
    if rule.comparison in alerting.ORDERED_OPS:
        return rule.threshold
    return (rule.params or {}).get("value")


def monitored_key(project: Project) -> str | None:
    """The model whose windows the rules watch: the champion's when it served traffic,
    otherwise the model with the newest window (an app's own model)."""
    champion = champion_version(project.id)
    if champion is not None:
        key = f"v{champion.version}"
        if db.session.scalar(
            select(MonitorWindow.id)
            .where(MonitorWindow.project_id == project.id, MonitorWindow.model_key == key)
            .limit(1)
        ):
            return key
    return db.session.scalar(
        select(MonitorWindow.model_key)
        .where(MonitorWindow.project_id == project.id)
        .order_by(MonitorWindow.start.desc())
        .limit(1)
    )


def _record(window: MonitorWindow | None, labels: list[str]) -> dict:
    """A window's record for `labeling.alerting` (an empty window: volume 0, nothing else)."""
    if window is None:
        return stats.window_metrics(labels, [], [])
    record = dict(window.stats)
    if window.estimate:
        record["cbpe"] = window.estimate
    if window.drift:
        record["drift"] = window.drift
    return record


def evaluate_project(project: Project, now: datetime) -> int:
    """Step every enabled rule over the windows closed since its last step; return how many
    alerts fired or resolved. Flushed, not committed: `run_monitoring` commits."""
    key = monitored_key(project)
    rules = db.session.scalars(
        select(AlertRule).where(AlertRule.project_id == project.id, AlertRule.enabled)
    ).all()
    if key is None or not rules:
        return 0
    length = int(project.setting("monitor_window"))
    newest = monitoring.window_start(now, length) - timedelta(
        seconds=length
    )  # the newest closed window
    span = max(rule.window for rule in rules)
    windows = {
        w.start: w
        for w in db.session.scalars(
            select(MonitorWindow).where(
                MonitorWindow.project_id == project.id,
                MonitorWindow.model_key == key,
                MonitorWindow.start > newest - timedelta(seconds=length * (span + MAX_STEPS)),
                MonitorWindow.start <= newest,
            )
        )
    }
    if not windows:
        return 0
    first_seen = min(windows)
    labels = list(project.labels)
    champion = champion_version(project.id)
    champion_metrics = champion.metrics if champion is not None else None
    changed = 0
    for rule in rules:
        state = dict(rule.state or {})
        done = state.get("window_start")
        # A rule never stepped looks back over its persistence, so a condition that already
        # lasts is seen at once.
        start = (
            datetime.fromisoformat(done) + timedelta(seconds=length)
            if done
            else max(newest - timedelta(seconds=length * (rule.persistence - 1)), first_seen)
        )
        start = max(start, newest - timedelta(seconds=length * (MAX_STEPS - 1)))
        as_dict = rule_dict(rule) | {"threshold": _threshold_of(rule)}
        while start <= newest:
            records = [
                _record(windows.get(start - timedelta(seconds=length * back)), labels)
                for back in range(rule.window - 1, -1, -1)
            ]
            end = start + timedelta(seconds=length)
            states, events = alerting.evaluate(
                [as_dict], {as_dict["id"]: state}, records, end, champion_metrics
            )
            state = states[as_dict["id"]] | {"window_start": start.isoformat()}
            for event in events:
                changed += 1
                _on_event(project, rule, event, start, end, now)
            start = end
        rule.state = state
    db.session.flush()
    return changed


@unit_of_work
def run_monitoring(project_id: int, now: datetime | None = None) -> dict:
    """One monitoring pass of a project (the monitoring job): bring its windows up to date
    (`webapp.monitoring`), then step its rules on them. Returns the counts of windows written
    and alerts that fired or resolved."""
    written = monitoring.update_windows(project_id)
    project = db.session.get(Project, project_id)
    if project is None:
        return {"windows": written, "alerts": 0}
    changed = evaluate_project(project, now or utcnow())
    db.session.commit()
    return {"windows": written, "alerts": changed}


def _open_alert(rule: AlertRule) -> Alert | None:
    return db.session.scalar(
        select(Alert)
        .where(
            Alert.rule_id == rule.id,
            Alert.state.in_((AlertState.FIRING, AlertState.ACKNOWLEDGED)),
        )
        .order_by(Alert.id.desc())
        .limit(1)
    )


def _shown(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else repr(value)


def _message(rule: AlertRule, event: dict) -> str:
    """`accuracy_below_champion: accuracy is 0.750 (95% interval up to 0.805, < 0.850).`"""
    value, threshold, bound = event["value"], event["threshold"], event.get("bound", "value")
    if event["event"] != alerting.FIRING:
        return f"{rule.name}: {event['metric']} is back at {_shown(value)}."
    test = f"{event['op']} {_shown(threshold)}"
    if bound != "value":
        side = "up to" if bound == "upper" else "down to"
        test = f"95% interval {side} {_shown(event.get('compared'))}, {test}"
    return f"{rule.name}: {event['metric']} is {_shown(value)} ({test})."


def _on_event(project, rule, event, start, end, now) -> None:
    """Write the alert change, send the webhook event and run the rule's actions."""
    if event["event"] == alerting.FIRING:
        alert = Alert(
            project_id=project.id,
            rule_id=rule.id,
            state=AlertState.FIRING,
            metric=event["metric"],
            message=_message(rule, event),
            value=event["value"] if isinstance(event["value"], int | float) else None,
            threshold=event["threshold"] if isinstance(event["threshold"], int | float) else None,
            window_start=start,
            window_end=end,
            fired_at=now,
        )
        db.session.add(alert)
        db.session.flush()
        run_id = _act(project, rule, alert, now)
        name = "alert.firing"
    else:
        alert = _open_alert(rule)
        if alert is None:
            return
        alert.state, alert.resolved_at = AlertState.RESOLVED, now
        run_id = None
        name = "alert.resolved"
    webhooks.emit(
        project.id,
        name,
        {
            "alert_id": alert.id,
            "rule": rule.name,
            "metric": event["metric"],
            "comparison": event["op"],
            "threshold": event["threshold"],
            "value": event["value"],
            "window_start": start.isoformat() + "Z",
            "window_end": end.isoformat() + "Z",
            "message": alert.message,
            "retrain_run_id": run_id,
        },
    )


def _act(project: Project, rule: AlertRule, alert: Alert, now: datetime) -> int | None:
    """The rule's actions: raise the audit share for a while; queue a retrain naming the
    alert (a retrain already queued takes the alert's name if it has none)."""
    actions = rule.actions or {}
    share = actions.get("audit_share")
    if share:
        until = now + timedelta(hours=float(actions.get("audit_hours", 24)))
        project.audit_boost_share = max(float(share), project.audit_boost_share or 0.0)
        project.audit_boost_until = max(until, project.audit_boost_until or until)
    if not actions.get("retrain"):
        return None
    run = trigger_retrain(project, Trigger.ALERT)
    if run.alert_id is None:
        run.alert_id = alert.id
    return run.id


def acknowledge(alert: Alert, who: str) -> Alert:
    """Mark a firing alert as acknowledged by `who` (flushed; the caller commits)."""
    if alert.state == AlertState.FIRING:
        alert.state, alert.acknowledged_at, alert.acknowledged_by = (
            AlertState.ACKNOWLEDGED,
            utcnow(),
            who[:64],
        )
        rule = db.session.get(AlertRule, alert.rule_id) if alert.rule_id else None
        if rule is not None:
            rule.state = alerting.acknowledge(rule.state or {}, utcnow())
    db.session.flush()
    return alert
