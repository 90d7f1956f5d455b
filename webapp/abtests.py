"""A/B experiments: the champion against one challenger on a sticky split of live units.

An experiment's design is fixed when it starts: the challenger, its traffic share, the mode
(`ab`: the challenger serves its share of units; `shadow`: it scores every request in the
background and serves none), the primary metric, the guardrails, alpha, the effect it is
powered for (`mde`), the minimum units per arm and an optional maximum duration.

`serving.predict` asks `arm_for` which arm a request's unit is in (a salted hash, so a unit
keeps its arm) and records the exposure on the prediction. `step` (an RQ job the clock queues
for each running experiment) reads the exposures, feedback and labels per unit, compares the
arms with `labeling.experiments` (confidence sequences, valid however often anyone looks),
raises a sample-ratio-mismatch alert, stores the look, and carries out the rule's decision
through the registry: the same transactions as a person's promotion or rejection, with the
experiment as the actor. Engineers can stop an experiment with a decision of their own, or
override the one it took.

Every function flushes and leaves the commit to its caller (`webapp.transaction`), except the
job entry points `step` and `score_shadow`, which are units of work of their own.
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from labeling import experiments as stats
from labeling import monitoring as window_stats
from labeling.stats import mcnemar_exact, wilson_interval
from labeling.training import predict_proba_for, to_matrix

from . import jobs, registry, webhooks
from .enums import (
    AlertState,
    Arm,
    ExperimentDecision,
    ExperimentMode,
    ExperimentStatus,
    ModelStatus,
    WebhookEvent,
)
from .errors import Conflict, ValidationError
from .extensions import db
from .models import (
    Alert,
    Experiment,
    ExperimentLook,
    Feedback,
    Item,
    ModelVersion,
    Prediction,
    Project,
    ShadowPrediction,
    utcnow,
)
from .training import load_model
from .transaction import unit_of_work

ANALYZE_JOB = "worker.jobs.analyze_experiment"
SHADOW_JOB = "worker.jobs.score_shadow"
AUTO = "auto"  # `decided_by` of the experiment's own rule
MAX_DAYS = 365
SHADOW_BATCH = 2000
# The looks an experiment page and API show (the newest this many, oldest first).
LOOKS_SHOWN = 500


def actor_of(experiment: Experiment) -> str:
    """The registry actor of an experiment's own decisions."""
    return f"experiment:{experiment.id}"


# --- starting -----------------------------------------------------------------------------------


def running(project_id: int) -> Experiment | None:
    """The project's running experiment, if any (one index probe: uq_experiment_running)."""
    return db.session.scalar(
        select(Experiment).where(
            Experiment.project_id == project_id, Experiment.status == ExperimentStatus.RUNNING
        )
    )


def start(
    project: Project,
    actor: str,
    *,
    challenger: ModelVersion | None = None,
    share: float = 0.5,
    mode: str = ExperimentMode.AB,
    primary_metric: str = "accuracy",
    guardrails: list[str] | tuple[str, ...] = ("correction_rate",),
    alpha: float = 0.05,
    mde: float = 0.03,
    min_units: int = 100,
    max_days: float | None = None,
    name: str | None = None,
) -> Experiment:
    """Start an experiment: the champion against `challenger` (default: the registry's).

    Raises ValidationError naming the field for a design that cannot run, and Conflict when
    the project has no champion, no challenger to test, or a running experiment already.
    """
    errors = {}
    if not 0 < share < 1:
        errors["share"] = "must be between 0 and 1 (exclusive)"
    if mode not in (ExperimentMode.AB, ExperimentMode.SHADOW):
        errors["mode"] = "must be `ab` or `shadow`"
    if primary_metric not in stats.METRICS:
        errors["primary_metric"] = f"must be one of {', '.join(stats.METRICS)}"
    guardrails = list(dict.fromkeys(guardrails))
    unknown = [g for g in guardrails if g not in stats.METRICS]
    if unknown:
        errors["guardrails"] = f"unknown metric {unknown[0]!r}: use {', '.join(stats.METRICS)}"
    elif primary_metric in guardrails:
        errors["guardrails"] = "must not repeat the primary metric"
    if not 0 < alpha < 0.5:
        errors["alpha"] = "must be between 0 and 0.5"
    if not 0 < mde < 1:
        errors["mde"] = "must be between 0 and 1 (a difference in the metric's units)"
    if min_units < 1:
        errors["min_units"] = "must be at least 1"
    if max_days is not None and not 0 < max_days <= MAX_DAYS:
        errors["max_days"] = f"must be between 0 and {MAX_DAYS}"
    if errors:
        raise ValidationError(errors)
    champion = registry.champion(project)
    if champion is None:
        raise Conflict("This project has no champion to test a challenger against.")
    challenger = challenger or registry.challenger(project)
    if challenger is None:
        raise Conflict(
            "This project has no challenger: name a model version (`challenger_version`) or "
            "make one the challenger first."
        )
    if challenger.id == champion.id:
        raise ValidationError({"challenger_version": "is the champion; name another version"})
    if challenger.labels != champion.labels:
        raise ValidationError({"challenger_version": "predicts other labels than the champion"})
    experiment = Experiment(
        project_id=project.id,
        name=(name or f"v{champion.version} vs v{challenger.version}")[:100],
        status=ExperimentStatus.RUNNING,
        mode=mode,
        champion_version_id=champion.id,
        challenger_version_id=challenger.id,
        share=float(share),
        salt=secrets.token_hex(8),
        primary_metric=primary_metric,
        guardrails=guardrails,
        alpha=float(alpha),
        mde=float(mde),
        min_units=int(min_units),
        max_seconds=None if max_days is None else int(max_days * 86400),
        created_by=actor[:64],
        started_at=utcnow(),
        phase=1,
        reasons=[],
        shadow_high_water=0,
    )
    experiment.phase_started_at = experiment.started_at
    try:
        with db.session.begin_nested():
            db.session.add(experiment)
            db.session.flush()
    except IntegrityError:
        raise Conflict(
            "This project already runs an experiment: stop it before starting another."
        ) from None
    webhooks.emit(project.id, WebhookEvent.EXPERIMENT_STARTED, summary(experiment))
    return experiment


def raise_share(experiment: Experiment, share: float, actor: str) -> Experiment:
    """Raise a running A/B experiment's challenger share: units only move from the champion
    to the challenger (the hash is monotone in the share). A new phase starts, and the
    analysis reads only its exposures: a unit that moved has predictions in both arms."""
    experiment = _lock(experiment)
    if experiment.status != ExperimentStatus.RUNNING or experiment.mode != ExperimentMode.AB:
        raise Conflict(f"Experiment {experiment.id} is not a running A/B experiment.")
    if not experiment.share < share < 1:
        raise ValidationError(
            {
                "share": (
                    f"must be above the current {experiment.share:g} and below 1: lowering it "
                    "would move units back, so stop this experiment and start another"
                )
            }
        )
    now = utcnow()
    experiment.reasons = [
        *(experiment.reasons or []),
        f"Share raised from {experiment.share:g} to {share:g} by {actor}; phase "
        f"{experiment.phase + 1} counts from {now:%Y-%m-%d %H:%M} UTC.",
    ]
    experiment.share, experiment.phase, experiment.phase_started_at = (
        share,
        experiment.phase + 1,
        now,
    )
    db.session.flush()
    return experiment


def design_power(experiment: Experiment, baseline: float | None = None) -> dict:
    """What the design promises: the units it needs for 80% power on the primary metric at
    `mde` (from the champion's held-out accuracy, or 0.8), and its false-positive rate."""
    if baseline is None:
        champion = _version(experiment.champion_version_id)
        accuracy = ((champion.metrics or {}).get("accuracy") if champion else None) or 0.8
        baseline = accuracy if experiment.primary_metric == "accuracy" else 0.5
        if experiment.primary_metric == "correction_rate":
            baseline = 1 - accuracy
    baseline = min(max(float(baseline), 0.01), 0.99 - experiment.mde)
    units = stats.plan(baseline, experiment.mde, experiment.alpha, experiment.share)
    return {
        "baseline": round(baseline, 4),
        "mde": experiment.mde,
        "alpha": experiment.alpha,
        "power": 0.8,
        "units": int(units),
    }


# --- serving ------------------------------------------------------------------------------------

# (database, version id) -> (version number, fitted model) of a challenger, loaded once per
# process (a version's artifact never changes).
_models: dict[tuple[str, int], tuple[int, object]] = {}
_models_lock = threading.Lock()


def arm_for(project_id: int, unit: str | None) -> tuple[int, str, int | None, str] | None:
    """(experiment id, arm, version id to serve, mode) for a request, or None outside any.

    One index probe per request. A request without a unit is served by the champion and left
    out of an A/B analysis; a shadow experiment records every request (the challenger scores
    it later, in the background).
    """
    row = db.session.execute(
        select(
            Experiment.id,
            Experiment.mode,
            Experiment.share,
            Experiment.salt,
            Experiment.challenger_version_id,
        ).where(Experiment.project_id == project_id, Experiment.status == ExperimentStatus.RUNNING)
    ).first()
    if row is None:
        return None
    if row.mode == ExperimentMode.SHADOW:
        return row.id, Arm.CHAMPION, None, row.mode
    if unit is None or row.challenger_version_id is None:
        return None
    arm = stats.assign(row.salt, unit, row.share)
    return row.id, arm, (row.challenger_version_id if arm == Arm.CHALLENGER else None), row.mode


def model_of(version_id: int) -> tuple[int, object]:
    """A (non-champion) version's number and fitted model, loaded once per process: a request
    served by the challenger reads no row for it after the first."""
    key = (db.engine.url.render_as_string(hide_password=True), version_id)
    cached = _models.get(key)
    if cached is None:
        with _models_lock:
            cached = _models.get(key)
            if cached is None:
                version = db.session.get(ModelVersion, version_id)
                cached = (version.version, load_model(version))
                _models[key] = cached
    return cached


# --- the figures --------------------------------------------------------------------------------


def _exposed(experiment: Experiment) -> list:
    """The experiment's exposures in its current phase (see `raise_share`)."""
    return [
        Prediction.experiment_id == experiment.id,
        Prediction.created_at >= experiment.phase_started_at,
    ]


def _unit_rows(experiment: Experiment) -> dict[str, dict[str, dict[str, list]]]:
    """Per arm, per metric: the per-unit numerators and denominators, as two lists."""
    served = db.session.execute(
        select(
            Prediction.arm,
            Prediction.unit,
            func.count(),
            func.count(Item.label),
            func.sum(case((Item.label == Prediction.label, 1), else_=0)),
        )
        .join(Item, Item.id == Prediction.item_id)
        .where(*_exposed(experiment), Prediction.unit.is_not(None))
        .group_by(Prediction.arm, Prediction.unit)
    ).all()
    verdicts: dict[int, tuple[str, str, str]] = {}
    for prediction_id, arm, unit, predicted, correct, label in db.session.execute(
        select(
            Prediction.id,
            Prediction.arm,
            Prediction.unit,
            Prediction.label,
            Feedback.correct,
            Feedback.label,
        )
        .join(Feedback, Feedback.prediction_id == Prediction.id)
        .where(*_exposed(experiment), Prediction.unit.is_not(None))
        .order_by(Feedback.id)
    ):
        # A prediction's latest feedback is its verdict.
        verdicts[prediction_id] = (
            arm,
            unit,
            window_stats.feedback_verdict(predicted, correct, label),
        )
    feedback: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for arm, unit, verdict in verdicts.values():
        if verdict == "accepted":
            feedback[arm, unit][0] += 1
        elif verdict == "corrected":
            feedback[arm, unit][1] += 1
    out = {arm: {metric: {"num": [], "den": []} for metric in stats.METRICS} for arm in stats.ARMS}
    for arm, unit, n_served, n_labeled, n_correct in served:
        if arm not in out:
            continue
        accepted, corrected = feedback.get((arm, unit), (0, 0))
        for metric, num, den in (
            ("accuracy", n_correct or 0, n_labeled),
            ("acceptance_rate", accepted, n_served),
            ("correction_rate", corrected, accepted + corrected),
        ):
            out[arm][metric]["num"].append(num)
            out[arm][metric]["den"].append(den)
    return out


def _round(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def analyze(experiment: Experiment, now: datetime | None = None) -> dict:
    """The experiment's figures now, and what its rule would decide (nothing is written)."""
    now = now or utcnow()
    elapsed = (now - experiment.started_at).total_seconds()
    exposures = dict(
        db.session.execute(
            select(Prediction.arm, func.count())
            .where(*_exposed(experiment))
            .group_by(Prediction.arm)
        ).all()
    )
    if experiment.mode == ExperimentMode.SHADOW:
        return _round(_analyze_shadow(experiment, exposures, elapsed))
    rows = _unit_rows(experiment)
    metrics = {
        arm: {
            metric: stats.ratio_summary(
                np.asarray(parts["num"], dtype=float),
                np.asarray(parts["den"], dtype=float),
                experiment.alpha,
            )
            for metric, parts in per_metric.items()
        }
        for arm, per_metric in rows.items()
    }
    units = [len(rows[arm]["accuracy"]["num"]) for arm in stats.ARMS]
    srm = stats.srm_test(units, [1 - experiment.share, experiment.share])
    primary = stats.compare(
        metrics[Arm.CHAMPION][experiment.primary_metric],
        metrics[Arm.CHALLENGER][experiment.primary_metric],
        experiment.primary_metric,
        experiment.alpha,
    )
    guardrails = [
        stats.compare(
            metrics[Arm.CHAMPION][name], metrics[Arm.CHALLENGER][name], name, experiment.alpha
        )
        for name in experiment.guardrails
    ]
    proposal = stats.decide(
        primary,
        guardrails,
        units=units,
        min_units=experiment.min_units,
        mde=experiment.mde,
        elapsed_seconds=elapsed,
        max_seconds=experiment.max_seconds,
        srm=srm,
    )
    return _round(
        {
            "mode": experiment.mode,
            "elapsed_seconds": elapsed,
            "units": dict(zip(stats.ARMS, units, strict=True)),
            "exposures": {arm: int(exposures.get(arm, 0)) for arm in stats.ARMS},
            "metrics": metrics,
            "primary": primary,
            "guardrails": guardrails,
            "srm": srm,
            "proposal": proposal,
        }
    )


def _analyze_shadow(experiment: Experiment, exposures: dict, elapsed: float) -> dict:
    """Shadow mode: how often the challenger agrees with the champion, and both models'
    accuracy on the same labeled items (paired: McNemar's exact test)."""
    rows = db.session.execute(
        select(Prediction.label, ShadowPrediction.label, Item.label)
        .join(ShadowPrediction, ShadowPrediction.prediction_id == Prediction.id)
        .join(Item, Item.id == Prediction.item_id)
        .where(Prediction.experiment_id == experiment.id)
    ).all()
    scored = len(rows)
    agree = sum(champ == chall for champ, chall, _ in rows)
    labeled = [(champ, chall, truth) for champ, chall, truth in rows if truth is not None]
    champ_ok = [champ == truth for champ, _, truth in labeled]
    chall_ok = [chall == truth for _, chall, truth in labeled]

    def rate(k: int, n: int) -> dict:
        lo, hi = wilson_interval(k, n, experiment.alpha) if n else (None, None)
        return {"n": n, "k": k, "value": k / n if n else None, "lo": lo, "hi": hi}

    paired = mcnemar_exact(chall_ok, champ_ok) if labeled else None
    expired = experiment.max_seconds is not None and elapsed >= experiment.max_seconds
    return {
        "mode": experiment.mode,
        "elapsed_seconds": elapsed,
        "exposures": {arm: int(exposures.get(arm, 0)) for arm in stats.ARMS},
        "shadow": {
            "scored": scored,
            "pending": max(0, int(exposures.get(Arm.CHAMPION, 0)) - scored),
            "agreement": rate(agree, scored),
            "accuracy": {
                Arm.CHAMPION: rate(sum(champ_ok), len(labeled)),
                Arm.CHALLENGER: rate(sum(chall_ok), len(labeled)),
            },
            "mcnemar": paired,
        },
        "proposal": {
            "action": ExperimentDecision.KEEP if expired else "continue",
            "reasons": (
                ["The maximum duration passed; a shadow experiment never promotes by itself."]
                if expired
                else ["A shadow experiment reports; an engineer decides."]
            ),
            "error_rates": "",
        },
    }


# --- deciding -----------------------------------------------------------------------------------


def summary(experiment: Experiment) -> dict:
    """The experiment as webhooks and the API's list name it."""
    versions = {
        v.id: v.version
        for v in db.session.scalars(
            select(ModelVersion).where(
                ModelVersion.id.in_(
                    [experiment.champion_version_id, experiment.challenger_version_id]
                )
            )
        )
    }
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "status": experiment.status,
        "mode": experiment.mode,
        "champion_version": versions.get(experiment.champion_version_id),
        "challenger_version": versions.get(experiment.challenger_version_id),
        "share": experiment.share,
        "decision": experiment.decision,
        "decided_by": experiment.decided_by,
        "reasons": list(experiment.reasons or []),
    }


def _version(version_id: int | None) -> ModelVersion | None:
    """A version by id; None for none (a deleted version's id is set to null)."""
    return None if version_id is None else db.session.get(ModelVersion, version_id)


def _lock(experiment: Experiment) -> Experiment:
    """Re-read the experiment's row under a lock (PostgreSQL), so a person's stop and the
    job's decision cannot both apply. The project's registry lock comes first, in the order
    every registry change takes them (`registry.lock_project`)."""
    registry.lock_project(experiment.project_id)
    db.session.refresh(experiment, with_for_update=True)
    return experiment


def _carry_out(experiment: Experiment, decision: str, actor: str, reason: str) -> list[str]:
    """Move the registry as `decision` says; return what was done, in words."""
    project = db.session.get(Project, experiment.project_id)
    challenger = _version(experiment.challenger_version_id)
    champion = _version(experiment.champion_version_id)
    done = []
    if decision == ExperimentDecision.PROMOTE:
        if challenger is None:
            raise Conflict("The challenger version no longer exists.")
        if challenger.status != ModelStatus.CHAMPION:
            registry.promote(challenger, actor, reason)
            done.append(f"Version {challenger.version} was promoted to champion.")
    elif challenger is not None and challenger.status == ModelStatus.CHAMPION:
        # Undoing a promotion this experiment made: bring its champion back.
        event = registry.rollback(project, actor, reason, to_version=champion)
        done.append(f"Version {_version(event.model_version_id).version} is the champion again.")
        if decision == ExperimentDecision.ROLLBACK:
            db.session.refresh(challenger)
    if (
        decision == ExperimentDecision.ROLLBACK
        and challenger is not None
        and challenger.status in registry.MAY_REJECT
    ):
        registry.reject(challenger, actor, reason)
        done.append(f"Version {challenger.version} was rejected.")
    return done


def _record_decision(
    experiment: Experiment, decision: str, decided_by: str, reasons: list[str], now: datetime
) -> None:
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = experiment.stopped_at or now
    experiment.decision = decision
    experiment.decided_by = decided_by[:64]
    experiment.reasons = list(experiment.reasons or []) + reasons
    db.session.flush()
    webhooks.emit(experiment.project_id, WebhookEvent.EXPERIMENT_DECIDED, summary(experiment))


def stop(experiment: Experiment, actor: str, decision: str, reason: str) -> Experiment:
    """An engineer stops a running experiment with a decision (promote, keep or rollback)."""
    reason = registry.check_reason(reason)
    _check_decision(decision)
    experiment = _lock(experiment)
    if experiment.status != ExperimentStatus.RUNNING:
        raise Conflict(
            f"Experiment {experiment.id} is already stopped ({experiment.decision}): override "
            "its decision instead."
        )
    done = _carry_out(experiment, decision, actor, reason)
    _record_decision(
        experiment, decision, actor, [f"Stopped by {actor}: {reason}", *done], utcnow()
    )
    return experiment


def override(experiment: Experiment, actor: str, decision: str, reason: str) -> Experiment:
    """An engineer replaces a stopped experiment's decision with another, through the
    registry (overriding a promotion rolls the champion back)."""
    reason = registry.check_reason(reason)
    _check_decision(decision)
    experiment = _lock(experiment)
    if experiment.status == ExperimentStatus.RUNNING:
        raise Conflict(f"Experiment {experiment.id} is running: stop it with a decision instead.")
    if decision == experiment.decision:
        raise Conflict(f"Experiment {experiment.id} already decided {decision}.")
    done = _carry_out(experiment, decision, actor, reason)
    previous = experiment.decision
    _record_decision(
        experiment,
        decision,
        actor,
        [f"{actor} overrode {previous} with {decision}: {reason}", *done],
        utcnow(),
    )
    return experiment


def _check_decision(decision: str) -> None:
    allowed = (ExperimentDecision.PROMOTE, ExperimentDecision.KEEP, ExperimentDecision.ROLLBACK)
    if decision not in allowed:
        raise ValidationError({"decision": "must be promote, keep or rollback"})


def _srm_alert(experiment: Experiment, srm: dict, now: datetime) -> None:
    """Raise the sample-ratio-mismatch alert, once per experiment."""
    if experiment.srm_alert_id is not None:
        return
    message = (
        f"Experiment {experiment.name!r}: sample ratio mismatch, units per arm "
        f"{srm['counts'][0]} vs {srm['counts'][1]} against a {1 - experiment.share:.0%}/"
        f"{experiment.share:.0%} split (chi-square p = {srm['p_value']:.2g} < "
        f"{srm['alpha']}). Assignment or logging is broken; its automatic decisions are held."
    )
    alert = Alert(
        project_id=experiment.project_id,
        state=AlertState.FIRING,
        metric="experiment.srm",
        message=message,
        value=float(srm["p_value"]),
        threshold=float(srm["alpha"]),
        window_start=experiment.started_at,
        window_end=now,
        fired_at=now,
    )
    db.session.add(alert)
    db.session.flush()
    experiment.srm_alert_id = alert.id
    webhooks.emit(
        experiment.project_id,
        "alert.firing",
        {
            "alert_id": alert.id,
            "rule": None,
            "metric": alert.metric,
            "comparison": "<",
            "threshold": alert.threshold,
            "value": alert.value,
            "window_start": experiment.started_at.isoformat() + "Z",
            "window_end": now.isoformat() + "Z",
            "message": message,
            "experiment_id": experiment.id,
            "retrain_run_id": None,
        },
    )


def _evidence(figures: dict) -> tuple:
    """What a look was computed from: the exposures, units and every metric's sums."""
    return tuple(
        repr(figures.get(key)) for key in ("exposures", "units", "metrics", "shadow", "mode")
    )


@unit_of_work
def step(experiment_id: int, now: datetime | None = None) -> str | None:
    """One look at a running experiment: analyze, store the look, raise an SRM alert, and
    carry out the rule's decision. Returns the action taken (None if it is not running)."""
    now = now or utcnow()
    experiment = db.session.get(Experiment, experiment_id)
    if experiment is None:
        return None
    experiment = _lock(experiment)
    if experiment.status != ExperimentStatus.RUNNING:
        db.session.commit()
        return None
    figures = analyze(experiment, now)
    previous = experiment.analysis
    experiment.analysis, experiment.analyzed_at = figures, now
    if previous is None or _evidence(previous) != _evidence(figures):
        # A look is kept only when something new came in: the clock looks every tick.
        db.session.add(ExperimentLook(experiment_id=experiment.id, at=now, figures=figures))
    if (figures.get("srm") or {}).get("mismatch"):
        _srm_alert(experiment, figures["srm"], now)
    proposal = figures["proposal"]
    action = proposal["action"]
    if action != "continue":
        reasons = list(proposal["reasons"])
        if proposal.get("error_rates"):
            reasons.append(proposal["error_rates"])
        try:
            with db.session.begin_nested():
                reasons += _carry_out(experiment, action, actor_of(experiment), reasons[0])
        except Conflict as exc:
            reasons.append(f"The registry refused: {exc}")
            action = ExperimentDecision.SUPERSEDED
        _record_decision(experiment, action, AUTO, reasons, now)
    db.session.commit()
    return action


# --- shadow mode --------------------------------------------------------------------------------


@unit_of_work
def score_shadow(experiment_id: int, batch: int = SHADOW_BATCH) -> int:
    """Score the shadow experiment's new requests with the challenger; how many were scored.

    Reads from the experiment's high-water mark on, a batch at a time, each batch its own
    commit: a job cut short loses nothing, and the next one goes on from where it stopped.
    """
    experiment = db.session.get(Experiment, experiment_id)
    if experiment is None or experiment.mode != ExperimentMode.SHADOW:
        return 0
    project = db.session.get(Project, experiment.project_id)
    _number, model = model_of(experiment.challenger_version_id)
    labels = list(project.labels)
    done = 0
    while True:
        rows = db.session.execute(
            select(Prediction.id, Item.data)
            .join(Item, Item.id == Prediction.item_id)
            .where(
                Prediction.experiment_id == experiment.id,
                Prediction.id > experiment.shadow_high_water,
            )
            .order_by(Prediction.id)
            .limit(batch)
        ).all()
        if not rows:
            break
        X = to_matrix(project.kind, [data for _, data in rows], project.features)
        proba = predict_proba_for(model, X, labels)
        db.session.add_all(
            ShadowPrediction(
                prediction_id=prediction_id,
                experiment_id=experiment.id,
                label=labels[int(p.argmax())],
                probabilities={lab: round(float(v), 6) for lab, v in zip(labels, p, strict=True)},
            )
            for (prediction_id, _), p in zip(rows, proba, strict=True)
        )
        experiment.shadow_high_water = rows[-1][0]
        db.session.commit()
        done += len(rows)
    return done


# --- reading ------------------------------------------------------------------------------------


def looks(experiment: Experiment, limit: int = LOOKS_SHOWN) -> list[ExperimentLook]:
    """The experiment's newest looks, oldest first."""
    rows = db.session.scalars(
        select(ExperimentLook)
        .where(ExperimentLook.experiment_id == experiment.id)
        .order_by(ExperimentLook.id.desc())
        .limit(limit)
    ).all()
    return rows[::-1]


def request_steps() -> int:
    """Enqueue a look at every running experiment (and its shadow scoring) unless one waits;
    how many jobs were enqueued. The clock calls this each tick."""
    count = 0
    for experiment_id, mode in db.session.execute(
        select(Experiment.id, Experiment.mode).where(Experiment.status == ExperimentStatus.RUNNING)
    ).all():
        todo = [(ANALYZE_JOB, f"experiment-{experiment_id}")]
        if mode == ExperimentMode.SHADOW:
            todo.insert(0, (SHADOW_JOB, f"shadow-{experiment_id}"))
        for func_path, job_id in todo:
            if jobs.job_status(job_id) == "queued":
                continue
            count += jobs.enqueue(func_path, experiment_id, job_id=job_id) is not None
    return count


def elapsed_text(seconds: float) -> str:
    """`3 d 4 h`, `5 h 2 min`, `40 min`: how long an experiment has run."""
    delta = timedelta(seconds=int(seconds))
    days, rest = delta.days, delta.seconds
    hours, minutes = rest // 3600, rest % 3600 // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
