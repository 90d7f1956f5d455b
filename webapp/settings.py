"""Project settings: defaults live in models.DEFAULT_SETTINGS; this checks and applies changes."""

from __future__ import annotations

import math

from labeling.agreement import RULES
from labeling.evaluation import METRIC_NAMES, MODES

from .enums import PromoteTo, values
from .errors import ValidationError
from .models import DEFAULT_SETTINGS, STRATEGIES, Project
from .schedule import check_cron
from .training import request_rescore


def _boolean(raw: object) -> bool:
    """true/false, also as the words a command line or a form sends (yes/no, on/off, 1/0)."""
    if isinstance(raw, bool):
        return raw
    words = {"true": True, "yes": True, "on": True, "1": True}
    words.update({"false": False, "no": False, "off": False, "0": False})
    if isinstance(raw, str) and raw.strip().lower() in words:
        return words[raw.strip().lower()]
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    raise ValueError(raw)


def _cron(raw: object) -> str:
    """A cron expression, or "" for none ("off" and "none" too)."""
    if not isinstance(raw, str):
        raise ValueError(raw)
    if raw.strip().lower() in ("", "off", "none"):
        return ""
    return check_cron(raw)


# The settings whose value is one of a few names, and those names.
CHOICES = {
    "query_strategy": STRATEGIES,
    "gate.metric": METRIC_NAMES,
    "gate.mode": MODES,
    "promote_to": values(PromoteTo),
    "resolution": RULES,
}


def _one_of(key: str) -> tuple:
    return (str, lambda v: v in CHOICES[key], f"one of {', '.join(CHOICES[key])}")


# key -> (parse, check, what a valid value is)
_RULES = {
    "query_strategy": _one_of("query_strategy"),
    "batch_diversity": (_boolean, lambda v: True, "true or false"),
    "heldout_share": (float, lambda v: 0.05 <= v <= 0.5, "a share from 0.05 to 0.5"),
    "audit_share": (float, lambda v: 0.0 <= v <= 1.0, "a share from 0 to 1"),
    "retrain_every": (int, lambda v: v >= 0, "a whole number ≥ 0 (0 turns it off)"),
    "gate.min_heldout": (int, lambda v: v >= 1, "a whole number ≥ 1"),
    "gate.min_delta": (float, lambda v: -1.0 <= v <= 1.0, "a number from -1 to 1"),
    "gate.max_class_drop": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1"),
    "gate.min_class_support": (int, lambda v: v >= 1, "a whole number ≥ 1"),
    "gate.metric": _one_of("gate.metric"),
    "gate.mode": _one_of("gate.mode"),
    "gate.alpha": (float, lambda v: 0.0 < v <= 0.5, "a level above 0 and at most 0.5"),
    "gate.margin": (float, lambda v: 0.0 <= v <= 0.2, "a number from 0 to 0.2"),
    "first_retrain_at": (int, lambda v: v >= 2, "a whole number ≥ 2"),
    "audit_share_early": (float, lambda v: 0.0 <= v <= 1.0, "a share from 0 to 1"),
    "audit_early_until": (int, lambda v: v >= 0, "a whole number ≥ 0 (0 turns it off)"),
    "promote_to": _one_of("promote_to"),
    "retrain_schedule": (
        _cron,
        lambda v: True,
        'a cron expression in UTC ("0 3 * * *": 03:00 every day), or "" or "off" for none',
    ),
    "monitor_window": (int, lambda v: 60 <= v <= 30 * 86400, "seconds from 60 to 2592000"),
    "drift_bins": (int, lambda v: 2 <= v <= 100, "a whole number from 2 to 100"),
    "annotations_per_item": (int, lambda v: 1 <= v <= 10, "a whole number from 1 to 10"),
    "second_opinion": (int, lambda v: 1 <= v <= 10, "a whole number from 1 to 10"),
    "resolution": _one_of("resolution"),
}
SETTING_KEYS = tuple(_RULES)
# The JSON type of each setting's value, for the API's schema (which checks types; `parse`
# checks values).
TYPES = {
    key: {str: "string", float: "number", int: "integer", _boolean: "boolean", _cron: "string"}[
        rule[0]
    ]
    for key, rule in _RULES.items()
}


def expected(key: str) -> str:
    """What a valid value of the setting is, in words ("a share from 0 to 1")."""
    return _RULES[key][2]


def effective(project: Project) -> dict[str, object]:
    """Every setting of the project as flat `key: value` pairs, defaults filled in."""
    flat: dict[str, object] = {}
    for key in SETTING_KEYS:
        if key.startswith("gate."):
            flat[key] = getattr(project.gate_config, key.removeprefix("gate."))
        else:
            flat[key] = project.setting(key)
    return flat


def parse(key: str, raw: object) -> object:
    """Convert and check one setting's value; raise ValidationError naming the key."""
    if key not in _RULES:
        raise ValidationError({key: f"unknown setting; known: {', '.join(SETTING_KEYS)}"})
    kind, check, expected = _RULES[key]
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValidationError({key: f"must be {expected}"}) from None
    if isinstance(value, float) and not math.isfinite(value) or not check(value):
        raise ValidationError({key: f"must be {expected}"})
    return value


def apply(project: Project, updates: dict[str, object]) -> None:
    """Validate every update first, then set them all (flushed; the caller commits).

    A new query strategy, or batch diversity turned on or off, queues a rescore of the pool
    (`training.request_rescore`).

    The held-out share is fixed once the project has labels: moving it would put items the
    current champion was trained on into the held-out set, or train on held-out ones.
    """
    parsed = {key: parse(key, raw) for key, raw in updates.items()}
    if "heldout_share" in parsed and project.labeled_count:
        raise ValidationError(
            {"heldout_share": "cannot change once the project has labels (the split would leak)"}
        )
    settings = dict(project.settings or {})
    gate = dict(settings.get("gate", {}))
    for key, value in parsed.items():
        if key.startswith("gate."):
            gate[key.removeprefix("gate.")] = value
        else:
            settings[key] = value
    if gate:
        settings["gate"] = gate
    rescored = ("query_strategy", "batch_diversity")
    changed = any(settings.get(k, DEFAULT_SETTINGS[k]) != project.setting(k) for k in rescored)
    project.settings = settings
    if changed:
        # Scores of the old strategy are on another scale, and the lane's head is a diverse
        # batch or not: score the pool again (recorded now, enqueued once the caller commits).
        request_rescore(project)
