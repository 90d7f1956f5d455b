"""The demo: `build_demo` on the real BBC data, and `corrigo demo` started and stopped."""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import signal
import socket
import sqlite3
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter

import psutil
import pytest
from sqlalchemy import func, select

from tests.cli.conftest import corrigo_command
from webapp import demo
from webapp.extensions import db
from webapp.models import (
    Annotation,
    ApiKey,
    Feedback,
    Item,
    ModelVersion,
    Prediction,
    Project,
    RetrainRun,
    Skip,
    User,
)

BBC_ITEMS = 2127


@pytest.fixture(scope="module")
def articles():
    """The BBC articles, read once for the module."""
    return demo.load_bbc()


def test_seed_sample_is_stratified_exact_and_deterministic(articles):
    seed = demo.seed_sample(articles, 300)
    assert len(seed) == 300 == len({a.external_id for a in seed})
    everyone = Counter(a.label for a in articles)
    for label, count in Counter(a.label for a in seed).items():
        assert abs(count - 300 * everyone[label] / len(articles)) < 1
    shuffled = list(articles)
    random.Random(7).shuffle(shuffled)
    assert {a.external_id for a in demo.seed_sample(shuffled, 300)} == {a.external_id for a in seed}


def bearer(key: str) -> dict:
    """The Authorization header for an API key."""
    return {"Authorization": f"Bearer {key}"}


def test_article_ids_do_not_give_the_label_away(articles):
    assert [a.external_id for a in articles[:3]] == ["bbc-0001", "bbc-0002", "bbc-0003"]
    assert all(re.fullmatch(r"bbc-\d{4}", a.external_id) for a in articles)
    # Shuffled: the labels of consecutive ids (and so of consecutive item ids) are mixed.
    first_hundred = Counter(a.label for a in articles[:100])
    assert len(first_hundred) == 5 and max(first_hundred.values()) < 40
    assert demo.load_bbc() == articles


def test_build_demo_makes_the_project_logins_and_key_and_is_idempotent(app, client, articles):
    first = demo.build_demo()
    assert (first.items, first.new_items, first.seed_labels, first.labeled) == (
        BBC_ITEMS,
        BBC_ITEMS,
        300,
        300,
    )
    project = db.session.scalar(select(Project))
    assert (project.slug, project.kind, project.template) == ("bbc-news", "text", "text-logreg")
    assert project.labels == demo.BBC_LABELS
    # Seed labels are the articles' true labels; no other item carries a label: the expert
    # labels the rest.
    truth = {a.external_id: a.label for a in articles}
    seeded = db.session.execute(
        select(Item.external_id, Item.label).where(Item.label.is_not(None))
    ).all()
    assert len(seeded) == 300
    assert all(truth[ext] == label for ext, label in seeded)
    annotators = db.session.scalars(select(Annotation.annotator).distinct()).all()
    assert annotators == ["seed:bbc"]
    # The first retrain is queued.
    run = db.session.get(RetrainRun, first.run_id)
    assert run.status == "queued" and run.job_id
    for login in first.logins:
        user = db.session.scalar(select(User).where(User.email == login.email))
        assert user.role == login.role and user.check_password(login.password)
    assert [(login.email, login.role) for login in first.logins] == [
        ("expert@corrigo.local", "annotator"),
        ("engineer@corrigo.local", "engineer"),
    ]
    resp = client.get("/api/v1/projects/bbc-news/queue/next", headers=bearer(first.api_key))
    assert resp.status_code == 200 and resp.get_json()["reason"] == "cold-start"

    second = demo.build_demo()
    assert (second.items, second.new_items, second.seed_labels, second.labeled) == (
        BBC_ITEMS,
        0,
        300,
        300,
    )
    assert second.run_id == first.run_id
    assert db.session.scalar(select(func.count(Item.id))) == BBC_ITEMS
    assert db.session.scalar(select(func.count(Annotation.id))) == 300
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1
    assert db.session.scalar(select(func.count(User.id))) == 2
    # Passwords and the key are replaced on every build (they are only ever shown once).
    for old, new in zip(first.logins, second.logins, strict=True):
        user = db.session.scalar(select(User).where(User.email == new.email))
        assert user.check_password(new.password) and not user.check_password(old.password)
    live = db.session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))).all()
    assert len(live) == 1
    url = "/api/v1/projects/bbc-news/models"
    assert client.get(url, headers=bearer(first.api_key)).status_code == 401
    assert client.get(url, headers=bearer(second.api_key)).status_code == 200


def test_a_demo_built_with_the_old_ids_is_renamed_not_duplicated(app, articles):
    info = demo.build_demo(seed_labels=20)
    # As main built it: ids such as bbc/tech/001 showed the true label on the labeling page.
    for item in db.session.scalars(select(Item)):
        old = next(a for a in articles if a.external_id == item.external_id)
        item.external_id = f"bbc/{old.source}"
    db.session.commit()
    again = demo.build_demo(seed_labels=20)
    assert (again.items, again.new_items) == (BBC_ITEMS, 0)
    ids = db.session.scalars(select(Item.external_id)).all()
    assert sorted(ids) == sorted(a.external_id for a in articles)
    assert again.project_id == info.project_id


def test_reset_rebuilds_from_scratch(app, run_jobs):
    first = demo.build_demo(seed_labels=40)
    run_jobs()  # leaves a run and a (rejected: too few held-out items) model version
    item = db.session.scalar(select(Item).where(Item.label.is_(None)).limit(1))
    prediction = Prediction(project_id=first.project_id, item_id=item.id, label="tech")
    db.session.add(prediction)
    db.session.flush()
    db.session.add(
        Feedback(project_id=first.project_id, prediction_id=prediction.id, correct=False)
    )
    db.session.add(Skip(item_id=item.id, annotator="user:1"))
    db.session.commit()
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 1

    again = demo.build_demo(seed_labels=40, reset=True)
    assert (again.items, again.new_items, again.seed_labels, again.champion) == (
        BBC_ITEMS,
        BBC_ITEMS,
        40,
        None,
    )
    assert db.session.scalar(select(func.count(Project.id))) == 1
    assert db.session.scalar(select(func.count(Item.id))) == BBC_ITEMS
    assert db.session.scalar(select(func.count(Prediction.id))) == 0
    assert db.session.scalar(select(func.count(Feedback.id))) == 0
    assert db.session.scalar(select(func.count(Skip.item_id))) == 0
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0
    assert db.session.scalar(select(RetrainRun.status)) == "queued"


def test_a_foreign_project_under_the_demo_slug_is_not_touched(app, make, corrigo):
    make.make_project("bbc-news", labels=["sport", "politics", "tech"])
    with pytest.raises(demo.DemoError, match="--reset"):
        demo.build_demo()
    result = corrigo("demo", "--port", str(free_port()))
    assert result.exit_code == 2
    assert "is not the demo's; rebuild it with `corrigo demo --reset`" in result.stderr
    assert db.session.scalar(select(func.count(Item.id))) == 0


def test_demo_refuses_a_port_in_use(corrigo):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = corrigo("demo", "--port", str(port))
    assert result.exit_code == 2
    assert "'--port'" in result.stderr and "cannot listen on 127.0.0.1" in result.stderr
    assert db.session.scalar(select(func.count(Project.id))) == 0


def test_the_demo_runs_the_procfile_as_written_bound_where_asked(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "# comment\n"
        "web: gunicorn --bind 127.0.0.1:${PORT:-5000} --threads 8 'webapp:create_app()'\n"
        "worker: corrigo worker\nclock: corrigo clock\n"
    )
    same = demo.procfile_commands("127.0.0.1", 5000, str(procfile))
    assert same == {
        "web": "gunicorn --bind 127.0.0.1:${PORT:-5000} --threads 8 'webapp:create_app()'",
        "worker": "corrigo worker",
        "clock": "corrigo clock",
    }
    assert demo.procfile_commands("0.0.0.0", 8000, str(procfile))["web"] == (
        "gunicorn --bind '0.0.0.0:8000' --threads 8 'webapp:create_app()'"
    )
    assert "--bind '[::1]:8000'" in demo.procfile_commands("::1", 8000, str(procfile))["web"]
    procfile.write_text("web: gunicorn app\n")
    with pytest.raises(demo.DemoError, match="has no worker line"):
        demo.procfile_commands("127.0.0.1", 5000, str(procfile))
    with pytest.raises(demo.DemoError, match="cannot read the Procfile"):
        demo.procfile_commands("127.0.0.1", 5000, str(tmp_path / "nope"))
    # The project's own Procfile is what the demo runs.
    assert set(demo.procfile_commands("127.0.0.1", 5000)) >= {"web", "worker"}


# ---------------------------------------------------------------------------------------------
# The real thing: `corrigo demo` with gunicorn, a worker and the embedded Redis


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(proc: psutil.Process) -> bool:
    """Whether a process still runs (a zombie waiting to be reaped does not count)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(read, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    """Wait until the output matches `pattern`; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, read())
        if found:
            return found
        assert proc.poll() is None, read()
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {timeout} s:\n{read()}")


def redis_servers_in(instance: str) -> list[psutil.Process]:
    """The redis-server processes working in the instance folder (the embedded one)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if "redis-server" in (proc.info["name"] or "") and proc.cwd() == instance:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_walkthrough(heading: str = "## The API in curl") -> str:
    """A README curl walkthrough: the first sh block of the section under `heading`."""
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index(heading) :]
    return section[section.index("```sh\n") + 6 : section.index("\n```\n")]


class LiveDemo:
    """`corrigo demo` as a real process tree on a free port, with what it printed."""

    def __init__(self, instance: str, log_path):
        self.instance = instance
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log_path
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "CORRIGO_QUEUE", "SECRET_KEY", "PORT")
        }
        env["CORRIGO_INSTANCE"] = instance
        with open(log_path, "w") as out:
            self.proc = subprocess.Popen(
                corrigo_command("demo", "--port", str(self.port)),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.key = None

    def read(self) -> str:
        """Everything the demo printed so far."""
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        """Wait until the demo printed `pattern`."""
        return wait_for(self.read, pattern, self.proc, timeout)

    def up(self) -> str:
        """Wait for the banner; return the API key it shows."""
        self.key = self.wait_for(r"KEY=(cg_\S+)").group(1)
        return self.key

    def api(self, method: str, path: str, body=None) -> tuple[int, dict]:
        """Call the demo's API with its key; return the status and the JSON answer."""
        request = urllib.request.Request(
            f"{self.base}/api/v1{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={**bearer(self.key), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def tree(self) -> list[psutil.Process]:
        """Every process below the demo right now."""
        return psutil.Process(self.proc.pid).children(recursive=True)

    def workers(self) -> list[psutil.Process]:
        """The `corrigo worker` processes the Procfile's worker loop started (not work horses)."""
        found = []
        for proc in self.tree():
            try:
                if proc.cmdline()[-1:] == ["worker"] and proc.parent().name() in ("sh", "dash"):
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
        return found

    def stop(self, signals=(signal.SIGINT,), pause: float = 0.3, timeout: float = 150) -> None:
        """Send the stop signals, `pause` apart, and wait for the demo to exit."""
        for n, sig in enumerate(signals):
            if n:
                time.sleep(pause)
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def gone(procs: list[psutil.Process], timeout: float = 15) -> list[psutil.Process]:
    """The processes among `procs` still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in procs if alive(p)]


@pytest.fixture(scope="module")
def demo_instance(tmp_path_factory):
    """One instance folder for this module's live demos: a restart reuses the project."""
    return str(tmp_path_factory.mktemp("demo-instance"))


def run_shell(script: str, env: dict, cwd, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a pasted block in bash, stopping at the first failing command."""
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_serves_the_loop_and_stops_cleanly(demo_instance, tmp_path):
    demo_ = LiveDemo(demo_instance, tmp_path / "demo.out")
    try:
        key = demo_.up()
        read = demo_.read
        assert "Press Ctrl-C to stop" in read()
        assert re.search(r"expert@corrigo\.local\s+password \S+", read())
        with urllib.request.urlopen(f"{demo_.base}/login", timeout=10) as resp:
            assert resp.status == 200
        demo_.wait_for(r"Retrain run \d+ \(\w+\): promoted model v1")
        status, answer = demo_.api("POST", "/projects/bbc-news/predict", {"data": {"text": "x y"}})
        assert status == 200 and answer["model_version"] == 1
        assert answer["label"] in demo.BBC_LABELS

        env = {**os.environ, "CORRIGO": f"{demo_.base}/api/v1", "KEY": key}
        # The banner's three curls, pasted twice: the second feedback is accepted too.
        banner = read()[read().index("  PRED=$(") : read().index("\nLogs: ")]
        for _ in range(2):
            pasted = run_shell(textwrap.dedent(banner), env, tmp_path)
            assert pasted.returncode == 0, pasted.stderr
            assert re.search(r'\{"feedback_id":\d+\}', pasted.stdout), pasted.stdout
            assert '"reason":"disputed"' in pasted.stdout
        # The README's walkthrough, as written, twice (ids come from the answers).
        for _ in range(2):
            walk = run_shell(readme_walkthrough(), env, tmp_path)
            assert walk.returncode == 0, walk.stdout + walk.stderr
            assert re.search(r'\{"feedback_id":\d+\}', walk.stdout), walk.stdout
            assert '"reason":"disputed"' in walk.stdout
            assert '"status":"succeeded"' in walk.stdout, walk.stdout
        assert '"split":' in (tmp_path / "bbc-news-labels.jsonl").read_text()
        # The monitoring walkthrough, after it in the same shell: the clock computes the
        # window of a backfilled prediction, rules, a webhook and alerts answer.
        both = readme_walkthrough() + "\n" + readme_walkthrough("## Monitoring in curl")
        walk = run_shell(both, env, tmp_path)
        assert walk.returncode == 0, walk.stdout + walk.stderr
        assert "'count':" in walk.stdout and '"name":"traffic spike"' in walk.stdout, walk.stdout
        assert '"deliveries":' in walk.stdout and '"alerts":' in walk.stdout
        # The experiments walkthrough, after both (twice: it stops what it starts): sticky arms
        # in the answers, a look by the clock, and a stop through the registry.
        for _ in range(2):
            walk = run_shell(
                both + "\n" + readme_walkthrough("## Experiments in curl"), env, tmp_path
            )
            assert walk.returncode == 0, walk.stdout + walk.stderr
            arms = re.findall(r"\{'id': \d+, 'arm': '(champion|challenger)'\}", walk.stdout)
            assert len(arms) == 5 and arms[0] == arms[4], walk.stdout  # alice kept her arm
            assert "'mismatch': False" in walk.stdout and "keep\nstopped" in walk.stdout

        # SIGTERM while a retrain runs: the worker finishes it before the demo stops.
        status, answer = demo_.api("POST", "/projects/bbc-news/retrain")
        assert status == 202, answer
        run_id = answer["run_id"]
        deadline = time.monotonic() + 120
        while demo_.api("GET", f"/projects/bbc-news/runs/{run_id}")[1]["status"] == "queued":
            assert time.monotonic() < deadline, "no worker took the retrain"
            time.sleep(0.1)
        children = demo_.tree()
        assert len(children) >= 5  # honcho's readers, the shells, worker, gunicorn and workers
        servers = redis_servers_in(demo_instance)
        assert len(servers) == 1
    finally:
        demo_.stop(signals=(signal.SIGTERM,))
    assert demo_.proc.returncode == 0, read()
    assert read().rstrip().endswith("Stopped.")
    assert not gone([*children, *servers], timeout=0)
    database = sqlite3.connect(os.path.join(demo_instance, "corrigo.sqlite"))
    (status,) = database.execute(
        "SELECT status FROM retrain_run WHERE id = ?", (run_id,)
    ).fetchone()
    database.close()
    assert status == "succeeded", read()


def test_a_dead_worker_comes_back_and_a_second_ctrl_c_leaves_no_process(demo_instance, tmp_path):
    demo_ = LiveDemo(demo_instance, tmp_path / "demo.out")
    try:
        demo_.up()
        demo_.wait_for(r"promoted model v\d+|Champion: model v\d+")
        champion = [
            m
            for m in demo_.api("GET", "/projects/bbc-news/models")[1]["models"]
            if m["status"] == "champion"
        ]
        (worker,) = demo_.workers()
        web_before = [p for p in demo_.tree() if "gunicorn" in " ".join(p.cmdline())]
        worker.kill()  # what the OOM killer does
        log = pathlib.Path(demo_instance, "logs", "demo.log")
        wait_for(
            log.read_text,
            r"worker +\| corrigo worker exited with status 137; starting another",
            demo_.proc,
            timeout=60,
        )
        with urllib.request.urlopen(f"{demo_.base}/login", timeout=10) as resp:
            assert resp.status == 200, "the web app went down with the worker"
        assert all(alive(p) for p in web_before)
        deadline = time.monotonic() + 60
        while not demo_.workers() and time.monotonic() < deadline:
            time.sleep(0.5)
        (again,) = demo_.workers()
        assert again.pid != worker.pid

        # The new worker takes the next retrain; two Ctrl-Cs while it runs stop everything now.
        status, answer = demo_.api("POST", "/projects/bbc-news/retrain")
        assert status == 202, answer
        run_id = answer["run_id"]
        deadline = time.monotonic() + 120
        while demo_.api("GET", f"/projects/bbc-news/runs/{run_id}")[1]["status"] != "running":
            assert time.monotonic() < deadline, "the restarted worker never took the retrain"
            time.sleep(0.1)
        children = demo_.tree()
        servers = redis_servers_in(demo_instance)
        assert len(servers) == 1
    except BaseException:
        demo_.stop()
        raise
    demo_.stop(signals=(signal.SIGINT, signal.SIGINT), timeout=60)
    out = demo_.read()
    assert demo_.proc.returncode == 0, out
    assert out.rstrip().endswith("Stopped.")
    assert "Stopping now: killing every process the demo started." in out
    # Gone when it says so: no retrain finishes (and promotes) after the demo exited.
    assert not gone([*children, *servers], timeout=0)
    database = sqlite3.connect(os.path.join(demo_instance, "corrigo.sqlite"))
    time.sleep(3)
    status, error = database.execute(
        "SELECT status, error FROM retrain_run WHERE id = ?", (run_id,)
    ).fetchone()
    assert status == "failed" and "interrupted" in error
    champions = database.execute(
        "SELECT version FROM model_version WHERE status = 'champion'"
    ).fetchall()
    assert champions == [(champion[0]["version"],)]
    database.close()
