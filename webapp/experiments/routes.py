"""Views: a project's experiments with the form that starts one, and an experiment's page (its
arms, traffic, metrics with intervals, the sequential boundary over its looks, the SRM check,
its decision and reasons) with the stop and override forms. The figures refresh by htmx."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from labeling import experiments as stats

from .. import abtests, registry
from ..auth.routes import role_required
from ..enums import ExperimentMode, ExperimentStatus, ModelStatus, Role
from ..errors import Conflict, ValidationError
from ..extensions import db
from ..models import Experiment, ModelVersion, Project
from ..monitor.routes import project_or_404
from . import bp, chart

DECISIONS = ("promote", "keep", "rollback")
# The form's fields and their defaults (the API's).
DEFAULTS = {
    "challenger_version": "",
    "share": "0.5",
    "mode": ExperimentMode.AB,
    "primary_metric": "accuracy",
    "guardrails": ["correction_rate"],
    "alpha": "0.05",
    "mde": "0.03",
    "min_units": "100",
    "max_days": "",
    "name": "",
}


def _versions(project: Project) -> list[ModelVersion]:
    """The versions that may be tested against the champion, the challenger first."""
    rows = db.session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project.id, ModelVersion.status != ModelStatus.CHAMPION)
        .order_by(ModelVersion.version.desc())
    ).all()
    return sorted(rows, key=lambda v: v.status != ModelStatus.CHALLENGER)


def _numbers(project: Project) -> dict[int, int]:
    return dict(
        db.session.execute(
            select(ModelVersion.id, ModelVersion.version).where(
                ModelVersion.project_id == project.id
            )
        ).all()
    )


def _index(project: Project, form: dict, errors: dict, status: int = 200):
    experiments = db.session.scalars(
        select(Experiment).where(Experiment.project_id == project.id).order_by(Experiment.id.desc())
    ).all()
    return (
        render_template(
            "experiments/index.html",
            project=project,
            experiments=experiments,
            numbers=_numbers(project),
            versions=_versions(project),
            champion=registry.champion(project),
            running=next((e for e in experiments if e.status == ExperimentStatus.RUNNING), None),
            metrics=stats.METRICS,
            form=form,
            errors=errors,
        ),
        status,
    )


@bp.get("/projects/<slug>/experiments")
@role_required(Role.REVIEWER, Role.ENGINEER)
def index(slug: str):
    """The project's experiments, newest first, and the form that starts one."""
    return _index(project_or_404(slug), dict(DEFAULTS), {})


def _number(form: dict, key: str, kind, errors: dict, optional: bool = False):
    raw = (form.get(key) or "").strip()
    if not raw and optional:
        return None
    try:
        return kind(raw)
    except ValueError:
        errors[key] = "must be a number" if kind is float else "must be a whole number"
        return None


@bp.post("/projects/<slug>/experiments")
@role_required(Role.ENGINEER)
def start(slug: str):
    """Start an experiment from the form; the form comes back with the message on bad input."""
    project = project_or_404(slug)
    form = {key: request.form.get(key, "") for key in DEFAULTS}
    form["guardrails"] = request.form.getlist("guardrails")
    errors: dict[str, str] = {}
    challenger = None
    number = _number(form, "challenger_version", int, errors, optional=True)
    if number is not None:
        challenger = db.session.scalar(
            select(ModelVersion).where(
                ModelVersion.project_id == project.id, ModelVersion.version == number
            )
        )
        if challenger is None:
            errors["challenger_version"] = f"there is no version {number}"
    design = {
        "share": _number(form, "share", float, errors),
        "alpha": _number(form, "alpha", float, errors),
        "mde": _number(form, "mde", float, errors),
        "min_units": _number(form, "min_units", int, errors),
        "max_days": _number(form, "max_days", float, errors, optional=True),
    }
    if not errors:
        try:
            experiment = abtests.start(
                project,
                current_user.annotator,
                challenger=challenger,
                mode=form["mode"],
                primary_metric=form["primary_metric"],
                guardrails=form["guardrails"],
                name=form["name"].strip() or None,
                **design,
            )
        except ValidationError as exc:
            db.session.rollback()
            errors.update(exc.errors)
        except Conflict as exc:
            db.session.rollback()
            errors["form"] = exc.detail
        else:
            db.session.commit()  # services flush, the view commits (webapp/transaction.py)
            flash(f"Experiment #{experiment.id} started: {experiment.name}.")
            return redirect(url_for(".show", slug=project.slug, experiment_id=experiment.id))
    return _index(project, form, errors, status=422)


def _experiment_or_404(project: Project, experiment_id: int) -> Experiment:
    experiment = db.session.get(Experiment, experiment_id)
    if experiment is None or experiment.project_id != project.id:
        abort(404, f"There is no experiment {experiment_id} in this project.")
    return experiment


def _context(project: Project, experiment: Experiment) -> dict:
    numbers = _numbers(project)
    looks = abtests.looks(experiment)
    return {
        "project": project,
        "experiment": experiment,
        "champion_version": numbers.get(experiment.champion_version_id),
        "challenger_version": numbers.get(experiment.challenger_version_id),
        "analysis": experiment.analysis or {},
        "design": abtests.design_power(experiment),
        "plot": chart.lift_plot(looks, experiment.mde),
        "arms_plot": chart.arms_plot(looks, experiment.primary_metric),
        "looks": len(looks),
        "metrics": stats.METRICS,
        "decisions": DECISIONS,
        "max_reason": registry.MAX_REASON,
        "elapsed": abtests.elapsed_text,
    }


@bp.get("/projects/<slug>/experiments/<int:experiment_id>")
@role_required(Role.REVIEWER, Role.ENGINEER)
def show(slug: str, experiment_id: int):
    """An experiment's page; htmx polls its figures while it runs."""
    project = project_or_404(slug)
    experiment = _experiment_or_404(project, experiment_id)
    template = "experiments/experiment.html"
    if request.headers.get("HX-Request") == "true":
        template = "experiments/_figures.html"
    return render_template(template, **_context(project, experiment))


def _decide(slug: str, experiment_id: int, change, done: str):
    project = project_or_404(slug)
    experiment = _experiment_or_404(project, experiment_id)
    decision = request.form.get("decision", "")
    reason = request.form.get("reason", "")
    try:
        change(experiment, current_user.annotator, decision, reason)
    except (Conflict, ValidationError) as exc:
        db.session.rollback()
        detail = next(iter(exc.errors.values())) if exc.errors else exc.detail
        flash(f"Nothing changed: {detail}", "error")
    else:
        db.session.commit()
        flash(done.format(decision=decision))
    return redirect(url_for(".show", slug=project.slug, experiment_id=experiment_id))


@bp.post("/projects/<slug>/experiments/<int:experiment_id>/share")
@role_required(Role.ENGINEER)
def share(slug: str, experiment_id: int):
    """Raise a running A/B experiment's challenger share."""
    project = project_or_404(slug)
    experiment = _experiment_or_404(project, experiment_id)
    try:
        value = float(request.form.get("share", ""))
    except ValueError:
        flash("Nothing changed: share must be a number", "error")
    else:
        try:
            abtests.raise_share(experiment, value, current_user.annotator)
        except (Conflict, ValidationError) as exc:
            db.session.rollback()
            detail = next(iter(exc.errors.values())) if exc.errors else exc.detail
            flash(f"Nothing changed: share {detail}", "error")
        else:
            db.session.commit()
            flash(
                f"The challenger now serves {value:.0%} of units; phase {experiment.phase} began."
            )
    return redirect(url_for(".show", slug=project.slug, experiment_id=experiment_id))


@bp.post("/projects/<slug>/experiments/<int:experiment_id>/stop")
@role_required(Role.ENGINEER)
def stop(slug: str, experiment_id: int):
    """Stop a running experiment with the engineer's decision."""
    return _decide(slug, experiment_id, abtests.stop, "Stopped: {decision}.")


@bp.post("/projects/<slug>/experiments/<int:experiment_id>/override")
@role_required(Role.ENGINEER)
def override(slug: str, experiment_id: int):
    """Replace a stopped experiment's decision."""
    return _decide(slug, experiment_id, abtests.override, "Decision overridden: {decision}.")
