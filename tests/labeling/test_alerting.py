import json
from datetime import UTC, datetime, timedelta

import pytest

from labeling.alerting import (
    FIRING,
    RESOLVED,
    acknowledge,
    default_rules,
    evaluate,
    initial_state,
    metric_value,
    resolve_threshold,
    rule_value,
    step,
    validate_rule,
)
from labeling.evaluation import evaluate as evaluate_heldout
from labeling.monitoring import CBPE, merge_windows, window_metrics

HOUR = 3600.0


def accuracy_rule(**overrides):
    return {"id": "acc", "metric": "accuracy", "op": "<", "threshold": 0.90} | overrides


def run(rule, values, start=0.0, every=HOUR, state=None):
    """Step a rule through values an hour apart; the events and the final state."""
    events = []
    for i, value in enumerate(values):
        state, event = step(rule, state, value, start + i * every)
        events.append(event)
    return events, state


def test_fires_only_after_persistence_consecutive_breaches():
    rule = accuracy_rule(persistence=3)
    events, state = run(rule, [0.85, 0.85, 0.95, 0.85, 0.85, 0.85, 0.80])
    assert events == [None, None, None, None, None, FIRING, None]
    assert state["status"] == "firing" and state["breaches"] == 4
    # Persistence 1 fires at once.
    assert run(accuracy_rule(), [0.85])[0] == [FIRING]


def test_hysteresis_stops_a_metric_at_its_threshold_from_flapping():
    hovering = [0.899, 0.901] * 10
    events, state = run(accuracy_rule(hysteresis=0.01), hovering)
    assert events.count(FIRING) == 1 and events.count(RESOLVED) == 0
    assert state["status"] == "firing"
    # It resolves once the value is clear of threshold + hysteresis.
    assert step(accuracy_rule(hysteresis=0.01), state, 0.905, 1e6)[1] is None
    resolved, event = step(accuracy_rule(hysteresis=0.01), state, 0.91, 1e6)
    assert event == RESOLVED and resolved["status"] == "resolved"
    # Without hysteresis the same values flap: a firing and a resolution every two hours.
    flapping, _ = run(accuracy_rule(), hovering)
    assert flapping.count(FIRING) == 10 and flapping.count(RESOLVED) == 10


def test_hysteresis_for_an_upper_threshold():
    rule = {"id": "fb", "metric": "feedback.correction_rate", "op": ">", "threshold": 0.3}
    rule |= {"hysteresis": 0.05}
    events, _ = run(rule, [0.31, 0.29, 0.31, 0.26, 0.24, 0.31])
    assert events == [FIRING, None, None, None, RESOLVED, FIRING]


def test_cooldown_holds_back_a_second_firing():
    rule = accuracy_rule(cooldown=6 * HOUR)
    # Fires at hour 0, resolves at 1, breaches again at 2..7: the cooldown ends at hour 6.
    events, state = run(rule, [0.8, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert events == [FIRING, RESOLVED, None, None, None, None, FIRING, None]
    assert state["last_fired"] == 6 * HOUR
    # A breach that ends inside the cooldown never fires.
    events, _ = run(rule, [0.8, 0.95, 0.8, 0.95, 0.95, 0.95, 0.95])
    assert events == [FIRING, RESOLVED, None, None, None, None, None]


def test_acknowledged_stays_acknowledged_while_firing_then_resolves():
    rule = accuracy_rule()
    state, event = step(rule, None, 0.8, 0.0)
    assert event == FIRING
    state = acknowledge(state, 10.0)
    assert state["status"] == "acknowledged" and state["changed_at"] == 10.0
    for t, value in ((HOUR, 0.7), (2 * HOUR, 0.85), (3 * HOUR, None)):
        state, event = step(rule, state, value, t)
        assert event is None and state["status"] == "acknowledged"
    state, event = step(rule, state, 0.95, 4 * HOUR)
    assert event == RESOLVED and state["status"] == "resolved"
    # Acknowledging an alert that is not firing changes nothing.
    assert acknowledge(state, 5 * HOUR) == state
    assert acknowledge(initial_state(), 0.0)["status"] == "ok"


def test_missing_values_neither_fire_nor_resolve_nor_break_a_run():
    rule = accuracy_rule(persistence=2)
    events, state = run(rule, [None, None, float("nan")])
    assert events == [None] * 3 and state["status"] == "ok" and state["breaches"] == 0
    # A gap inside a run of breaches does not reset it.
    events, state = run(rule, [0.8, None, 0.8])
    assert events == [None, None, FIRING]
    # A firing alert stays firing through missing values.
    events, state = run(rule, [None, None], state=state, start=10 * HOUR)
    assert events == [None, None] and state["status"] == "firing"
    assert state["value"] == 0.8 and state["evaluated_at"] == 11 * HOUR


def test_state_is_json_and_not_modified_in_place():
    rule = accuracy_rule()
    state = initial_state()
    before = dict(state)
    new, _ = step(rule, state, 0.5, datetime(2025, 1, 2, 3, 4, 5))
    assert state == before
    assert json.loads(json.dumps(new)) == new
    # A naive datetime is UTC.
    assert new["last_fired"] == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    later, event = step(rule | {"cooldown": 3600}, new, 0.5, datetime(2025, 1, 2, 3, 4, 5))
    assert later["status"] == "firing" and event is None


def test_categorical_rule_for_drift_severity():
    (rule,) = [r for r in default_rules(None) if r["id"] == "drift"]
    assert rule["persistence"] == 2
    records = [{"drift": {"severity": s}} for s in ("drift", "ok", "drift", "drift", "warning")]
    events, state = [], None
    for i, record in enumerate(records):
        state, event = step(rule, state, rule_value(rule, [record]), i * HOUR)
        events.append(event)
    assert events == [None, None, None, FIRING, RESOLVED]
    with pytest.raises(ValueError):
        step(accuracy_rule(), None, "drift", 0.0)


def test_invalid_rules_are_refused_with_the_field_named():
    bad = [
        ({"op": "=<"}, "op"),
        ({"threshold": "high"}, "threshold"),
        ({"persistence": 0}, "persistence"),
        ({"window": 1.5}, "window"),
        ({"cooldown": -1}, "cooldown"),
        ({"hysteresis": -0.1}, "hysteresis"),
        ({"id": ""}, "id"),
        ({"severity": "loud"}, "severity"),
    ]
    for change, field in bad:
        with pytest.raises(ValueError, match=field):
            validate_rule(accuracy_rule(**change))
    with pytest.raises(ValueError, match="hysteresis"):
        validate_rule(
            {"id": "d", "metric": "drift.severity", "op": "==", "threshold": "drift"}
            | {"hysteresis": 0.1}
        )
    with pytest.raises(ValueError):
        metric_value({}, "accuracy[cat]")
    with pytest.raises(ValueError):
        metric_value({}, "recall")
    with pytest.raises(ValueError):
        metric_value({}, "speed")


# --- default rules on real window figures -------------------------------------------------------

LABELS = ["cat", "dog"]


def champion(scale: int = 1):
    # Held-out: accuracy 0.9; cat recall 0.95, dog recall 0.85; cat precision 19/22.
    true = (["cat"] * 20 + ["dog"] * 20) * scale
    pred = (["cat"] * 19 + ["dog"] + ["dog"] * 17 + ["cat"] * 3) * scale
    return evaluate_heldout(true, pred, LABELS)


def lower(metrics, *path):
    """The lower end of a champion's 95% held-out interval (where relative thresholds start)."""
    block = metrics["intervals"]
    for key in path:
        block = block[key]
    return block["lo"]


def window(acc_rows, n_predictions=50, corrections=(0, 0)):
    """A window whose audits are (true, predicted) pairs."""
    labeled = [{"true": t, "predicted": p, "audit": True} for t, p in acc_rows]
    accepted, corrected = corrections
    feedback = [{"predicted": "cat", "correct": True}] * accepted + [
        {"predicted": "cat", "correct": False}
    ] * corrected
    return window_metrics(LABELS, ["cat"] * n_predictions, feedback=feedback, labeled=labeled)


def test_default_rules_from_champion_metrics():
    rules = default_rules(champion())
    json.dumps(rules, allow_nan=False)
    by_id = {r["id"]: r for r in rules}
    held = champion()
    accuracy_lo = lower(held, "accuracy")
    assert 0.75 < accuracy_lo < 0.9  # 36 of 40 right: the interval's lower end, not 0.9
    assert by_id["accuracy_below_champion"]["threshold"] == pytest.approx(accuracy_lo - 0.05)
    assert by_id["accuracy_below_champion"]["baseline"] == pytest.approx(0.9)
    assert by_id["recall_below_champion[cat]"]["threshold"] == pytest.approx(
        lower(held, "recall", "cat") - 0.05
    )
    assert by_id["recall_below_champion[dog]"]["threshold"] == pytest.approx(
        lower(held, "recall", "dog") - 0.05
    )
    # No interval for precision: its threshold starts from the value itself.
    assert by_id["precision_below_champion[cat]"]["threshold"] == pytest.approx(19 / 22 - 0.05)
    assert by_id["cbpe_accuracy_below_champion"]["metric"] == "cbpe.accuracy"
    assert by_id["cbpe_accuracy_below_champion"]["threshold"] == pytest.approx(accuracy_lo - 0.05)
    assert by_id["correction_rate_high"]["threshold"] == 0.3
    assert by_id["correction_rate_high"]["op"] == ">"
    assert {"metric": "volume", "op": "<=", "threshold": 0}.items() <= by_id[
        "no_predictions"
    ].items()
    assert by_id["drift"]["persistence"] == 2
    # A different tolerance moves every champion-relative threshold.
    looser = {r["id"]: r for r in default_rules(champion(), tolerance=0.1)}
    assert looser["accuracy_below_champion"]["threshold"] == pytest.approx(accuracy_lo - 0.1)
    # Without a champion the champion-relative rules are there, waiting for a threshold.
    pending = {r["id"]: r for r in default_rules(None, labels=LABELS)}
    assert set(pending) == set(by_id)
    assert pending["accuracy_below_champion"]["threshold"] is None
    assert pending["accuracy_below_champion"]["tolerance"] == 0.05
    assert pending["no_predictions"] == by_id["no_predictions"]


def test_champion_relative_rules_wait_for_a_champion_and_follow_a_new_one():
    (rule,) = [r for r in default_rules(None) if r["id"] == "accuracy_below_champion"]
    terrible = window([("cat", "dog")] * 40)
    # No champion: the rule has no threshold and stays quiet, whatever the value.
    state, event = step(rule, None, rule_value(rule, [terrible]), 0.0)
    assert event is None and state["status"] == "ok"
    # A champion is promoted (judged on 400 audits): the threshold is the lower end of its
    # held-out accuracy's interval minus the tolerance.
    held = champion(scale=10)
    resolved = resolve_threshold(rule, held)
    threshold = lower(held, "accuracy") - 0.05
    assert 0.8 < threshold < 0.85 and resolved["baseline"] == 0.9
    assert resolved["threshold"] == pytest.approx(threshold)
    assert step(resolved, state, rule_value(resolved, [terrible]), 1.0)[1] == FIRING
    # A weaker champion replaces it: the same rule now tolerates lower accuracy.
    weaker = evaluate_heldout(["cat"] * 10, ["cat"] * 6 + ["dog"] * 4, LABELS)
    assert resolve_threshold(rule, weaker)["threshold"] == pytest.approx(
        lower(weaker, "accuracy") - 0.05
    )
    # evaluate() resolves the thresholds itself.
    middling = window([("cat", "cat")] * 150 + [("cat", "dog")] * 50)  # 0.75 on 200 audits
    _, events = evaluate([rule], None, [middling], 0.0, champion_metrics=held)
    assert [e["rule"] for e in events] == ["accuracy_below_champion"]
    assert events[0]["threshold"] == pytest.approx(threshold)
    # The same 0.75 on 40 audits is not significantly below (its interval reaches 0.86).
    thin = window([("cat", "cat")] * 30 + [("cat", "dog")] * 10)
    assert evaluate([rule], None, [thin], 0.0, champion_metrics=held)[1] == []
    _, events = evaluate([rule], None, [middling], 0.0, champion_metrics=weaker)
    assert events == []
    _, events = evaluate([rule], None, [middling], 0.0)
    assert events == []


def test_rules_in_the_web_apps_spelling():
    row = {
        "name": "dog recall",
        "metric": "recall",
        "params": {"class": "dog", "tolerance": 0.1},
        "comparison": "<",
        "threshold": None,
        "window": 1,
        "persistence": 1,
        "cooldown_seconds": 3600,
        "hysteresis": 0.0,
        "actions": {"retrain": True},
    }
    rule = validate_rule(row)
    assert rule["id"] == "dog recall" and rule["op"] == "<" and rule["cooldown"] == 3600.0
    assert rule["metric"] == "recall[dog]" and rule["tolerance"] == 0.1
    assert rule["actions"] == {"retrain": True}
    held = champion()
    expected = lower(held, "recall", "dog") - 0.1
    assert resolve_threshold(row, held)["threshold"] == pytest.approx(expected)
    short = {"id": "x", "comparison": "<", "threshold": 0.8}
    assert validate_rule(short | {"metric": "cbpe_accuracy"})["metric"] == "cbpe.accuracy"
    assert validate_rule(short | {"metric": "correction_rate"})["metric"] == (
        "feedback.correction_rate"
    )
    cbpe_recall = validate_rule(short | {"metric": "cbpe_recall", "params": {"class": "cat"}})
    assert cbpe_recall["metric"] == "cbpe.recall[cat]"
    # An upper rule relative to the champion: ECE may rise by the tolerance.
    proba = [[0.9, 0.1]] * 20 + [[0.3, 0.7]] * 20
    calibrated = evaluate_heldout(
        ["cat"] * 18 + ["dog"] * 22, ["cat"] * 20 + ["dog"] * 20, LABELS, proba
    )
    ece = {"id": "e", "metric": "ece", "comparison": ">", "threshold": None}
    ece |= {"params": {"tolerance": 0.05}}
    held = calibrated["calibration"]["ece"]
    assert resolve_threshold(ece, calibrated)["threshold"] == pytest.approx(held + 0.05)
    drift = validate_rule({"id": "d", "metric": "drift", "comparison": "==", "threshold": "drift"})
    assert drift["metric"] == "drift.severity"


def test_default_rules_fire_on_the_windows_a_user_would_worry_about():
    rules = {r["id"]: r for r in default_rules(champion(scale=10))}
    good = window(
        [("cat", "cat")] * 19 + [("cat", "dog")] + [("dog", "dog")] * 18 + [("dog", "cat")] * 2
    )
    # Dog recall collapses: 50 of 100 dogs are called cats (on 200 audits: significant).
    bad = window([("cat", "cat")] * 100 + [("dog", "dog")] * 50 + [("dog", "cat")] * 50)
    silent = window([], n_predictions=0)
    complaints = window([], corrections=(10, 15))

    def fires(rule_id, record):
        rule = rules[rule_id]
        return step(rule, None, rule_value(rule, [record]), 0.0)[1] == FIRING

    assert not any(fires(rule_id, good) for rule_id in rules if rule_id != "drift")
    assert fires("accuracy_below_champion", bad)
    assert fires("recall_below_champion[dog]", bad)
    assert fires("precision_below_champion[cat]", bad)
    assert not fires("recall_below_champion[cat]", bad)
    assert fires("no_predictions", silent) and not fires("no_predictions", good)
    # No audits: the accuracy rule has no value, so it neither fires nor resolves.
    assert rule_value(rules["accuracy_below_champion"], [silent]) is None
    assert fires("correction_rate_high", complaints)
    assert not fires("correction_rate_high", window([], corrections=(2, 3)))  # < 20 verdicts


def test_min_n_treats_thin_evidence_as_missing():
    rule = accuracy_rule(min_n=30)
    few = window([("cat", "dog")] * 5)
    assert metric_value(few, "accuracy") == 0.0
    assert rule_value(rule, [few]) is None
    assert step(rule, None, rule_value(rule, [few]), 0.0)[1] is None


def test_window_aggregates_recent_windows_from_their_counts():
    # Six windows of 10 audits each: 9 right, 9, 7, 7, 7, 9.
    def audits(right):
        return window([("cat", "cat")] * right + [("cat", "dog")] * (10 - right))

    records = [audits(r) for r in (9, 9, 7, 7, 7, 9)]
    per_window = accuracy_rule(threshold=0.8)
    assert rule_value(per_window, records) == pytest.approx(0.9)
    weekly = accuracy_rule(threshold=0.8, window=3)
    assert rule_value(weekly, records) == pytest.approx(23 / 30)
    assert rule_value(weekly, records[:2]) == pytest.approx(0.9)  # what there is
    assert rule_value(weekly, []) is None
    merged = merge_windows(records[-3:])
    assert metric_value(merged, "accuracy") == pytest.approx(23 / 30)
    # Per window the 7/10 windows would fire; aggregated over three it still fires at the
    # last step although the newest window alone is fine.
    assert step(weekly, None, rule_value(weekly, records), 0.0)[1] == FIRING
    assert step(per_window, None, rule_value(per_window, records), 0.0)[1] is None


def test_metric_names_read_the_window_figures():
    record = window([("cat", "cat")] * 8 + [("dog", "cat")] * 2, corrections=(3, 1))
    cbpe = CBPE(LABELS)
    record["cbpe"] = cbpe.estimate([[0.9, 0.1]] * 40 + [[0.2, 0.8]] * 10)
    record["drift"] = {"severity": "ok", "score": 0.1}
    assert metric_value(record, "volume") == 50
    assert metric_value(record, "accuracy") == pytest.approx(0.8)
    assert metric_value(record, "all.accuracy") == pytest.approx(0.8)
    assert metric_value(record, "recall[dog]") == 0.0
    assert metric_value(record, "precision[cat]") == pytest.approx(0.8)
    assert metric_value(record, "precision[dog]") is None  # never predicted
    assert metric_value(record, "feedback.correction_rate") == pytest.approx(0.25)
    assert metric_value(record, "cbpe.accuracy") == pytest.approx((40 * 0.9 + 10 * 0.8) / 50)
    assert metric_value(record, "cbpe.precision[dog]") == pytest.approx(0.8)
    assert metric_value(record, "drift.severity") == "ok"
    assert metric_value(record, "drift.score") == 0.1
    assert metric_value(record, "calibration.ece") is None  # audits without probabilities
    assert metric_value({}, "cbpe.accuracy") is None
    assert metric_value({}, "drift.severity") is None


def test_evaluate_steps_every_rule_and_reports_events():
    rules = default_rules(champion(scale=10))
    bad = window([("cat", "cat")] * 100 + [("dog", "dog")] * 50 + [("dog", "cat")] * 50)
    start = datetime(2025, 3, 1)
    states, events = evaluate(rules, None, [bad], start)
    fired = {e["rule"] for e in events}
    assert {"accuracy_below_champion", "recall_below_champion[dog]"} <= fired
    assert all(e["event"] == FIRING for e in events)
    acc = [e for e in events if e["rule"] == "accuracy_below_champion"][0]
    threshold = lower(champion(scale=10), "accuracy") - 0.05
    assert acc["value"] == pytest.approx(0.75) and acc["threshold"] == pytest.approx(threshold)
    assert set(states) == {r["id"] for r in rules}
    json.dumps(states, allow_nan=False)
    json.dumps(events, allow_nan=False)
    # An hour later the same window: nothing new (still firing).
    states, events = evaluate(rules, states, [bad], start + timedelta(hours=1))
    assert events == []
    good = window([("cat", "cat")] * 20 + [("dog", "dog")] * 19 + [("dog", "cat")])
    states, events = evaluate(rules, states, [good], start + timedelta(hours=2))
    assert {e["rule"] for e in events if e["event"] == RESOLVED} >= {"accuracy_below_champion"}
