"""The `corrigo` command line: projects, users, API keys, imports, retrains, the model registry
and the demo.

Flask's CLI runs underneath, so `corrigo db upgrade` comes from Flask-Migrate, and
`corrigo worker` is attached from `worker/` through the `flask.commands` entry point.

Output convention: stdout carries the result a script would capture (a key, a password, a run
id, counts); notes and progress go to stderr. Bad input exits with status 2 and writes nothing.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from itertools import islice

import click
import redis
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from tqdm import tqdm

from labeling.training import DEFAULT_TEMPLATE, TEMPLATE_KIND, TEMPLATES

from . import demo, importfile, jobs, pool, registry, settings, training
from .alerts import add_default_rules
from .commands import apikey_cli, project_cli, user_cli
from .commands import project_arg as _project
from .commands import stdin_is_tty as _stdin_is_tty
from .enums import ItemSource, Kind, RunStatus, Trigger
from .errors import Conflict, NotFound, ValidationError
from .extensions import db
from .models import KINDS, ROLES, SCOPES, ApiKey, Item, ModelVersion, Project, RetrainRun, User
from .pool import exclusion

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
MIN_PASSWORD = 8
MAX_FEATURES = 500
MAX_FEATURE_NAME = 100


def register(app: Flask) -> None:
    """Attach Corrigo's commands to the app's CLI."""
    from .admin import cli as admin_cli  # members, user and key management, the audit log

    for command in (project_cli, user_cli, apikey_cli, import_cmd, retrain_cmd, demo_cmd):
        app.cli.add_command(command)
    app.cli.add_command(item_cli)
    app.cli.add_command(model_cli)
    app.cli.add_command(admin_cli.audit_cli)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _note(message: str) -> None:
    """Tell the person at the terminal something (stderr, so stdout stays scriptable)."""
    click.echo(message, err=True)


def _split_list(value: str, option: str) -> list[str]:
    """Split a comma-separated option into stripped entries; empty or repeated ones are errors."""
    entries = [part.strip() for part in value.split(",")]
    if any(not entry for entry in entries):
        raise click.BadParameter(
            "has an empty entry (check for stray commas)", param_hint=f"'{option}'"
        )
    repeated = sorted({entry for entry in entries if entries.count(entry) > 1})
    if repeated:
        raise click.BadParameter(f"repeats {', '.join(repeated)}", param_hint=f"'{option}'")
    return entries


# ---------------------------------------------------------------------------------------------
# corrigo project


@project_cli.command("create")
@click.argument("slug")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="What items carry.")
@click.option("--labels", required=True, help="Comma-separated label set, 2 to 100 labels.")
@click.option("--features", help="Comma-separated feature names (tabular projects only).")
@click.option(
    "--template",
    type=click.Choice(sorted(TEMPLATES)),
    help="Model template; default text-logreg for text, tabular-logreg for tabular.",
)
@click.option("--name", help="Display name; defaults to the slug.")
def create_project(
    slug: str, kind: str, labels: str, features: str | None, template: str | None, name: str | None
) -> None:
    """Create a project: SLUG is its URL name (lowercase letters, digits, hyphens)."""
    if not SLUG_RE.fullmatch(slug):
        raise click.BadParameter(
            "must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit",
            param_hint="'SLUG'",
        )
    label_list = _split_list(labels, "--labels")
    if not 2 <= len(label_list) <= 100:
        raise click.BadParameter(
            f"needs 2 to 100 distinct labels, got {len(label_list)}", param_hint="'--labels'"
        )
    too_long = [label for label in label_list if len(label) > 100]
    if too_long:
        raise click.BadParameter(f"{too_long[0]!r} is over 100 characters", param_hint="'--labels'")
    unprintable = [label for label in label_list if not label.isprintable()]
    if unprintable:
        raise click.BadParameter(
            f"{unprintable[0]!r} has control characters", param_hint="'--labels'"
        )
    feature_list: list[str] = []
    if kind == Kind.TABULAR:
        if not features:
            raise click.BadParameter(
                "a tabular project needs its feature names", param_hint="'--features'"
            )
        feature_list = _split_list(features, "--features")
        if len(feature_list) > MAX_FEATURES:
            raise click.BadParameter(
                f"at most {MAX_FEATURES} features, got {len(feature_list)}",
                param_hint="'--features'",
            )
        bad = [f for f in feature_list if len(f) > MAX_FEATURE_NAME or not f.isprintable()]
        if bad:
            raise click.BadParameter(
                f"{bad[0][:40]!r}… must be at most {MAX_FEATURE_NAME} printable characters",
                param_hint="'--features'",
            )
        reserved = [f for f in feature_list if f in importfile.RESERVED_COLUMNS]
        if reserved:
            raise click.BadParameter(
                f"{reserved[0]!r} is reserved for imports; rename the feature",
                param_hint="'--features'",
            )
    elif features:
        raise click.BadParameter("only tabular projects have features", param_hint="'--features'")
    template = template or DEFAULT_TEMPLATE[kind]
    if TEMPLATE_KIND[template] != kind:
        fitting = ", ".join(t for t, k in TEMPLATE_KIND.items() if k == kind)
        raise click.BadParameter(
            f"{template} is for {TEMPLATE_KIND[template]} projects; for {kind} use {fitting}",
            param_hint="'--template'",
        )
    if name is not None and not name.strip():
        raise click.BadParameter("must not be empty", param_hint="'--name'")
    if db.session.scalar(select(Project.id).where(Project.slug == slug)) is not None:
        raise click.BadParameter(f"a project {slug!r} already exists", param_hint="'SLUG'")
    project = Project(
        slug=slug,
        name=(name or slug).strip()[:200],
        kind=kind,
        labels=label_list,
        features=feature_list,
        template=template,
        settings={},
    )
    db.session.add(project)
    db.session.flush()
    add_default_rules(project)
    db.session.commit()
    click.echo(f"Created project {slug} ({kind}, {len(label_list)} labels, template {template}).")


@project_cli.command("settings")
@click.argument("slug")
@click.argument("changes", nargs=-1, metavar="[KEY=VALUE]...")
def project_settings(slug: str, changes: tuple[str, ...]) -> None:
    """Show project SLUG's settings, or change some: `corrigo project settings SLUG KEY=VALUE`.

    Keys: query_strategy, heldout_share (only before the first label), audit_share,
    retrain_every, gate.min_heldout, gate.min_delta, gate.max_class_drop, gate.min_class_support.
    """
    project = _project(slug)
    updates = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep:
            raise click.BadParameter(f"{change!r} is not KEY=VALUE", param_hint="CHANGES")
        updates[key.strip()] = value.strip()
    try:
        settings.apply(project, updates)
    except ValidationError as exc:
        raise click.BadParameter(importfile.validation_message(exc), param_hint="CHANGES") from None
    db.session.commit()
    for key, value in settings.effective(project).items():
        click.echo(f"{key}={value}")


@project_cli.command("list")
def list_projects() -> None:
    """List projects: slug, kind, item and label counts, champion version."""
    projects = db.session.scalars(select(Project).order_by(Project.slug)).all()
    if not projects:
        _note("No projects yet: create one with `corrigo project create`.")
        return
    for project in projects:
        counts = pool.counts(project)
        champion = training.champion_version(project.id)
        click.echo(
            f"{project.slug}\t{project.kind}\t{counts['items']} items\t"
            f"{counts['labeled']} labeled\t"
            f"champion {'v' + str(champion.version) if champion else '-'}"
        )


# ---------------------------------------------------------------------------------------------
# corrigo user


@user_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@click.option(
    "--generate-password",
    is_flag=True,
    help="Make up a strong password and print it (alone) on stdout.",
)
def create_user(email: str, role: str, generate_password: bool) -> None:
    """Create a login. The password comes from --generate-password, a pipe, or a prompt."""
    email = email.strip().lower()
    if len(email) > 254 or not email.isprintable() or not EMAIL_RE.fullmatch(email):
        raise click.BadParameter(f"{email[:60]!r} is not an email address", param_hint="'EMAIL'")
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise click.BadParameter(f"a user {email} already exists", param_hint="'EMAIL'")
    if generate_password:
        password = secrets.token_urlsafe(12)
    elif _stdin_is_tty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = (sys.stdin.readline() if sys.stdin else "").rstrip("\r\n")
        if not password:
            raise click.UsageError(
                "no password on standard input: pipe one in (one line), run in a terminal to "
                "be prompted, or pass --generate-password"
            )
    if len(password) < MIN_PASSWORD:
        raise click.UsageError(f"the password must be at least {MIN_PASSWORD} characters")
    user = User(email=email, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    from .auth import audit

    audit.record(audit.cli_actor(), "user.create", f"user:{user.id} {email}", role=role)
    db.session.commit()
    if generate_password:
        _note(f"Created {role} {email}; their password follows (it is not stored in clear).")
        click.echo(password)
    else:
        click.echo(f"Created {role} {email}.")


# ---------------------------------------------------------------------------------------------
# corrigo apikey


@apikey_cli.command("create")
@click.argument("slug")
@click.option(
    "--scopes",
    required=True,
    help=f"Comma-separated, from: {', '.join(SCOPES)}.",
)
@click.option("--name", default="", help="A note saying who uses the key.")
def create_apikey(slug: str, scopes: str, name: str) -> None:
    """Create an API key for project SLUG and print only the key (it is shown once)."""
    project = _project(slug)
    scope_list = _split_list(scopes, "--scopes")
    unknown = [s for s in scope_list if s not in SCOPES]
    if unknown:
        raise click.BadParameter(
            f"unknown scope {unknown[0]!r}; choose from {', '.join(SCOPES)}",
            param_hint="'--scopes'",
        )
    if len(name) > 100:
        raise click.BadParameter("must be at most 100 characters", param_hint="'--name'")
    row, plaintext = ApiKey.generate(project, scope_list, name=name)
    db.session.add(row)
    db.session.flush()
    from .auth import audit, manage

    manage.record_key_created(row, audit.cli_actor())
    db.session.commit()
    _note(
        f"Created API key {row.id} for project {slug} with scopes {', '.join(scope_list)}. "
        "Store it now: it is not shown again."
    )
    click.echo(plaintext)


# ---------------------------------------------------------------------------------------------
# corrigo import


def _known_external_ids(project: Project, external_ids: list[str]) -> set[str]:
    """Which of these external ids the project already has."""
    if not external_ids:
        return set()
    return set(
        db.session.scalars(
            select(Item.external_id).where(
                Item.project_id == project.id, Item.external_id.in_(external_ids)
            )
        )
    )


def _record_labels(project: Project, pairs: list[tuple[int, str]], annotator: str) -> int:
    """Annotate the unlabeled items among (item id, label) pairs; return how many were."""
    # An item that already has a resolved label keeps it: an expert's word beats a file's.
    return pool.label_unlabeled(project, pairs, annotator)


def _batched(rows: Iterator, size: int) -> Iterator[list]:
    """Group an iterator into lists of `size`."""
    while batch := list(islice(rows, size)):
        yield batch


@click.command("import")
@click.argument("slug")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    help="File format; by default read from the extension (.jsonl/.ndjson or .csv).",
)
@with_appcontext
def import_cmd(slug: str, file: str, fmt: str | None) -> None:
    """Import items (and optional expert labels) into project SLUG from a JSONL or CSV FILE.

    \b
    JSONL, one object a line: {"data": {...}, "external_id": "...", "label": "..."}
      (text projects may write {"text": "...", ...} for {"data": {"text": "..."}});
      a labels export (GET .../labels?format=jsonl) imports as is.
    CSV with a header: text projects a `text` column, tabular projects one column per
      feature; optional `external_id` and `label` columns.
    Every row is checked first: one bad row names its line and nothing is written.
    An external_id the project already has is not imported again. A label is recorded as
    an annotation by `import:<file name>`, unless the item already has a label.
    """
    project = _project(slug)
    try:
        fmt = importfile.format_of(file, fmt)
        total, with_label = importfile.validate_file(project, file, fmt)
    except importfile.FileError as exc:
        raise click.BadParameter(str(exc), param_hint="'FILE'") from None
    annotator = f"import:{os.path.basename(file)}"[:64]
    new = known = labeled = 0
    rows = (parsed for _, parsed in importfile.read_rows(project, file, fmt))
    with tqdm(total=total, unit="row", desc="import", file=sys.stderr, disable=None) as bar:
        for batch in _batched(rows, pool.IMPORT_BATCH):
            if any(isinstance(row, str) for row in batch):
                raise click.ClickException(f"{file} changed while it was being imported")
            seen = _known_external_ids(project, [r.external_id for r in batch if r.external_id])
            ids = [
                item_id
                for ids in pool.import_items(
                    project,
                    [{"external_id": r.external_id, "data": r.data} for r in batch],
                    source=ItemSource.IMPORT,
                    batch_size=len(batch),
                )
                for item_id in ids
            ]
            batch_known = sum(1 for r in batch if r.external_id in seen)
            known += batch_known
            new += len(batch) - batch_known
            labeled += _record_labels(
                project,
                [(i, r.label) for i, r in zip(ids, batch, strict=True) if r.label is not None],
                annotator,
            )
            bar.update(len(batch))
    if new:
        # New items get an active-learning score under the learner (before any model, the cold
        # start picks its diverse items anew).
        training.request_rescore(project)
        db.session.commit()
    summary = f"Imported {total} rows into {slug}: {new} new items, {known} already known."
    if with_label:
        summary += (
            f" Recorded {labeled} labels as {annotator}"
            f"; {with_label - labeled} items kept the label they already had."
        )
    click.echo(summary)


# ---------------------------------------------------------------------------------------------
# corrigo retrain


def _workers_listening() -> int | None:
    """How many RQ workers listen on Corrigo's queue (None if Redis cannot be asked)."""
    from rq import Worker

    try:
        return len(Worker.all(queue=jobs.get_queue()))
    except redis.RedisError:
        return None


def _report_run(run: RetrainRun) -> None:
    """Print a finished run's verdict and every gate rule's reason."""
    version = db.session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
    model = f" model v{version.version}" if version else ""
    click.echo(f"run {run.id} {run.status}: {run.decision}{model}")
    candidate = (run.metrics or {}).get("candidate") or {}
    if "macro_f1" in candidate:
        judged = {
            "cross_validation": "cross-validated",
            "heldout_since_promotion": "held-out (labeled since the champion's promotion)",
            "heldout_unseen": "held-out (audits the champion was not judged on)",
        }.get(candidate.get("judged_by"), "held-out")
        n = candidate.get("judged_n", run.heldout_size)
        click.echo(
            f"  {judged} macro-F1 {candidate['macro_f1']:.3f} on {n} items "
            f"(trained on {run.train_size})"
        )
    for reason in run.reasons or []:
        verdict = "pass" if reason.get("passed") else "FAIL"
        click.echo(f"  {verdict}  {reason.get('rule')}: {reason.get('detail')}")


@click.command("retrain")
@click.argument("slug")
@click.option("--wait", is_flag=True, help="Wait until the run finishes and print its verdict.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="With --wait: give up after this many seconds (default: wait as long as it takes).",
)
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, hidden=True)
@with_appcontext
def retrain_cmd(slug: str, wait: bool, timeout: float | None, poll: float) -> None:
    """Queue a retrain of project SLUG and print the run id (a worker runs it)."""
    if timeout is not None and not wait:
        raise click.BadParameter("only makes sense with --wait", param_hint="'--timeout'")
    project = _project(slug)
    try:
        training.check_trainable(project)
    except training.NotTrainable as exc:
        raise click.ClickException(f"cannot retrain {slug}: {exc}") from None
    queued_before = db.session.scalar(
        select(RetrainRun.id).where(
            RetrainRun.project_id == project.id, RetrainRun.status == RunStatus.QUEUED
        )
    )
    run = training.trigger_retrain(project, trigger=Trigger.CLI)
    run_id = run.id
    db.session.commit()  # the job is enqueued after this commit (webapp/transaction.py)
    click.echo(run_id)
    if run_id == queued_before:
        _note(f"A retrain of {slug} was already queued: run {run_id} (triggers coalesce).")
    else:
        _note(f"Queued retrain run {run_id} for {slug}.")
    listening = _workers_listening()
    if listening is None:
        _note(
            "Redis is unreachable: the run is recorded and is queued when a worker starts "
            "(`corrigo worker`)."
        )
    elif listening == 0:
        _note(
            f"No worker listens on queue {current_app.config['RQ_QUEUE']!r} yet: "
            "start one with `corrigo worker`."
        )
    if not wait:
        return
    deadline = time.monotonic() + timeout if timeout else None
    status = None
    while True:
        db.session.rollback()  # end the transaction so the worker's commits are visible
        run = db.session.get(RetrainRun, run_id, populate_existing=True)
        if run.status != status:
            status = run.status
            if status in (RunStatus.QUEUED, RunStatus.RUNNING):
                _note(f"run {run_id}: {status}…")
        if status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise click.ClickException(
                f"run {run_id} is still {status} after {timeout:g} s; "
                f"check it later with `GET /api/v1/projects/{slug}/runs/{run_id}`"
            )
        time.sleep(poll)
    if status == RunStatus.FAILED:
        raise click.ClickException(f"run {run_id} failed: {run.error}")
    _report_run(run)


# ---------------------------------------------------------------------------------------------
# corrigo demo


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=5000,
    show_default=True,
    envvar="PORT",
    help="Port to serve on (or the PORT environment variable).",
)
@click.option(
    "--reset", is_flag=True, help="Delete the demo project and everything in it, then rebuild it."
)
@with_appcontext
def demo_cmd(host: str, port: int, reset: bool) -> None:
    """Build the BBC News demo project and run the web app and a worker until Ctrl-C."""
    from flask_migrate import upgrade

    app = current_app._get_current_object()
    problem = demo.port_problem(host, port)
    if problem:
        raise click.BadParameter(f"{problem}; pick another with --port", param_hint="'--port'")
    try:
        demo.procfile_commands(host, port)  # the Procfile the demo runs must be there and usable
    except demo.DemoError as exc:
        raise click.UsageError(str(exc)) from None
    _note("Upgrading the database schema…")
    upgrade()
    try:
        info = demo.build_demo(reset=reset, log=_note)
    except demo.DemoError as exc:
        raise click.UsageError(str(exc)) from None
    demo.release_interrupted_runs(info.slug)
    code = demo.serve(app, info, host, port, echo=click.echo, note=_note)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# corrigo item


item_cli = AppGroup("item", help="Exclude bad items from the queue and training, or restore them.")
ITEM_ID = click.IntRange(1, 2**63 - 1)


def _item(item_id: int) -> Item:
    """The item with this id, or a usage error naming the argument."""
    item = db.session.get(Item, item_id)
    if item is None:
        raise click.BadParameter(f"no item {item_id}", param_hint="'ID'")
    return item


@item_cli.command("exclude")
@click.argument("item_id", metavar="ID", type=ITEM_ID)
@click.option("--reason", required=True, help="Why (kept with the item; shown to engineers).")
def exclude_item(item_id: int, reason: str) -> None:
    """Take item ID out of the queue, training and held-out evaluation (its labels are kept)."""
    item = _item(item_id)
    try:
        created = exclusion.exclude(item, f"cli:{os.environ.get('USER') or 'unknown'}", reason)
    except ValidationError as exc:
        message = importfile.validation_message(exc)
        raise click.BadParameter(message, param_hint="'--reason'") from None
    db.session.commit()
    slug = db.session.get(Project, item.project_id).slug
    if created:
        click.echo(f"Excluded item {item.id} of {slug}.")
    else:
        _note(f"Item {item.id} was already excluded, by {item.excluded_by}: {item.excluded_reason}")


@item_cli.command("restore")
@click.argument("item_id", metavar="ID", type=ITEM_ID)
def restore_item(item_id: int) -> None:
    """Put excluded item ID back in the queue and the training data."""
    item = _item(item_id)
    if exclusion.restore(item):
        db.session.commit()
        click.echo(f"Restored item {item.id}.")
    else:
        _note(f"Item {item.id} was not excluded; nothing changed.")


@item_cli.command("excluded")
@click.argument("slug")
def list_excluded(slug: str) -> None:
    """List project SLUG's excluded items: id, external id, when, by whom, why."""
    items = exclusion.excluded_items(_project(slug), limit=None)
    if not items:
        _note(f"No item of {slug} is excluded.")
    for item in items:
        when = item.excluded_at.isoformat(timespec="seconds") + "Z"
        click.echo(
            f"{item.id}\t{item.external_id or '-'}\t{when}\t{item.excluded_by}\t"
            f"{item.excluded_reason}"
        )


# ---------------------------------------------------------------------------------------------
# corrigo model


model_cli = AppGroup(
    "model", help="The model registry: list and show versions, promote, reject, roll back."
)
VERSION = click.IntRange(1, 2**31 - 1)
REASON = click.option(
    "--reason", required=True, help="Why (kept with the registry event; shown in the history)."
)


def _version(project: Project, number: int) -> ModelVersion:
    """The project's version `number`, or a usage error naming the argument."""
    try:
        return registry.find_version(project, number)
    except NotFound as exc:
        raise click.BadParameter(exc.detail, param_hint="'VERSION'") from None


def _change(change) -> None:
    """Run a registry change, commit it, and print the champion and challenger after it."""
    try:
        event = change()
    except ValidationError as exc:
        message = importfile.validation_message(exc)
        raise click.BadParameter(message, param_hint="'--reason'") from None
    except Conflict as exc:
        db.session.rollback()
        raise click.ClickException(exc.detail) from None
    db.session.commit()
    project = db.session.get(Project, event.project_id)
    version = db.session.get(ModelVersion, event.model_version_id)
    champion, challenger = registry.champion(project), registry.challenger(project)
    click.echo(f"{event.action} v{version.version}: now {version.status}")
    _note(
        f"{project.slug}: champion {'v' + str(champion.version) if champion else '-'}, "
        f"challenger {'v' + str(challenger.version) if challenger else '-'}"
    )


def _f1(version: ModelVersion) -> str:
    value = (version.metrics or {}).get("macro_f1")
    return "-" if value is None else f"{value:.3f}"


def _when(value) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds") + "Z"


@model_cli.command("list")
@click.argument("slug")
def list_models(slug: str) -> None:
    """List project SLUG's model versions, newest first: version, status, macro-F1, created."""
    project = _project(slug)
    versions = db.session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project.id)
        .order_by(ModelVersion.version.desc())
    ).all()
    if not versions:
        _note(f"{slug} has no model versions yet: retrain it with `corrigo retrain {slug}`.")
    for v in versions:
        click.echo(
            f"v{v.version}\t{v.status}\tmacro-F1 {_f1(v)}\ttrained on {v.train_size}\t"
            f"{_when(v.created_at)}"
        )


@model_cli.command("show")
@click.argument("slug")
@click.argument("version", metavar="VERSION", type=VERSION)
def show_model(slug: str, version: int) -> None:
    """Show one model version: status, metrics, lineage and its registry history."""
    project = _project(slug)
    v = _version(project, version)
    metrics = v.metrics or {}
    click.echo(f"v{v.version} {v.status} ({v.template})")
    click.echo(f"  created {_when(v.created_at)}, promoted {_when(v.promoted_at)}")
    click.echo(f"  macro-F1 {_f1(v)}, accuracy {metrics.get('accuracy', '-')}")
    for label, stats in (metrics.get("per_class") or {}).items():
        click.echo(
            f"    {label}: precision {stats['precision']:.3f} recall {stats['recall']:.3f} "
            f"f1 {stats['f1']:.3f} support {stats['support']}"
        )
    click.echo(f"  trained on {v.train_size} labels, snapshot {v.snapshot_digest}")
    click.echo(
        f"  held out {v.heldout_size if v.heldout_size is not None else '-'} items, "
        f"digest {v.heldout_digest or '-'}"
    )
    seconds = "-" if v.training_seconds is None else f"{v.training_seconds:.2f} s"
    click.echo(f"  training took {seconds}, run {v.run_id or '-'}")
    if v.library_versions:
        libs = ", ".join(f"{k} {val}" for k, val in v.library_versions.items())
        click.echo(f"  libraries: {libs}")
    for name, value in (v.params or {}).items():
        click.echo(f"  param {name}={value}")
    numbers = dict(
        db.session.execute(
            select(ModelVersion.id, ModelVersion.version).where(
                ModelVersion.project_id == project.id
            )
        ).all()
    )
    for e in registry.history(project, v):
        displaced = numbers.get(e.from_version_id)
        was = f" (from v{displaced})" if displaced else ""
        click.echo(
            f"  {_when(e.created_at)} {e.action} v{numbers[e.model_version_id]}{was} "
            f"by {e.actor}: {e.reason}"
        )


@model_cli.command("promote")
@click.argument("slug")
@click.argument("version", metavar="VERSION", type=VERSION)
@REASON
def promote_model(slug: str, version: int, reason: str) -> None:
    """Make VERSION the champion of project SLUG (the current one retires)."""
    v = _version(_project(slug), version)
    _change(lambda: registry.promote(v, registry.CLI, reason))


@model_cli.command("reject")
@click.argument("slug")
@click.argument("version", metavar="VERSION", type=VERSION)
@REASON
def reject_model(slug: str, version: int, reason: str) -> None:
    """Reject VERSION, a candidate or the challenger (never the champion)."""
    v = _version(_project(slug), version)
    _change(lambda: registry.reject(v, registry.CLI, reason))


@model_cli.command("challenger")
@click.argument("slug")
@click.argument("version", metavar="VERSION", type=VERSION)
@REASON
def challenge_model(slug: str, version: int, reason: str) -> None:
    """Make VERSION the challenger of project SLUG (the previous one becomes a candidate)."""
    v = _version(_project(slug), version)
    _change(lambda: registry.set_challenger(v, registry.CLI, reason))


@model_cli.command("rollback")
@click.argument("slug")
@click.option(
    "--to",
    "to",
    type=VERSION,
    help="A retired version to bring back (default: the champion before the current one).",
)
@REASON
def rollback_model(slug: str, to: int | None, reason: str) -> None:
    """Bring back project SLUG's previous champion (or --to VERSION); the current one retires."""
    project = _project(slug)
    target = None
    if to is not None:
        try:
            target = registry.find_version(project, to)
        except NotFound as exc:
            raise click.BadParameter(exc.detail, param_hint="'--to'") from None
    _change(lambda: registry.rollback(project, registry.CLI, reason, to_version=target))
