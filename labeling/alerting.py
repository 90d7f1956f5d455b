"""Alert rules on monitoring figures: a pure evaluator with persistence, cooldown and hysteresis.

A *rule* is a JSON dict (see :func:`validate_rule`): a metric name, a comparison, a threshold
and how strictly to act on it. Its *state* is a small JSON dict (see :func:`initial_state`)
that the caller stores between evaluations. :func:`step` moves a state on by one evaluation
and says whether an alert fired or resolved; it reads no clock and no database, so the same
inputs always give the same answer.

Statuses: ``ok`` (never fired, or nothing to report), ``firing``, ``acknowledged`` (a person
has seen the firing alert; it stays acknowledged while the condition lasts) and ``resolved``
(the condition cleared after firing; it behaves as ``ok`` until it fires again).

How a rule acts:

- ``persistence`` P: the condition must hold on P consecutive evaluations before it fires.
- ``cooldown`` (seconds): a rule does not fire again sooner than this after it last fired;
  while cooling down, a lasting breach keeps counting and fires once the cooldown is over.
- ``hysteresis`` h: a firing ``<`` / ``<=`` rule resolves only once the value is no longer
  below ``threshold + h`` (``>`` / ``>=`` rules: ``threshold - h``), so a metric hovering at
  its threshold fires once instead of flapping. Resolving needs no persistence.
- A missing value (None or NaN: no rows in the window, fewer than ``min_n``, a metric that is
  undefined) changes nothing: it neither fires nor resolves, and it neither counts towards
  nor breaks a run of breaches. So does a champion-relative rule (``tolerance`` set) while
  there is no champion to take its threshold from (:func:`resolve_threshold`).

Metric names, read from a window *record* (a :func:`labeling.monitoring.summarize` dict,
optionally with ``"cbpe"``, a :func:`labeling.monitoring.summarize_estimate` dict, and
``"drift"``, a dict with at least ``"severity"``), see :func:`metric_value`:
``volume``, ``confidence.mean``, ``feedback.correction_rate``, ``feedback.acceptance_rate``,
``accuracy``, ``macro_f1``, ``calibration.ece``, ``calibration.brier``,
``precision[<label>]``, ``recall[<label>]``, ``f1[<label>]`` (realised, on the audits; prefix
``all.`` for every expert label), ``cbpe.accuracy``, ``cbpe.macro_f1``,
``cbpe.precision[<label>]``, ``cbpe.recall[<label>]``, ``cbpe.f1[<label>]`` (estimated) and
``drift.<key>`` (e.g. ``drift.severity``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from . import monitoring

OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
ORDERED_OPS = ("<", "<=", ">", ">=")
STATUSES = ("ok", "firing", "acknowledged", "resolved")
ACTIVE = ("firing", "acknowledged")
FIRING = "alert.firing"
RESOLVED = "alert.resolved"

#: Defaults of the optional rule fields.
RULE_DEFAULTS: dict[str, Any] = {
    "window": 1,
    "persistence": 1,
    "cooldown": 0.0,
    "hysteresis": 0.0,
    "min_n": 0,
    "tolerance": None,
    "severity": "warning",
    "description": "",
    "bound": "value",
}
#: Which part of a figure with an interval a rule reads: the point estimate, or the upper or
#: lower end of its 95% interval. A `<` rule on `upper` fires only when even the interval's
#: top is below the threshold (the drop is significant), so small samples do not cry wolf.
BOUNDS = {"value": "value", "upper": "hi", "lower": "lo"}
#: Other spellings of rule fields (the web app's column names) and what they mean here.
ALIASES = {"comparison": "op", "cooldown_seconds": "cooldown", "name": "id"}
#: Short metric names, with the class in ``params`` (``{"class": label}``) where one is needed.
SHORT_METRICS = {
    "cbpe_accuracy": "cbpe.accuracy",
    "cbpe_macro_f1": "cbpe.macro_f1",
    "correction_rate": "feedback.correction_rate",
    "acceptance_rate": "feedback.acceptance_rate",
    "drift": "drift.severity",
    "mean_confidence": "confidence.mean",
    "ece": "calibration.ece",
    "brier": "calibration.brier",
}
SEVERITIES = ("info", "warning", "critical")

#: Default tolerance of the champion-relative rules (metric units: 0.05 = five points).
TOLERANCE = 0.05
#: Default threshold of the feedback correction-rate rule.
CORRECTION_RATE = 0.3
#: Default cooldown of the default rules: one day.
COOLDOWN = 24 * 3600.0


# --- rules -------------------------------------------------------------------------------------


def validate_rule(rule: Mapping[str, Any]) -> dict:
    """A rule with its defaults filled in, or ValueError naming the bad field.

    Fields: ``id`` (str, unique within a project), ``metric`` (see the module docstring),
    ``op`` (``<``, ``<=``, ``>``, ``>=``, or ``==`` / ``!=`` for a categorical value such as a
    drift severity), ``threshold`` (a number; any JSON scalar for ``==`` / ``!=``),
    ``tolerance`` (None, or ≥ 0 for a rule relative to the champion: its threshold is the
    champion's held-out value of the metric minus the tolerance for ``<`` / ``<=``, plus it
    for ``>`` / ``>=``, see :func:`resolve_threshold`; such a rule's ``threshold`` may be None
    until there is a champion, and it never fires meanwhile), ``window`` (how many of the most
    recent windows are merged into the value; 1 evaluates each window alone), ``persistence``
    (consecutive breaching evaluations before firing, ≥ 1), ``cooldown`` (seconds between two
    firings, ≥ 0), ``hysteresis`` (≥ 0; 0 for ``==`` / ``!=``), ``min_n`` (the value is
    treated as missing when it rests on fewer rows), ``severity`` (``info``, ``warning`` or
    ``critical``) and ``description``.

    The web app's spellings are accepted too: ``comparison``, ``cooldown_seconds`` and
    ``name`` for ``op``, ``cooldown`` and ``id``, a short metric name (:data:`SHORT_METRICS`,
    or ``recall`` / ``precision`` / ``f1`` with ``params`` holding ``{"class": label}``) for
    the full one, and a ``tolerance`` in ``params`` when ``threshold`` is None. Other fields
    (``params``, ``actions``, ...) are kept as they are.

    Returns:
        A new dict in the canonical spelling (the input is not changed).
    """
    given = dict(rule)
    for alias, key in ALIASES.items():
        if alias in given and key not in given:
            given[key] = given.pop(alias)
    out = dict(RULE_DEFAULTS) | given
    if isinstance(out.get("id"), int) and not isinstance(out["id"], bool):
        out["id"] = str(out["id"])
    for key in ("id", "metric"):
        if not isinstance(out.get(key), str) or not out[key]:
            raise ValueError(f"{key} must be a non-empty string, got {out.get(key)!r}")
    params = out.get("params")
    out["metric"] = _canonical_metric(out["metric"], params)
    if out["tolerance"] is None and out.get("threshold") is None and isinstance(params, Mapping):
        out["tolerance"] = params.get("tolerance")  # the web app keeps it in params
    if out.get("op") not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {out.get('op')!r}")
    tolerance = out["tolerance"]
    if tolerance is not None:
        if out["op"] not in ORDERED_OPS:
            raise ValueError(f"tolerance needs an ordered comparison, not {out['op']!r}")
        if not _is_number(tolerance) or not math.isfinite(float(tolerance)) or tolerance < 0:
            raise ValueError(f"tolerance must be a number ≥ 0, got {tolerance!r}")
        out["tolerance"] = float(tolerance)
    threshold = out.get("threshold")
    if out["op"] in ORDERED_OPS:
        if threshold is None and tolerance is not None:
            out["threshold"] = None  # relative to a champion not known yet
        elif not _is_number(threshold) or not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        else:
            out["threshold"] = float(threshold)
    elif threshold is not None and not isinstance(threshold, str | int | float | bool):
        raise ValueError(f"threshold must be a JSON scalar, got {threshold!r}")
    for key, low in (("window", 1), ("persistence", 1), ("min_n", 0)):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ValueError(f"{key} must be a whole number, got {value!r}")
        if value < low:
            raise ValueError(f"{key} must be at least {low}, got {value!r}")
        out[key] = int(value)
    for key in ("cooldown", "hysteresis"):
        value = out[key]
        if not _is_number(value) or not math.isfinite(float(value)) or float(value) < 0:
            raise ValueError(f"{key} must be a number ≥ 0, got {value!r}")
        out[key] = float(value)
    if out["op"] not in ORDERED_OPS and out["hysteresis"] != 0:
        raise ValueError(f"hysteresis needs an ordered comparison, not {out['op']!r}")
    if out["bound"] not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}, got {out['bound']!r}")
    if out["severity"] not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    return out


def _canonical_metric(metric: str, params: Any) -> str:
    """The full metric name of a short one (``recall`` + ``{"class": x}`` is ``recall[x]``)."""
    if metric in SHORT_METRICS:
        return SHORT_METRICS[metric]
    label = params.get("class", params.get("label")) if isinstance(params, Mapping) else None
    base = metric.removeprefix("cbpe.").removeprefix("cbpe_").removeprefix("all.")
    if label is not None and base in _CLASS_METRICS and "[" not in metric:
        prefix = metric[: len(metric) - len(base)].replace("cbpe_", "cbpe.")
        return f"{prefix}{base}[{label}]"
    return metric


def resolve_threshold(rule: Mapping[str, Any], champion_metrics: Mapping[str, Any] | None) -> dict:
    """A champion-relative rule with its threshold computed from the current champion.

    Args:
        rule: A rule; one without ``tolerance`` is returned as it is (validated).
        champion_metrics: The champion's held-out :func:`labeling.evaluation.evaluate` dict,
            or None without a champion.

    Returns:
        The rule with ``threshold`` = the champion's held-out value of the rule's metric
        (``accuracy``, ``macro_f1``, ``balanced_accuracy`` or a class's ``precision``,
        ``recall`` or ``f1``, ``calibration.ece`` or ``calibration.brier``; a CBPE or
        ``all.`` metric is compared with the same held-out value) minus ``tolerance`` (plus
        it for ``>`` / ``>=``), and ``baseline`` = that
        held-out value; ``threshold`` None when the champion or its value is missing.

        Where the champion's metrics carry a 95% interval for the value (accuracy, macro-F1,
        balanced accuracy, a class's recall), the threshold starts from the end of that
        interval on the rule's side (its lower end for ``<``) instead: a champion judged on
        200 audits has a held-out value a few points off its true one, and production
        measured against that lucky value would alert on nothing (``interval_baseline``).
    """
    rule = validate_rule(rule)
    if rule["tolerance"] is None:
        return rule
    metric = rule["metric"].removeprefix("all.")
    match = _NAME.match(metric)
    held = None
    if metric in ("calibration.ece", "calibration.brier"):
        held = _champion(champion_metrics, *metric.split("."))
    elif match and champion_metrics:
        if match["label"] is None:
            held = _champion(champion_metrics, match["metric"])
        else:
            held = _champion(champion_metrics, "per_class", match["label"], match["metric"])
    sign = -1.0 if rule["op"] in ("<", "<=") else 1.0
    start = held
    if held is not None and match and metric not in ("calibration.ece", "calibration.brier"):
        intervals = (champion_metrics or {}).get("intervals") or {}
        name, label = match["metric"], match["label"]
        bounds = intervals.get(name) if label is None else (intervals.get(name) or {}).get(label)
        end = (bounds or {}).get("lo" if sign < 0 else "hi")
        if _is_number(end) and math.isfinite(float(end)):
            start = float(end)
    threshold = None if start is None else start + sign * rule["tolerance"]
    return rule | {"threshold": threshold, "baseline": held, "interval_baseline": start}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def breached(rule: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` meets the rule's condition (False for a missing value)."""
    value = _clean(value)
    if value is None:
        return False
    return _compare(rule["op"], value, rule["threshold"])


def cleared(rule: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` resolves a firing rule: off the threshold by the hysteresis."""
    value = _clean(value)
    if value is None:
        return False
    op = rule["op"]
    h = float(rule.get("hysteresis", 0.0))
    if op in ("<", "<="):
        return not _compare(op, value, rule["threshold"] + h)
    if op in (">", ">="):
        return not _compare(op, value, rule["threshold"] - h)
    return not _compare(op, value, rule["threshold"])


def _compare(op: str, value: Any, threshold: Any) -> bool:
    if op in ORDERED_OPS and not _is_number(value):
        raise ValueError(f"a {op!r} rule needs a number, got {value!r}")
    return bool(OPS[op](value, threshold))


def _clean(value: Any) -> Any:
    """None for a missing value (None, NaN, infinity)."""
    if value is None:
        return None
    if _is_number(value) and not math.isfinite(float(value)):
        return None
    return value


# --- state -------------------------------------------------------------------------------------


def initial_state() -> dict:
    """The state of a rule never evaluated.

    Returns:
        ``{"status": "ok", "breaches": 0, "last_fired": None, "changed_at": None,
        "evaluated_at": None, "value": None}``: ``breaches`` counts consecutive breaching
        evaluations; times are seconds since the epoch (UTC); ``value`` is the last value
        that was not missing.
    """
    return {
        "status": "ok",
        "breaches": 0,
        "last_fired": None,
        "changed_at": None,
        "evaluated_at": None,
        "value": None,
    }


def _seconds(now: datetime | float | int) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC (as the app stores times)."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()
    if not _is_number(now) or not math.isfinite(float(now)):
        raise ValueError(f"now must be a datetime or seconds since the epoch, got {now!r}")
    return float(now)


def step(
    rule: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    value: Any,
    now: datetime | float,
) -> tuple[dict, str | None]:
    """Evaluate a rule once.

    Args:
        rule: The rule (:func:`validate_rule` is applied).
        state: Its stored state, or None for a new rule.
        value: The metric's current value (see :func:`rule_value`); None when missing.
        now: Time of the evaluation: a datetime (naive is UTC) or seconds since the epoch.

    Returns:
        ``(new_state, event)``: ``event`` is ``"alert.firing"`` when the rule starts firing,
        ``"alert.resolved"`` when a firing or acknowledged alert resolves, otherwise None.
        The input state is not changed.
    """
    rule = validate_rule(rule)
    t = _seconds(now)
    new = initial_state() | dict(state or {})
    if new["status"] not in STATUSES:
        raise ValueError(f"unknown status {new['status']!r}")
    new["evaluated_at"] = t
    value = _clean(value)
    if value is None or (rule["threshold"] is None and rule["op"] in ORDERED_OPS):
        # Missing data, or a champion-relative rule without a champion yet: no firing, no
        # resolving, and the run of breaches is kept.
        return new, None
    new["value"] = value
    hit = breached(rule, value)
    new["breaches"] = int(new["breaches"]) + 1 if hit else 0
    if new["status"] in ACTIVE:
        if cleared(rule, value):
            new |= {"status": "resolved", "changed_at": t}
            return new, RESOLVED
        return new, None
    last = new["last_fired"]
    cooled = last is None or t - float(last) >= rule["cooldown"]
    if hit and new["breaches"] >= rule["persistence"] and cooled:
        new |= {"status": "firing", "last_fired": t, "changed_at": t}
        return new, FIRING
    return new, None


def acknowledge(state: Mapping[str, Any], now: datetime | float) -> dict:
    """Mark a firing alert as seen: it stays ``acknowledged`` until it resolves.

    Returns:
        The new state; an alert that is not firing is returned unchanged (a copy).
    """
    new = initial_state() | dict(state)
    if new["status"] == "firing":
        new |= {"status": "acknowledged", "changed_at": _seconds(now)}
    return new


# --- reading values ----------------------------------------------------------------------------

_NAME = re.compile(r"^(?:(?P<source>all|cbpe)\.)?(?P<metric>[a-z_]+)(?:\[(?P<label>.*)\])?$")
_CLASS_METRICS = ("precision", "recall", "f1")


def metric_value(
    record: Mapping[str, Any], metric: str, min_n: int = 0, bound: str = "value"
) -> Any:
    """The value of a named metric in one window record, None when missing.

    Args:
        record: A :func:`labeling.monitoring.summarize` dict, optionally with ``"cbpe"`` (a
            :func:`labeling.monitoring.summarize_estimate` dict) and ``"drift"`` (a dict).
        metric: A metric name (module docstring).
        min_n: The value counts as missing when it rests on fewer rows than this: labelled
            rows for ``accuracy`` and ``macro_f1``, the class's true rows for ``recall`` and
            ``f1``, its predicted rows for ``precision``, decided feedback for the feedback
            rates, rows with a confidence for ``confidence.mean``, estimated rows for CBPE.
        bound: For a figure with an interval, ``value`` (the point estimate), ``upper`` or
            ``lower`` (the ends of its interval; see :data:`BOUNDS`).

    Returns:
        A number, or for ``drift.<key>`` whatever the drift dict holds; None when missing.

    Raises:
        ValueError: The name is not a known metric.
    """
    key = BOUNDS[bound]
    if metric.startswith("drift."):
        return _clean((record.get("drift") or {}).get(metric[len("drift.") :]))
    if metric == "volume":
        return _clean(record.get("volume"))
    if metric == "confidence.mean":
        block = record.get("confidence") or {}
        return _enough(block.get("mean"), block.get("n"), min_n)
    if metric in ("feedback.correction_rate", "feedback.acceptance_rate"):
        block = record.get("feedback") or {}
        rate = block.get(metric[len("feedback.") :]) or {}
        return _enough(rate.get(key), block.get("n"), min_n)
    if metric in (
        "calibration.ece",
        "calibration.brier",
        "all.calibration.ece",
        "all.calibration.brier",
    ):
        source = "all" if metric.startswith("all.") else "audit"
        block = ((record.get("labeled") or {}).get(source) or {}).get("calibration") or {}
        return _enough(block.get(metric.rsplit(".", 1)[1]), block.get("n"), min_n)
    match = _NAME.match(metric)
    if not match:
        raise ValueError(f"unknown metric {metric!r}")
    source, name, label = match["source"], match["metric"], match["label"]
    if name not in ("accuracy", "macro_f1", *_CLASS_METRICS):
        raise ValueError(f"unknown metric {metric!r}")
    if (label is None) != (name in ("accuracy", "macro_f1")):
        raise ValueError(f"{name} {'needs' if label is None else 'takes no'} a [label]")
    if source == "cbpe":
        block = record.get("cbpe")
        if not block:
            return None
        if label is None:
            return _enough(block[name].get(key), block.get("n"), min_n)
        per = (block.get("per_class") or {}).get(label)
        if not per:
            return None
        n = per.get("predicted") if name == "precision" else per.get("expected_support")
        return _enough(per[name].get(key), n, min_n)
    block = (record.get("labeled") or {}).get(source or "audit")
    if not block:
        return None
    if label is None:
        return _enough((block.get(name) or {}).get(key), block.get("n"), min_n)
    per = (block.get("per_class") or {}).get(label)
    if not per:
        return None
    n = per.get("predicted") if name == "precision" else per.get("support")
    return _enough((per.get(name) or {}).get(key), n, min_n)


def _enough(value: Any, n: Any, min_n: int) -> Any:
    value = _clean(value)
    if value is None or (min_n > 0 and (n is None or float(n) < min_n)):
        return None
    return value


def merge_records(records: Sequence[Mapping[str, Any]]) -> dict:
    """One record for several windows: figures and CBPE estimates merged from their counts.

    Drift is not additive: the merged record carries the newest window's ``drift``.

    Args:
        records: Window records, oldest first.

    Returns:
        A record (:func:`labeling.monitoring.merge_windows`, plus ``cbpe`` merged by
        :func:`labeling.monitoring.merge_estimates` when every window has one).
    """
    if not records:
        return {}
    merged = monitoring.merge_windows(records)
    estimates = [r.get("cbpe") for r in records]
    if all(estimates):
        merged["cbpe"] = monitoring.merge_estimates(estimates)
    if records[-1].get("drift") is not None:
        merged["drift"] = records[-1]["drift"]
    return merged


def rule_value(rule: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Any:
    """The value a rule is evaluated on: its metric over the last ``window`` records.

    Args:
        rule: The rule.
        records: Window records, oldest first (fewer than ``window`` merges what there is).

    Returns:
        The metric's value (None when missing, or with no records).
    """
    rule = validate_rule(rule)
    record = _recent(records, rule["window"])
    return (
        None
        if record is None
        else metric_value(record, rule["metric"], rule["min_n"], rule["bound"])
    )


def _recent(records: Sequence[Mapping[str, Any]], window: int) -> Mapping[str, Any] | None:
    """The newest record, or the merge of the last ``window`` ones; None without any."""
    recent = list(records)[-window:]
    if not recent:
        return None
    return recent[0] if len(recent) == 1 else merge_records(recent)


def evaluate(
    rules: Sequence[Mapping[str, Any]],
    states: Mapping[str, Mapping[str, Any]] | None,
    records: Sequence[Mapping[str, Any]],
    now: datetime | float,
    champion_metrics: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict], list[dict]]:
    """Step every rule on the newest windows.

    Args:
        rules: The project's rules.
        states: Stored state per rule id (a missing id starts from :func:`initial_state`).
        records: Window records, oldest first.
        now: Time of the evaluation.
        champion_metrics: The current champion's held-out metrics: the thresholds of
            champion-relative rules are recomputed from them (:func:`resolve_threshold`).
            None keeps every rule's stored threshold.

    Returns:
        ``(states, events)``: the new state per rule id, and one ``{"event", "rule",
        "metric", "op", "threshold", "value", "severity", "at"}`` per firing or resolution.
    """
    states = dict(states or {})
    new_states, events = {}, []
    merged: dict[int, Mapping[str, Any] | None] = {}  # one merge per window length
    for raw in rules:
        rule = validate_rule(raw)
        if champion_metrics is not None:
            rule = resolve_threshold(rule, champion_metrics)
        if rule["window"] not in merged:
            merged[rule["window"]] = _recent(records, rule["window"])
        record = merged[rule["window"]]
        value = (
            None
            if record is None
            else metric_value(record, rule["metric"], rule["min_n"], rule["bound"])
        )
        state, event = step(rule, states.get(rule["id"]), value, now)
        new_states[rule["id"]] = state
        if event:
            events.append(
                {
                    "event": event,
                    "rule": rule["id"],
                    "metric": rule["metric"],
                    "op": rule["op"],
                    "threshold": rule["threshold"],
                    # The point estimate; `compared` is what the rule tested (the end of the
                    # interval for a rule on a bound).
                    "value": _point(record, rule),
                    "compared": state["value"],
                    "bound": rule["bound"],
                    "severity": rule["severity"],
                    "at": state["evaluated_at"],
                }
            )
    return new_states, events


# --- defaults ----------------------------------------------------------------------------------


def _point(record: Mapping[str, Any] | None, rule: Mapping[str, Any]) -> Any:
    """The rule's metric as a point estimate (what a person reads first)."""
    return None if record is None else metric_value(record, rule["metric"], rule["min_n"])


def _champion(metrics: Mapping[str, Any] | None, *path: str) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, Mapping):
        value = value.get("value")
    return float(value) if _is_number(value) and math.isfinite(float(value)) else None


def default_rules(
    champion_metrics: Mapping[str, Any] | None,
    *,
    labels: Sequence[str] = (),
    tolerance: float = TOLERANCE,
    correction_rate: float = CORRECTION_RATE,
    cooldown: float = COOLDOWN,
) -> list[dict]:
    """The rules a new project gets, as data.

    The champion-relative rules keep their ``tolerance``, so :func:`resolve_threshold` (and
    :func:`evaluate`) move their thresholds when another model becomes champion; without a
    champion their threshold is None and they stay quiet until there is one.

    Args:
        champion_metrics: The champion's held-out :func:`labeling.evaluation.evaluate` dict
            (``accuracy`` and ``per_class`` with ``precision``, ``recall``, ``support``), or
            None without a champion.
        labels: The project's labels, for the per-class rules (the classes with held-out
            support in ``champion_metrics`` are used as well).
        tolerance: How far below its champion value a metric may fall.
        correction_rate: Share of feedback correcting the model that alerts.
        cooldown: Seconds between two firings of one rule.

    Returns:
        Validated rules: ``accuracy_below_champion`` (audited accuracy below the champion's
        held-out accuracy − tolerance, on at least 30 audits, significantly: the top of its
        95% interval is below); per class, ``recall_below_champion[<label>]`` and
        ``precision_below_champion[<label>]`` (at least 10 rows of the class, significantly);
        ``cbpe_accuracy_below_champion`` (the CBPE estimate below the
        accuracy threshold, on at least 100 predictions); ``drift`` (severity ``drift`` on 2
        consecutive windows); ``correction_rate_high`` (feedback correction rate above
        ``correction_rate``, on at least 20 verdicts, significantly: the bottom of its interval
        is above); ``no_predictions`` (volume 0).
    """
    relative = {"op": "<", "threshold": None, "tolerance": tolerance}
    relative |= {"cooldown": cooldown, "hysteresis": 0.01}
    rules: list[dict] = [
        relative
        | {
            "id": "accuracy_below_champion",
            "metric": "accuracy",
            "bound": "upper",
            "min_n": 30,
            "severity": "critical",
            "description": f"audited accuracy more than {tolerance:g} below the champion's "
            "held-out accuracy",
        }
    ]
    per_class = (champion_metrics or {}).get("per_class") or {}
    classes = [str(v) for v in labels]
    classes += [
        str(label)
        for label, scores in per_class.items()
        if str(label) not in classes and ((scores or {}).get("support") or 0) > 0
    ]
    for name in ("recall", "precision"):
        for label in classes:
            rules.append(
                relative
                | {
                    "id": f"{name}_below_champion[{label}]",
                    "metric": f"{name}[{label}]",
                    "bound": "upper",
                    "min_n": 10,
                    "description": f"audited {name} of {label!r} more than {tolerance:g} "
                    f"below the champion's held-out {name}",
                }
            )
    rules.append(
        relative
        | {
            "id": "cbpe_accuracy_below_champion",
            "metric": "cbpe.accuracy",
            "min_n": 100,
            "description": f"estimated (CBPE) accuracy more than {tolerance:g} below the "
            "champion's held-out accuracy",
        }
    )
    rules.append(
        {
            "id": "drift",
            "metric": "drift.severity",
            "op": "==",
            "threshold": "drift",
            "persistence": 2,
            "cooldown": cooldown,
            "description": "input drift on two consecutive windows",
        }
    )
    rules.append(
        {
            "id": "correction_rate_high",
            "metric": "feedback.correction_rate",
            "bound": "lower",
            "op": ">",
            "threshold": float(correction_rate),
            "min_n": 20,
            "hysteresis": 0.05,
            "cooldown": cooldown,
            "description": f"more than {correction_rate:.0%} of feedback corrects the model",
        }
    )
    rules.append(
        {
            "id": "no_predictions",
            "metric": "volume",
            "op": "<=",
            "threshold": 0,
            "cooldown": cooldown,
            "severity": "critical",
            "description": "no predictions in a window",
        }
    )
    return [resolve_threshold(r, champion_metrics) for r in rules]
