"""A/B experiments over the API: start one, read them, stop one with a decision, override."""

from __future__ import annotations

from flask import g
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from labeling import experiments as stats

from .. import abtests, registry
from .. import fields as f
from ..enums import ExperimentDecision, ExperimentMode, ExperimentStatus
from ..errors import NotFound, ValidationError
from ..extensions import db
from ..models import Experiment, ModelVersion, Project
from .common import (
    BODY_ERRORS,
    DATE_TIME,
    Blueprint,
    created,
    scoped,
    timestamp,
    with_project,
)

blp = Blueprint("experiments", __name__, description="A/B experiments: champion vs challenger.")

EXPERIMENT = [{"in": "path", "name": "experiment_id", "description": "An experiment's id."}]
METRIC_NAMES = tuple(stats.METRICS)
METRICS_TEXT = "; ".join(f"`{name}`: {text}" for name, (_, text) in stats.METRICS.items())
DECISIONS = (ExperimentDecision.PROMOTE, ExperimentDecision.KEEP, ExperimentDecision.ROLLBACK)


class ExperimentRequest(Schema):
    """The experiment's design, fixed for its life."""

    challenger_version = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "The version to test; by default the registry's challenger."},
    )
    share = fields.Float(
        load_default=0.5,
        validate=validate.Range(0, 1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "The challenger's share of units, between 0 and 1."},
    )
    mode = f.enum(
        ExperimentMode,
        load_default=ExperimentMode.AB,
        metadata={
            "description": (
                "`ab`: the challenger serves its share of units; `shadow`: it scores every "
                "request in the background and serves none."
            )
        },
    )
    primary_metric = fields.String(
        load_default="accuracy",
        validate=validate.OneOf(METRIC_NAMES),
        metadata={"description": f"The metric that decides. {METRICS_TEXT}."},
    )
    guardrails = fields.List(
        fields.String(validate=validate.OneOf(METRIC_NAMES)),
        load_default=lambda: ["correction_rate"],
        validate=validate.Length(max=len(METRIC_NAMES)),
        metadata={"description": "Metrics the challenger must not make significantly worse."},
    )
    alpha = fields.Float(
        load_default=0.05,
        validate=validate.Range(0, 0.5, min_inclusive=False, max_inclusive=False),
        metadata={"description": "The false-positive rate, valid under continuous looks."},
    )
    mde = fields.Float(
        load_default=0.03,
        validate=validate.Range(0, 1, min_inclusive=False, max_inclusive=False),
        metadata={
            "description": (
                "The smallest difference worth finding, in the metric's units (0.03: 3 points). "
                "The experiment stops for futility once it is sure the challenger cannot win "
                "by this much."
            )
        },
    )
    min_units = fields.Integer(
        load_default=100,
        validate=validate.Range(1, 10**9),
        metadata={"description": "Units per arm before the primary metric may decide."},
    )
    max_days = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, abtests.MAX_DAYS, min_inclusive=False),
        metadata={"description": "Keep the champion when no decision came after this long."},
    )
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 100))


class ShareRequest(Schema):
    """A higher share for the challenger."""

    share = fields.Float(
        required=True,
        validate=validate.Range(0, 1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "Above the current share: units only move to the challenger."},
    )


class DecisionRequest(Schema):
    """An engineer's decision, and why."""

    decision = fields.String(
        load_default=ExperimentDecision.KEEP,
        validate=validate.OneOf(DECISIONS),
        metadata={
            "description": (
                "`promote` the challenger, `keep` the champion, or `rollback` (reject the "
                "challenger)."
            )
        },
    )
    reason = fields.String(
        required=True,
        validate=validate.Length(1, registry.MAX_REASON),
        metadata={"description": f"Why (1 to {registry.MAX_REASON} characters)."},
    )


class ExperimentOut(Schema):
    """One experiment: its design, where it is, and its latest look."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    status = f.enum(ExperimentStatus, required=True)
    mode = f.enum(ExperimentMode, required=True)
    champion_version = fields.Integer(required=True, allow_none=True)
    challenger_version = fields.Integer(required=True, allow_none=True)
    share = fields.Float(required=True)
    primary_metric = fields.String(required=True)
    guardrails = fields.List(fields.String(), required=True)
    alpha = fields.Float(required=True)
    mde = fields.Float(required=True)
    min_units = fields.Integer(required=True)
    max_days = fields.Float(required=True, allow_none=True)
    design = fields.Dict(
        required=True,
        metadata={"description": "The units the design needs for 80% power at `mde`."},
    )
    created_by = fields.String(required=True)
    started_at = fields.String(required=True, metadata=DATE_TIME)
    phase = fields.Integer(
        required=True, metadata={"description": "1, and one more each time the share rose."}
    )
    phase_started_at = fields.String(
        required=True,
        metadata={**DATE_TIME, "description": "The analysis reads exposures since then."},
    )
    stopped_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    decision = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "`promote`, `keep`, `rollback` or `superseded`."},
    )
    decided_by = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "`auto` (the experiment's rule) or who stopped it."},
    )
    reasons = fields.List(fields.String(), required=True)
    analysis = fields.Dict(
        required=True,
        allow_none=True,
        metadata={
            "description": (
                "The latest look: units and exposures per arm, every metric per arm with its "
                "interval, the primary and guardrail comparisons (difference, its "
                "always-valid confidence sequence and p-value, and the fixed-horizon ones for "
                "comparison), the sample-ratio-mismatch test, and the rule's proposal. Shadow "
                "experiments: agreement and both models' accuracy on the same labeled items."
            )
        },
    )
    analyzed_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)


class Look(Schema):
    """One earlier look: the primary comparison then."""

    at = fields.String(required=True, metadata=DATE_TIME)
    units = fields.Dict(required=True)
    primary = fields.Dict(required=True, allow_none=True)
    srm_p_value = fields.Float(required=True, allow_none=True)


class ExperimentDetail(ExperimentOut):
    """One experiment with its looks over time (the sequential boundary's history)."""

    looks = fields.List(
        fields.Nested(Look), required=True, metadata={"description": "Oldest first."}
    )


class ExperimentList(Schema):
    """The project's experiments, newest first."""

    experiments = fields.List(fields.Nested(ExperimentOut), required=True)


def body(experiment: Experiment) -> dict:
    """An experiment as the API shows it."""
    numbers = dict(
        db.session.execute(
            select(ModelVersion.id, ModelVersion.version).where(
                ModelVersion.id.in_(
                    [experiment.champion_version_id, experiment.challenger_version_id]
                )
            )
        ).all()
    )
    return {
        "id": experiment.id,
        "name": experiment.name,
        "status": experiment.status,
        "mode": experiment.mode,
        "champion_version": numbers.get(experiment.champion_version_id),
        "challenger_version": numbers.get(experiment.challenger_version_id),
        "share": experiment.share,
        "primary_metric": experiment.primary_metric,
        "guardrails": list(experiment.guardrails or []),
        "alpha": experiment.alpha,
        "mde": experiment.mde,
        "min_units": experiment.min_units,
        "max_days": None if experiment.max_seconds is None else experiment.max_seconds / 86400,
        "design": abtests.design_power(experiment),
        "created_by": experiment.created_by,
        "started_at": timestamp(experiment.started_at),
        "phase": experiment.phase,
        "phase_started_at": timestamp(experiment.phase_started_at),
        "stopped_at": timestamp(experiment.stopped_at),
        "decision": experiment.decision,
        "decided_by": experiment.decided_by,
        "reasons": list(experiment.reasons or []),
        "analysis": experiment.analysis,
        "analyzed_at": timestamp(experiment.analyzed_at),
    }


def _find(project: Project, experiment_id: int) -> Experiment:
    experiment = db.session.get(Experiment, experiment_id)
    if experiment is None or experiment.project_id != project.id:
        raise NotFound(f"There is no experiment {experiment_id} in project {project.slug!r}.")
    return experiment


@blp.route("/projects/<slug>/experiments", methods=["POST"])
@scoped(
    "admin",
    "Start an A/B (or shadow) experiment: the champion against the challenger on a sticky, "
    "salted-hash split of `unit`s. The design is fixed from now on. 409 when the project has "
    "no champion, no challenger, or a running experiment already.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(ExperimentRequest, arg_name="payload", description="The design.")
@blp.response(201, ExperimentOut, description="The experiment, running.")
def start_experiment(project: Project, payload: dict):
    """Start an experiment."""
    challenger = None
    if payload["challenger_version"] is not None:
        challenger = db.session.scalar(
            select(ModelVersion).where(
                ModelVersion.project_id == project.id,
                ModelVersion.version == payload["challenger_version"],
            )
        )
        if challenger is None:
            raise ValidationError(
                {"challenger_version": f"there is no version {payload['challenger_version']}"}
            )
    experiment = abtests.start(
        project,
        g.api_key.annotator,
        challenger=challenger,
        share=payload["share"],
        mode=payload["mode"],
        primary_metric=payload["primary_metric"],
        guardrails=payload["guardrails"],
        alpha=payload["alpha"],
        mde=payload["mde"],
        min_units=payload["min_units"],
        max_days=payload["max_days"],
        name=payload["name"],
    )
    db.session.commit()
    return created(
        body(experiment),
        location=f"/api/v1/projects/{project.slug}/experiments/{experiment.id}",
    )


@blp.route("/projects/<slug>/experiments")
@scoped("admin", "The project's experiments, newest first.", errors=(404,))
@with_project
@blp.response(200, ExperimentList, description="The experiments.")
def list_experiments(project: Project):
    """List experiments."""
    rows = db.session.scalars(
        select(Experiment).where(Experiment.project_id == project.id).order_by(Experiment.id.desc())
    ).all()
    return {"experiments": [body(e) for e in rows]}


@blp.route("/projects/<slug>/experiments/<id32:experiment_id>", parameters=EXPERIMENT)
@scoped(
    "admin",
    "One experiment: its design, its latest look (per-arm metrics with intervals, the "
    "sequential test, the SRM check, the rule's proposal), its decision and reasons, and the "
    "primary comparison at every look so far.",
    errors=(404,),
)
@with_project
@blp.response(200, ExperimentDetail, description="The experiment.")
def show_experiment(project: Project, experiment_id: int):
    """Show an experiment."""
    experiment = _find(project, experiment_id)
    out = body(experiment)
    out["looks"] = [
        {
            "at": timestamp(look.at),
            "units": look.figures.get("units") or look.figures.get("exposures") or {},
            "primary": look.figures.get("primary"),
            "srm_p_value": (look.figures.get("srm") or {}).get("p_value"),
        }
        for look in abtests.looks(experiment)
    ]
    return out


@blp.route(
    "/projects/<slug>/experiments/<id32:experiment_id>", methods=["PATCH"], parameters=EXPERIMENT
)
@scoped(
    "admin",
    "Raise a running A/B experiment's challenger share (a ramp): units only move from the "
    "champion to the challenger, never back, and a new phase starts whose exposures alone "
    "the analysis reads. 422 for a share that is not higher; 409 unless it runs in `ab` mode.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(ShareRequest, arg_name="payload", description="The new share.")
@blp.response(200, ExperimentOut, description="The experiment, in its new phase.")
def raise_share(project: Project, experiment_id: int, payload: dict):
    """Raise the challenger's share."""
    experiment = _find(project, experiment_id)
    abtests.raise_share(experiment, payload["share"], g.api_key.annotator)
    db.session.commit()
    return body(experiment)


@blp.route(
    "/projects/<slug>/experiments/<id32:experiment_id>/stop",
    methods=["POST"],
    parameters=EXPERIMENT,
)
@scoped(
    "admin",
    "Stop a running experiment with a decision: `promote` the challenger, `keep` the champion "
    "(the default), or `rollback` (reject the challenger). It goes through the registry like a "
    "manual change. 409 if it is stopped already.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(DecisionRequest, arg_name="payload", description="The decision and why.")
@blp.response(200, ExperimentOut, description="The experiment, stopped.")
def stop_experiment(project: Project, experiment_id: int, payload: dict):
    """Stop an experiment."""
    experiment = _find(project, experiment_id)
    abtests.stop(experiment, g.api_key.annotator, payload["decision"], payload["reason"])
    db.session.commit()
    return body(experiment)


@blp.route(
    "/projects/<slug>/experiments/<id32:experiment_id>/override",
    methods=["POST"],
    parameters=EXPERIMENT,
)
@scoped(
    "admin",
    "Replace a stopped experiment's decision: overriding a promotion rolls the champion back, "
    "overriding a keep or a rollback promotes the challenger. 409 while it runs.",
    errors=(404, 409, *BODY_ERRORS),
)
@with_project
@blp.arguments(DecisionRequest, arg_name="payload", description="The decision and why.")
@blp.response(200, ExperimentOut, description="The experiment, with the new decision.")
def override_experiment(project: Project, experiment_id: int, payload: dict):
    """Override an experiment's decision."""
    experiment = _find(project, experiment_id)
    abtests.override(experiment, g.api_key.annotator, payload["decision"], payload["reason"])
    db.session.commit()
    return body(experiment)
